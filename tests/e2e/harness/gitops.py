"""Apply an exported stack as Flux's kustomize-controller does, and play helm-controller's part.

What is real: the kustomize build (the real `kubectl kustomize`, kustomize v5 as in Flux), server-
side apply by the real API server with kustomize-controller's field manager, admission (Pod
Security, schema validation of every CRD kind), and the order: the ``sync/`` Kustomizations, then
``infrastructure/``, then ``apps/`` (``apps`` dependsOn ``infrastructure``), each layer in
kustomize-controller's stages (CRDs and Namespaces, then cluster-wide RBAC, then the rest).

What is simulated, here and nowhere else:
- kustomize-controller itself (no Flux controller runs): this module applies what it would apply,
  with its labels ``kustomize.toolkit.fluxcd.io/name|namespace`` and without ``--force-conflicts``
  (Flux's default ``force: false``);
- helm-controller: no chart is installed. :func:`install_chart_crds` applies the CRDs the charts
  ship (the vendored upstream files, or an operator's own module), and :func:`mark_helmreleases_ready`
  sets each HelmRelease's ``Ready`` condition through the status subresource, as helm-controller
  would after a successful install;
- the GitRepository and the flux-system namespace that `flux bootstrap` creates.

With the real Flux controllers (tests/e2e/test_flux_*.py, harness/flux.py) kustomize-controller
and source-controller are real, and this module keeps only helm-controller's part (not served by
the module proxy) and the chart repositories' (on the internet): :class:`HelmStandIn` marks each
HelmRelease and HelmRepository Ready for its current generation, as helm-controller and
source-controller would once the chart is fetched and installed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .kube import Cluster
from .standin import StandInLoop

FIELD_MANAGER = "kustomize-controller"
FLUX_NAMESPACE = "flux-system"
# kustomize-controller's ssa.ResourceManager.ApplyAllStaged: cluster definitions first, then
# class definitions (cluster RBAC...), then everything else.
_STAGE1 = {"CustomResourceDefinition", "Namespace"}
_STAGE2 = {"ClusterRole", "ClusterRoleBinding", "StorageClass", "IngressClass", "RuntimeClass", "PriorityClass"}


@dataclass
class LayerResult:
    layer: str
    objects: list[dict]
    warnings: list[str] = field(default_factory=list)
    stderr: str = ""


def build(cluster: Cluster, layer_dir: Path, timeout: float = 120) -> list[dict]:
    """``kubectl kustomize`` of one layer, as kustomize-controller builds it (kustomize's build is
    quadratic in a layer's resources, kubernetes-sigs/kustomize#5084: 1000 apps need minutes)."""
    out = cluster.kubectl("kustomize", str(layer_dir), timeout=timeout)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _label(objects: list[dict], name: str) -> list[dict]:
    for obj in objects:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {}) or {}
        labels["kustomize.toolkit.fluxcd.io/name"] = name
        labels["kustomize.toolkit.fluxcd.io/namespace"] = FLUX_NAMESPACE
        obj["metadata"]["labels"] = labels
    return objects


def _stage(obj: dict) -> int:
    kind = obj.get("kind", "")
    return 1 if kind in _STAGE1 else 2 if kind in _STAGE2 else 3


def apply_layer(cluster: Cluster, stack: str, layer_dir: Path, *, kubeconfig: Path | None = None) -> LayerResult:
    """Build and server-side apply one layer in kustomize-controller's stages."""
    objects = _label(build(cluster, layer_dir), f"{stack}-{layer_dir.name}")
    result = LayerResult(layer_dir.name, objects)
    for stage in (1, 2, 3):
        batch = [o for o in objects if _stage(o) == stage]
        if not batch:
            continue
        res = cluster.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            input=yaml.safe_dump_all(batch),
            kubeconfig=kubeconfig,
            check=False,
        )
        result.stderr += res.stderr
        result.warnings += [l for l in res.stderr.splitlines() if l.lower().startswith("warning")]
        if res.returncode != 0:
            raise AssertionError(f"{stack}/{layer_dir.name}: server-side apply failed: {res.stderr.strip()}")
    return result


def diff_layer(cluster: Cluster, stack: str, layer_dir: Path) -> str:
    """What applying the layer again would change, as Flux's drift detection sees it (a server-side
    dry-run apply compared with the live objects: `kubectl diff --server-side`). Empty: nothing."""
    objects = _label(
        build(cluster, layer_dir) if (layer_dir / "kustomization.yaml").exists() else _plain_objects(layer_dir),
        f"{stack}-{layer_dir.name}" if layer_dir.name != "sync" else "flux-system",
    )
    res = cluster.kubectl(
        "diff",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
        check=False,
    )
    if res.returncode not in (0, 1):
        raise AssertionError(f"{stack}/{layer_dir.name}: kubectl diff failed: {res.stderr.strip()}")
    return res.stdout


def bootstrap_flux(cluster: Cluster) -> None:
    """What `flux bootstrap` leaves behind that the sync layer refers to (simulated)."""
    cluster.ensure_namespace(FLUX_NAMESPACE)


def install_chart_crds(cluster: Cluster, files: list[Path]) -> list[str]:
    """helm-controller's part in installing a chart's CRDs (simulated: the vendored files)."""
    return cluster.install_crds(files)


def mark_helmreleases_ready(cluster: Cluster, objects: list[dict]) -> list[str]:
    """Set Ready=True on each HelmRelease through the status subresource (simulated helm-controller)."""
    done = []
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for obj in objects:
        if obj.get("kind") != "HelmRelease":
            continue
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        live = cluster.get(f"/apis/helm.toolkit.fluxcd.io/v2/namespaces/{ns}/helmreleases/{name}")
        assert live is not None, f"HelmRelease {ns}/{name} is not on the server"
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "InstallSucceeded",
                    "lastTransitionTime": now,
                    "message": "simulated by the e2e harness: no helm-controller runs here",
                    "observedGeneration": live["metadata"]["generation"],
                }
            ],
            "observedGeneration": live["metadata"]["generation"],
        }
        r = cluster.raw(
            "PATCH",
            f"/apis/helm.toolkit.fluxcd.io/v2/namespaces/{ns}/helmreleases/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        r.raise_for_status()
        done.append(f"{ns}/{name}")
    return done


def external_namespaces(root: Path, stack: str) -> list[str]:
    """Namespaces a stack uses but never creates: those it declares external and the shared ones
    (Flux's, the monitoring stack's, the system ones), which what runs beside it creates."""
    from ksecrets.config.load import load_stack

    cfg = load_stack(stack, root)
    return sorted(set(cfg.external_namespaces) | set(cfg.shared_namespaces()))


def apply_stack(
    cluster: Cluster, stack_dir: Path, *, kubeconfig: Path | None = None, root: Path | None = None
) -> dict[str, LayerResult]:
    """The whole of ``k8s/<stack>/`` in Flux's order: sync, infrastructure (then its HelmReleases
    become Ready: simulated), apps (it dependsOn infrastructure).

    The namespaces the stack declares as existing outside it are created first (simulated: the
    monitoring stack, for example, is installed by its own Kustomization)."""
    stack = stack_dir.name
    bootstrap_flux(cluster)
    for ns in external_namespaces(root or stack_dir.parents[1], stack):
        if cluster.get(f"/api/v1/namespaces/{ns}") is None:
            cluster.ensure_namespace(ns)
    results: dict[str, LayerResult] = {}
    results["sync"] = (
        apply_layer(cluster, stack, stack_dir / "sync", kubeconfig=kubeconfig)
        if (stack_dir / "sync" / "kustomization.yaml").exists()
        else _apply_plain(cluster, stack, stack_dir / "sync")
    )
    results["infrastructure"] = apply_layer(cluster, stack, stack_dir / "infrastructure", kubeconfig=kubeconfig)
    mark_helmreleases_ready(cluster, results["infrastructure"].objects)
    results["apps"] = apply_layer(cluster, stack, stack_dir / "apps", kubeconfig=kubeconfig)
    return results


def _apply_plain(cluster: Cluster, stack: str, folder: Path) -> LayerResult:
    """``sync/`` has no kustomization.yaml (bootstrap adds its own): apply its files as Flux's
    bootstrap Kustomization would include them."""
    objects = _label(_plain_objects(folder), "flux-system")
    res = cluster.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
        check=False,
    )
    if res.returncode != 0:
        raise AssertionError(f"{stack}/sync: server-side apply failed: {res.stderr.strip()}")
    return LayerResult(
        "sync", objects, [l for l in res.stderr.splitlines() if l.lower().startswith("warning")], res.stderr
    )


def _plain_objects(folder: Path) -> list[dict]:
    objects: list[dict] = []
    for f in sorted(folder.glob("*.yaml")):
        objects += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return objects


def live_field(cluster: Cluster, objects: list[dict], jsonpath: str) -> dict[str, str]:
    """kind/namespace/name → a field of each object as the server holds it now ("" if absent)."""
    out = {}
    for obj in objects:
        md = obj["metadata"]
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        args = ["get", f"{obj['kind']}.{group}" if group else obj["kind"], md["name"], "-o", f"jsonpath={jsonpath}"]
        if md.get("namespace"):
            args += ["-n", md["namespace"]]
        out[f"{obj['kind']}/{md.get('namespace', '')}/{md['name']}"] = cluster.kubectl(*args).stdout
    return out


def live_versions(cluster: Cluster, objects: list[dict]) -> dict[str, str]:
    return live_field(cluster, objects, "{.metadata.resourceVersion}")


def live_generations(cluster: Cluster, objects: list[dict]) -> dict[str, str]:
    return live_field(cluster, objects, "{.metadata.generation}")


class HelmStandIn(StandInLoop):
    """helm-controller's part and the chart repositories', simulated (see the module doc): a thread
    that sets ``Ready=True`` with the object's generation on every HelmRelease and HelmRepository
    that has no such condition yet, through the status subresource."""

    KINDS = (
        ("/apis/helm.toolkit.fluxcd.io/v2", "helmreleases", "InstallSucceeded"),
        ("/apis/source.toolkit.fluxcd.io/v1", "helmrepositories", "Succeeded"),
    )

    name = "helm-stand-in"

    def __init__(self, cluster: Cluster, interval: float = 0.5) -> None:
        super().__init__(interval)
        self.cluster = cluster
        self.marked: list[str] = []

    def start(self) -> "HelmStandIn":
        self.start_loop()
        return self

    def step(self) -> None:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for api, plural, reason in self.KINDS:
            for obj in (self.cluster.get(f"{api}/{plural}") or {}).get("items") or []:
                md, gen = obj["metadata"], obj["metadata"].get("generation")
                status = obj.get("status") or {}
                ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
                if status.get("observedGeneration") == gen and ready and ready[0].get("status") == "True":
                    continue
                new = {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": reason,
                            "lastTransitionTime": now,
                            "message": "simulated by the e2e harness (gitops.HelmStandIn)",
                            "observedGeneration": gen,
                        }
                    ],
                    "observedGeneration": gen,
                }
                r = self.cluster.raw(
                    "PATCH",
                    f"{api}/namespaces/{md['namespace']}/{plural}/{md['name']}/status",
                    {"status": new},
                    content_type="application/merge-patch+json",
                )
                if r.status_code == 200:
                    self.marked.append(f"{plural}/{md['namespace']}/{md['name']}")
                elif r.status_code != 404:
                    self.failed(f"{plural}/{md['name']}", r.status_code, r.text)

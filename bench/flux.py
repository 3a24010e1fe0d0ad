"""The real Flux (source-controller and kustomize-controller v1.9.6) reconciling one stack of 10, 100
and 1000 apps from a Git server on 127.0.0.1, beside `kubectl apply --server-side` of the same
objects, in the same run.

Per size, a fresh cluster (etcd + kube-apiserver + kube-controller-manager of the end-to-end
harness), the real sealed-secrets controller with a key from `ksecrets keygen`, the Flux controllers
(tests/e2e/harness/flux.py) and git's own http-backend (harness/gitserver.py). The stack is the
export benchmark's (bench/export.py: per app a Namespace, ServiceAccount, Role, RoleBinding,
Deployment and SealedSecret with three keys), sealed for real with the run's certificate so that
the controller unseals every value, exported by `ksecrets export` (so it carries the apps
applier's RBAC, the sync Kustomizations, `wait` and `healthCheckExprs`).

Runs, each timed from a wall clock started when `git push` returned:
- create: the first commit pushed, then the controllers started and what `flux bootstrap` writes
  applied once (so it includes the controllers' start, a few seconds);
- update: every app's Secret sealed again with new values, committed, pushed and a reconcile
  requested (what `flux reconcile kustomization <stack>-apps --with-source` does).
Columns: seconds to the first Secret on the server with the commit's values, to every Secret,
to the apps Kustomization Ready at the commit, and that last one per object of both layers.
kubectl: a fresh cluster of its own per size (no controllers), one `apply --server-side` of both
layers' objects as kustomize-controller builds them (create), then one of the changed SealedSecrets
(update); its Secrets column is empty (nothing unseals there).

Simulated as in the tests, one named place each: helm-controller (gitops.HelmStandIn marks the
sealed-secrets HelmRelease and its HelmRepository Ready) and the kubelet (kubelet.PodStandIn; a
Deployment counts as Available once its Pods are bound and marked running).

    .venv/bin/python bench/flux.py [--sizes 10,100,1000] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench.export import stack_doc  # noqa: E402
from bench.pulumi import kubectl_run  # noqa: E402
from ksecrets import yamlio  # noqa: E402
from ksecrets.sealing.certs import load_certificate  # noqa: E402
from ksecrets.sealing.crypto import encrypt_value, label_for  # noqa: E402
from tests.e2e.harness import binaries, missing_binaries, procs  # noqa: E402
from tests.e2e.harness.flux import FluxControllers, cluster_crds, condition, revision  # noqa: E402
from tests.e2e.harness.gitops import HelmStandIn, build, external_namespaces  # noqa: E402
from tests.e2e.harness.gitserver import GitServer, Workspace, git  # noqa: E402
from tests.e2e.harness.kube import Cluster  # noqa: E402
from tests.e2e.harness.kubelet import PodStandIn  # noqa: E402
from tests.e2e.harness.sealed_secrets import SealedSecretsController, StackRepo, chart_flags, keygen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENDORED_CRDS = sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))
STACK = "bench"
KEYS = ("API_KEY", "DATABASE_URL", "PASSWORD")
NEEDED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "source-controller",
    "kustomize-controller",
    "sealed-secrets-controller",
)


@dataclass
class Row:
    apps: int
    objects: int
    tool: str
    run: str
    first: float | None = None
    every: float | None = None
    ready: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def print(self) -> None:
        def cell(v: float | None) -> str:
            return f"{v:>9.1f}" if v is not None else f"{'-':>9}"

        per = (self.ready / self.objects * 1000) if self.ready is not None else None
        print(
            f"{self.apps:>5} {self.objects:>7} {self.tool:<8} {self.run:<7} {cell(self.first)} {cell(self.every)} "
            f"{cell(self.ready)} {per if per is None else round(per, 1)!s:>8}{'  ' + self.note if self.note else ''}",
            flush=True,
        )


def values_for(apps: int, tag: str) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) → fresh values of each app's Secret."""
    return {
        (f"team{i}", f"app{i}-secrets"): {k: f"{tag}-{k.lower()}-{secrets.token_urlsafe(12)}" for k in KEYS}
        for i in range(apps)
    }


def seal_into(doc: dict, cert_path: Path, values: dict[tuple[str, str], dict[str, str]]) -> None:
    cert = load_certificate(str(cert_path))
    for entry in doc["config"]["k8s-secrets:sealed"]:
        ns, name = entry["namespace"], entry["name"]
        label = label_for("strict", ns, name)
        entry["encryptedData"] = {
            k: encrypt_value(cert.public_key, v.encode(), label) for k, v in values[(ns, name)].items()
        }
        entry["certificateFingerprint"] = cert.fingerprint


def write_stack(root: Path, doc: dict) -> None:
    (root / f"Pulumi.{STACK}.yaml").write_text(yamlio.dump(doc))


def secrets_matching(cluster: Cluster, want: dict[tuple[str, str], dict[str, str]]) -> int:
    """How many of the wanted Secrets are on the server with exactly these values."""
    items = (cluster.get("/api/v1/secrets") or {}).get("items") or []
    have = {(s["metadata"]["namespace"], s["metadata"]["name"]): s.get("data") or {} for s in items}
    n = 0
    for key, vals in want.items():
        data = have.get(key)
        if data is not None and all(data.get(k) == base64.b64encode(v.encode()).decode() for k, v in vals.items()):
            n += 1
    return n


def watch(
    cluster: Cluster,
    flux: FluxControllers,
    want: dict[tuple[str, str], dict[str, str]],
    rev: str,
    t0: float,
    timeout: float,
) -> tuple[float | None, float | None, float | None, str]:
    first = every = ready = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        if every is None:
            n = secrets_matching(cluster, want)
            if n and first is None:
                first = now - t0
            if n == len(want):
                every = now - t0
        if ready is None:
            k = flux.kustomization(f"{STACK}-apps")
            c = condition(k)
            if (
                c
                and c["status"] == "True"
                and k["status"].get("lastAppliedRevision") == rev
                and c.get("observedGeneration") == k["metadata"]["generation"]
            ):
                ready = time.monotonic() - t0
        if every is not None and ready is not None:
            return first, every, ready, ""
        time.sleep(0.5)
    c = condition(flux.kustomization(f"{STACK}-apps")) or {}
    return first, every, ready, f"TIMEOUT after {timeout:.0f} s: {c.get('reason')}: {str(c.get('message'))[:200]}"


def new_cluster(work: Path, name: str, bins: dict[str, Path], crds: list[Path] | None = None) -> Cluster:
    """Under the real controllers, Flux's CRDs come from their modules (FluxControllers.install);
    kubectl's cluster gets the vendored copies of every CRD the stack uses."""
    c = Cluster(work / name, bins)
    c.start()
    c.install_crds(cluster_crds() if crds is None else crds)
    return c


def flux_size(apps: int, work: Path, bins: dict[str, Path], timeout: float) -> tuple[list[Row], list[dict], dict]:
    env = {
        "KSECRETS_BACKUP_PASSPHRASE": secrets.token_urlsafe(24),
        "KSECRETS_BACKUP_SCRYPT_LOG2N": "14",
        "KSECRETS_SEAL_KEY": secrets.token_urlsafe(32),
    }
    root = work / "tree"
    root.mkdir(parents=True)
    shutil.copy2(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "certs").mkdir()
    doc = stack_doc(apps)
    sealed = doc["config"].pop("k8s-secrets:sealed")
    write_stack(root, doc)
    repo = StackRepo(root, STACK, env)
    key_manifest = keygen(repo, work / "keygen.ksbackup")
    doc["config"]["k8s-secrets:sealed"] = sealed
    first_values = values_for(apps, "v1")
    seal_into(doc, repo.cert_path, first_values)
    write_stack(root, doc)
    repo.export()

    cluster = new_cluster(work, "cluster-flux", bins)
    flux = FluxControllers(cluster, work / "controllers", bins)
    pods = helm = None
    try:
        flux.install()
        ctl = SealedSecretsController(
            cluster, work / "sealed-controller", bins["sealed-secrets-controller"], flags=chart_flags()
        )
        ctl.install_rbac()
        ctl.install_keys(key_manifest)
        ctl.start()
        for ns in external_namespaces(root, STACK):
            cluster.ensure_namespace(ns)
        server = GitServer(work / "git").init().start()
        git("init", "--initial-branch=main", "--quiet", ".", cwd=root)
        git("remote", "add", "origin", server.url, cwd=root)
        ws = Workspace(root, server)
        pods = PodStandIn(cluster).start()
        helm = HelmStandIn(cluster).start()
        layers = {}
        for layer in ("infrastructure", "apps"):
            before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            layers[layer] = build(cluster, repo.k8s_dir / layer, timeout)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            print(
                f"# {apps} apps: `kubectl kustomize` of {layer} ({len(layers[layer])} objects): "
                f"{time.monotonic() - started:.1f} s wall, {cpu:.1f} s CPU (kustomize-controller builds the same)",
                flush=True,
            )
        objects = sum(len(v) for v in layers.values())

        rows = []
        sha = ws.commit(f"{apps} apps")
        t0 = ws.push()
        flux.start()
        flux.bootstrap(server.url, repo.k8s_dir / "sync")
        first, every, ready, note = watch(cluster, flux, first_values, revision(sha), t0, timeout)
        rows.append(Row(apps, objects, "flux", "create", first, every, ready, note))
        rows[-1].print()
        if note:
            return rows, [o for v in layers.values() for o in v], doc

        new_values = values_for(apps, "v2")
        seal_into(doc, repo.cert_path, new_values)
        write_stack(root, doc)
        repo.export()
        sha = ws.commit("every Secret changed")
        t0 = ws.push()
        flux.request_reconcile("GitRepository", "flux-system")
        flux.request_reconcile("Kustomization", f"{STACK}-apps")
        first, every, ready, note = watch(cluster, flux, new_values, revision(sha), t0, timeout)
        rows.append(Row(apps, objects, "flux", "update", first, every, ready, note))
        rows[-1].print()
        changed = [o for o in build(cluster, repo.k8s_dir / "apps", timeout) if o["kind"] == "SealedSecret"]
        return rows, [o for v in layers.values() for o in v], {"changed": changed}
    finally:
        if pods is not None:
            pods.stop()
        if helm is not None:
            helm.stop()
        procs.stop_all()


def kubectl_size(apps: int, objects: list[dict], changed: list[dict], work: Path, bins: dict[str, Path]) -> list[Row]:
    cluster = new_cluster(work, "cluster-kubectl", bins, VENDORED_CRDS)
    rows = []
    try:
        for ns in ("flux-system", "kube-system"):
            cluster.ensure_namespace(ns)
        for run, batch in (("create", objects), ("update", changed)):
            # Namespaces first, as kustomize-controller's staged apply does.
            staged = sorted(batch, key=lambda o: 0 if o["kind"] in ("Namespace", "CustomResourceDefinition") else 1)
            applied = kubectl_run(cluster, run, staged)  # the Pulumi bench's, same flags
            row = Row(apps, len(objects), "kubectl", run, ready=applied.seconds)
            if run == "update":
                row.note = f"{len(batch)} SealedSecrets"
            rows.append(row)
            row.print()
    finally:
        procs.stop_all()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    args = parser.parse_args()
    missing = missing_binaries(NEEDED)
    if missing:
        print(f"bench/flux.py: not built: {', '.join(missing)}; run `make e2e-tools`", file=sys.stderr)
        return 2
    bins = binaries()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} "
        f"{os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}, {os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        f"{'apps':>5} {'objects':>7} {'tool':<8} {'run':<7} {'1st Sec s':>9} {'all Sec s':>9} {'Ready s':>9} "
        f"{'ms/obj':>8}",
        flush=True,
    )
    for size in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"k8s-secrets-bench-flux-{size}-"))
        try:
            _, objects, extra = flux_size(size, work / "flux", bins, args.timeout)
            if "changed" in extra:
                kubectl_size(size, objects, extra["changed"], work / "kubectl", bins)
        finally:
            procs.stop_all()
            shutil.rmtree(work, ignore_errors=True)
    print(f"# end {time.strftime('%H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

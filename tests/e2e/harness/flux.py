"""The real Flux controllers (source-controller, kustomize-controller) as local processes.

Built from their Go modules (tools/source-controller, tools/kustomize-controller); their CRDs are
read from the same modules in Go's module cache (``config/crd/bases/``), and their RBAC from the
flux2 module's ``manifests/rbac/`` (tools/flux): ``crd-controller`` for both and
``cluster-reconciler`` (cluster-admin) for kustomize-controller, as `flux install` sets them up.
Each runs with a TokenRequest token of its own ServiceAccount in flux-system, listens on
127.0.0.1 only (metrics, health, and source-controller's artifact storage, which kustomize-controller
downloads from: ``--storage-addr``/``--storage-adv-addr``), without leader election.

What `flux bootstrap` would create is applied once by :meth:`FluxControllers.bootstrap`: the
``flux-system`` GitRepository (pointing at the harness's Git server) and the stack's ``sync/``
Kustomizations, exactly as exported. Everything else is Flux's doing.

source-controller is started with ``--watch-label-selector`` so that it reconciles the
GitRepository only: the stacks' HelmRepositories point at chart repositories on the internet,
which nothing here can reach (see gitops.HelmStandIn, the one place that plays their part).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import ROOT, module_dir
from .kube import Cluster
from .procs import Proc, free_port, wait_for

NAMESPACE = "flux-system"
SOURCE_NAME = "flux-system"
SOURCE_API = "/apis/source.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "/apis/kustomize.toolkit.fluxcd.io/v1"
# The label the harness's GitRepository carries and source-controller selects on.
WATCH_LABEL = "e2e.k8s-secrets/reconciled-by"
WATCH_VALUE = "source-controller"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def crd_files() -> list[Path]:
    """The CRDs of exactly the controller versions built, from their modules."""
    files: list[Path] = []
    for folder in ("source-controller", "kustomize-controller"):
        files += sorted((module_dir(folder) / "config" / "crd" / "bases").glob("*.yaml"))
    return files


def crd_names() -> set[str]:
    names = set()
    for f in crd_files():
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.add(doc["metadata"]["name"])
    return names


def cluster_crds() -> list[Path]:
    """What a cluster under the real controllers gets: the vendored CRDs (ksecrets/schemas/crds, for
    offline validation) minus Flux's own, which come from the controllers' modules (:meth:`install`)."""
    flux_crds = crd_names()
    vendored = sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))
    return [
        f
        for f in vendored
        if not any(d and d["metadata"]["name"] in flux_crds for d in yaml.safe_load_all(f.read_text()))
    ]


def rbac_docs() -> list[dict]:
    """Flux's own controller RBAC (flux2's manifests/rbac/controller.yaml and reconciler.yaml)."""
    docs: list[dict] = []
    for name in ("controller.yaml", "reconciler.yaml"):
        text = (module_dir("flux") / "manifests" / "rbac" / name).read_text()
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def condition(obj: dict | None, kind: str = "Ready") -> dict | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


@dataclass
class FluxControllers:
    cluster: Cluster
    workdir: Path
    bins: dict[str, Path]
    storage_port: int = field(default_factory=free_port)
    requeue_dependency: str = "5s"
    source: Proc | None = None
    kustomize: Proc | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.storage.mkdir(exist_ok=True)

    # ---- install ------------------------------------------------------------------------------
    def install(self) -> None:
        """CRDs from the modules, the flux-system namespace, the controllers' ServiceAccounts and
        Flux's RBAC for them."""
        self.cluster.install_crds(crd_files())
        self.cluster.ensure_namespace(NAMESPACE)
        for sa in ("source-controller", "kustomize-controller"):
            self.cluster.ensure_service_account(sa, NAMESPACE)
        self.cluster.apply(rbac_docs(), field_manager="e2e-flux-install")

    def _kubeconfig(self, sa: str) -> Path:
        return self.cluster.kubeconfig_for(sa, NAMESPACE, self.workdir / f"{sa}.kubeconfig")

    def _env(self, sa: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(KUBECONFIG=str(self._kubeconfig(sa)), RUNTIME_NAMESPACE=NAMESPACE)
        return env

    # ---- lifecycle ----------------------------------------------------------------------------
    def _common(self) -> list[str]:
        return [
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            "--enable-leader-election=false",
            "--log-level=debug",
            "--log-encoding=console",
        ]

    def start_source(self) -> Proc:
        argv = [
            str(self.bins["source-controller"]),
            *self._common(),
            f"--storage-path={self.storage}",
            f"--storage-addr=127.0.0.1:{self.storage_port}",
            f"--storage-adv-addr=127.0.0.1:{self.storage_port}",
            f"--watch-label-selector={WATCH_LABEL}={WATCH_VALUE}",
        ]
        self.source = Proc(
            "source-controller", argv, self.workdir / "source-controller.log", env=self._env("source-controller")
        ).start()
        return self.source

    def start_kustomize(self) -> Proc:
        argv = [
            str(self.bins["kustomize-controller"]),
            *self._common(),
            f"--requeue-dependency={self.requeue_dependency}",
            "--no-remote-bases=true",
        ]
        self.kustomize = Proc(
            "kustomize-controller",
            argv,
            self.workdir / "kustomize-controller.log",
            env=self._env("kustomize-controller"),
        ).start()
        return self.kustomize

    def start(self) -> "FluxControllers":
        self.start_source()
        self.start_kustomize()
        return self

    def stop(self) -> None:
        for p in (self.kustomize, self.source):
            if p is not None:
                p.stop()

    def procs(self) -> list[Proc]:
        return [p for p in (self.source, self.kustomize) if p is not None]

    # ---- what `flux bootstrap` creates --------------------------------------------------------
    def git_repository(self, url: str, interval: str = "1m") -> dict:
        return {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": SOURCE_NAME, "namespace": NAMESPACE, "labels": {WATCH_LABEL: WATCH_VALUE}},
            "spec": {"interval": interval, "url": url, "ref": {"branch": "main"}, "timeout": "60s"},
        }

    def bootstrap(self, url: str, sync_dir: Path) -> list[dict]:
        """The GitRepository and the ``sync/`` Kustomizations, applied once (as bootstrap does)."""
        docs = [self.git_repository(url)]
        for f in sorted(sync_dir.glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
        self.cluster.apply(docs, field_manager="flux-bootstrap")
        return docs

    # ---- reading and poking -------------------------------------------------------------------
    def kustomization(self, name: str) -> dict | None:
        return self.cluster.get(f"{KUSTOMIZE_API}/namespaces/{NAMESPACE}/kustomizations/{name}")

    def gitrepository(self, name: str = SOURCE_NAME) -> dict | None:
        return self.cluster.get(f"{SOURCE_API}/namespaces/{NAMESPACE}/gitrepositories/{name}")

    def request_reconcile(self, kind: str, name: str) -> str:
        """What `flux reconcile` does: set the requestedAt annotation; returns its value."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
        plural, api = ("gitrepositories", SOURCE_API) if kind == "GitRepository" else ("kustomizations", KUSTOMIZE_API)
        r = self.cluster.raw(
            "PATCH",
            f"{api}/namespaces/{NAMESPACE}/{plural}/{name}",
            {"metadata": {"annotations": {REQUESTED_AT: stamp}}},
            content_type="application/merge-patch+json",
        )
        r.raise_for_status()
        return stamp

    def wait_ready(self, name: str, revision: str | None, timeout: float = 300) -> dict:
        """Wait until Kustomization ``name`` is Ready=True (at ``revision`` when given)."""
        seen: dict[str, Any] = {}

        def ready() -> bool:
            k = self.kustomization(name)
            c = condition(k)
            seen["ready"] = c
            seen["obj"] = k
            if not c or c.get("status") != "True":
                return False
            if c.get("observedGeneration") != k["metadata"]["generation"]:
                return False
            return revision is None or (k.get("status") or {}).get("lastAppliedRevision") == revision

        try:
            wait_for(f"Kustomization {name} Ready at {revision}", ready, timeout, self.kustomize)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nlast Ready condition: {seen.get('ready')}") from None
        return seen["obj"]

    def wait_condition(self, name: str, predicate, what: str, timeout: float = 300) -> dict:
        seen: dict[str, Any] = {}

        def check() -> bool:
            k = self.kustomization(name)
            seen["obj"] = k
            return bool(predicate(k))

        try:
            wait_for(f"Kustomization {name}: {what}", check, timeout, self.kustomize)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nlast Ready condition: {condition(seen.get('obj'))}") from None
        return seen["obj"]


def revision(sha: str, branch: str = "main") -> str:
    """How Flux writes a Git revision (source-controller v1: ``<branch>@sha1:<sha>``)."""
    return f"{branch}@sha1:{sha}"

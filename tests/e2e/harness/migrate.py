"""What the `ksecrets migrate` e2e tests share (test_flux_migrate*.py): one cluster per test with the
real Flux controllers cloning from the harness's Git server, the real sealed-secrets controller
and/or Vault with the Vault Secrets Operator as the pair needs, a work tree of the project, and
`publish(msg)`: export, commit, push, reconcile, wait until both Kustomizations are Ready at that
commit.

Real: kube-apiserver + kube-controller-manager (harness/kube.py), source-controller and
kustomize-controller (harness/flux.py), git's http-backend (harness/gitserver.py), the
sealed-secrets controller with a key from `ksecrets keygen` (harness/sealed_secrets.py), Vault (dev
server, TLS) and the operator (harness/vault.py, harness/vso.py), and every `ksecrets` command.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
the HelmReleases are marked Ready, Vault and the operator run as local processes); the scheduler
and kubelet (kubelet.PodStandIn); what `flux bootstrap` writes and the flux-system Kustomization
that keeps `sync/` applied (flux.FluxControllers.bootstrap, applied again at each publish: a
switch to sops adds `decryption` to the apps Kustomization in `sync/`).

:class:`Watcher` samples, every 0.2 s, the app's Deployment (generation, pod template digest) and
its Secret (values, the kinds that own it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import ROOT, binaries, missing_binaries
from . import vault_stack
from .flux import FluxControllers, cluster_crds, condition, revision
from .gitops import HelmStandIn, external_namespaces
from .gitserver import GitServer, Workspace
from .kube import Cluster
from .kubelet import PodStandIn
from .sealed_secrets import StackRepo, keygen, kubectl_secret_data, ksecrets_run

APP_NS, SECRET, DEPLOYMENT = "my-app", "my-app-secrets", "my-app"
# The values every migrate test moves: a space and `=` inside, UTF-8, an empty one, `=` in the value.
VALUES_ENV = (
    "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
    "API_KEY=ak-{stack}-ünïcode-0123\nEMPTY=\nMULTI_EQUALS=a=b=c\n"
)
SEALED_TEMPLATE_STACK = "staging"  # the repository's sealed stack whose controller flags and keygen serve
FLUX_NEEDED = ("source-controller", "kustomize-controller")


@dataclass
class Sample:
    at: float
    generation: int | None
    template: str | None  # sha256 of the pod template as the server holds it
    values: dict[str, str] | None  # the Secret's data (without the operator's _raw)
    owners: tuple[str, ...]  # kinds of the Secret's ownerReferences


def sample(cluster: Cluster, namespace: str = APP_NS) -> Sample:
    dep = cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}")
    sec = cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{SECRET}")
    template = None
    if dep is not None:
        template = hashlib.sha256(json.dumps(dep["spec"]["template"], sort_keys=True).encode()).hexdigest()
    values = None
    owners: tuple[str, ...] = ()
    if sec is not None:
        values = {k: base64.b64decode(v).decode() for k, v in (sec.get("data") or {}).items() if k != "_raw"}
        owners = tuple(o["kind"] for o in sec["metadata"].get("ownerReferences") or [])
    return Sample(time.monotonic(), dep["metadata"]["generation"] if dep else None, template, values, owners)


@dataclass
class Watcher:
    cluster: Cluster
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Watcher":
        self._thread = threading.Thread(target=self._run, name="migrate-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # noqa: BLE001 - recorded, asserted empty at the end
                self.errors.append(repr(exc))

    def sample(self) -> Sample:
        return sample(self.cluster)

    @property
    def last(self) -> Sample:
        return self.samples[-1]

    def absent(self, since: float = 0.0) -> int:
        """Samples (at or after `since`) in which the Secret did not exist."""
        return sum(1 for s in self.samples if s.at >= since and s.values is None)

    def other(self, original: dict[str, str]) -> int:
        """Samples in which the Secret existed with anything but `original`."""
        return sum(1 for s in self.samples if s.values is not None and s.values != original)


@dataclass
class MigrationRig:
    """One cluster, its controllers and a work tree of the project on stack `stack`."""

    cluster: Cluster
    flux: FluxControllers
    server: GitServer
    ws: Workspace
    repo: StackRepo  # the work tree as `ksecrets` sees it (its env: keys, Vault, the age key file)
    workdir: Path
    pods: PodStandIn
    helm: HelmStandIn
    vault: Any = None  # DevVault, when the pair needs Vault
    operator: Any = None  # vso.Operator, idem
    sealed_controller: Any = None
    backup: Path | None = None  # the keygen backup (the sealing private key, encrypted)
    age: Any = None  # sops.AgeKey, once age_key() made one

    @property
    def stack(self) -> str:
        return self.repo.stack

    @property
    def env(self) -> dict[str, str]:
        return self.repo.env

    @property
    def sync_dir(self) -> Path:
        return self.repo.k8s_dir / "sync"

    def ks(self, *args: str, expect_ok: bool = True) -> str:
        return ksecrets_run(*args, cwd=self.ws.root, env=self.env, expect_ok=expect_ok).stdout

    # ---- Git and Flux -------------------------------------------------------------------------
    def commit(self, message: str) -> str:
        """`ksecrets export`, commit everything, push; returns the commit."""
        self.repo.export()
        sha = self.ws.commit(message)
        self.ws.push()
        return sha

    def reconcile(self) -> None:
        self.flux.bootstrap(self.server.url, self.sync_dir)  # the flux-system Kustomization's part
        self.flux.request_reconcile("GitRepository", "flux-system")
        for layer in ("infrastructure", "apps"):
            self.flux.request_reconcile("Kustomization", f"{self.stack}-{layer}")

    def converge(self, sha: str, timeout: float = 300) -> None:
        for layer in ("infrastructure", "apps"):
            self.flux.wait_ready(f"{self.stack}-{layer}", revision(sha), timeout=timeout)

    def publish(self, message: str, *, wait: bool = True) -> str:
        """Export, commit, push, reconcile and (`wait`) both Kustomizations Ready at the commit."""
        sha = self.commit(message)
        self.reconcile()
        if wait:
            self.converge(sha)
        return sha

    def bootstrap(self, message: str) -> str:
        """The first commit: the controllers started, `flux bootstrap`'s objects applied, Ready."""
        sha = self.commit(message)
        self.flux.start()
        self.flux.bootstrap(self.server.url, self.sync_dir)
        self.converge(sha)
        return sha

    def inventory_kinds(self, layer: str = "apps") -> set[str]:
        k = self.flux.kustomization(f"{self.stack}-{layer}") or {}
        return {e["id"].rsplit("_", 1)[-1] for e in k["status"]["inventory"]["entries"]}

    # ---- values and keys ----------------------------------------------------------------------
    def env_file(self) -> Path:
        f = self.workdir / "env" / f"{self.stack}.env"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(VALUES_ENV.format(stack=self.stack))
        f.chmod(0o600)
        return f

    def expected(self, env_file: Path) -> dict[str, str]:
        """What the real `kubectl create secret --from-env-file` makes of the file: the oracle."""
        data = kubectl_secret_data(self.cluster, SECRET, APP_NS, env_file)
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def age_key(self, key: Any = None) -> Any:
        """An age key (`key`, or a new one): its file in SOPS_AGE_KEY_FILE, and in the cluster as the
        Secret the apps Kustomization's `decryption.secretRef` names (as README says, by hand)."""
        from ksecrets.sealing import sops

        self.age = key or sops.generate_age_key()
        key_file = self.workdir / "keys" / f"{self.stack}.agekey"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(self.age.key_file())
        key_file.chmod(0o600)
        self.env["SOPS_AGE_KEY_FILE"] = str(key_file)
        manifest = self.cluster.kubectl(
            "-n", "flux-system", "create", "secret", "generic", "sops-age",
            f"--from-file=age.agekey={key_file}", "--dry-run=client", "-o", "yaml",
        ).stdout  # fmt: skip
        self.cluster.kubectl("apply", "-f", "-", input=manifest)
        return self.age

    def point_vault(self) -> None:
        vault_stack.point_at(self.ws.root, self.stack, self.vault)

    def bootstrap_vault(self) -> str:
        return vault_stack.bootstrap(self.cluster, self.vault, self.ws.root, self.stack, self.workdir / "bootstrap")

    def kv(self, path: str = DEPLOYMENT) -> dict[str, str]:
        return self.vault.client().secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]

    def deployment_available(self, timeout: float = 120) -> None:
        def available() -> bool:
            dep = self.cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}")
            return (condition(dep, "Available") or {}).get("status") == "True"

        self.cluster.wait("the Deployment Available", available, timeout)


def needed(*, sealed: bool, vault: bool) -> tuple[str, ...]:
    names = list(FLUX_NEEDED)
    if vault:
        names += ["vault", "vault-secrets-operator"]
    if sealed:
        names.append("sealed-secrets-controller")
    return tuple(names)


@contextmanager
def migration_rig(
    cluster_factory,
    sealed_controller_factory,
    run_env: dict[str, str],
    workdir: Path,
    name: str,
    *,
    stack: str,
    stack_file: str | None = None,
    sealed: bool = False,
    vault: bool = False,
) -> Iterator[MigrationRig]:
    """A :class:`MigrationRig`, everything it started stopped by PID on the way out.

    `stack_file`: the text of Pulumi.<stack>.yaml written into the work tree (None: the
    repository's own). `sealed`: the sealed-secrets controller runs with a key from `ksecrets
    keygen` (of the repository's sealed stack), whose certificate becomes certs/<stack>.pem and whose
    encrypted backup is `rig.backup`. `vault`: a Vault dev server (TLS) and the operator."""
    missing = missing_binaries(needed(sealed=sealed, vault=vault))
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = binaries()
    with ExitStack() as stops:
        vlt = op = None
        if vault:
            vlt, cluster, flux, op = vault_stack.vault_flux_cluster(cluster_factory, workdir, name, bins)
            stops.callback(vlt.stop)
            stops.callback(op.stop)
        else:
            cluster = cluster_factory(name, crds=cluster_crds())
            flux = FluxControllers(cluster, workdir / "controllers", bins)
            flux.install()
        stops.callback(flux.stop)
        backup = controller = cert = None
        if sealed:
            template = StackRepo.copy(ROOT, workdir / "template", SEALED_TEMPLATE_STACK, run_env)
            backup = workdir / "keys" / "keygen.ksbackup"
            backup.parent.mkdir(parents=True, exist_ok=True)
            controller = sealed_controller_factory(
                cluster, workdir / "sealed-controller", keygen(template, backup), SEALED_TEMPLATE_STACK
            )
            cert = template.cert_path
        server = GitServer(workdir / "git").init().start()
        stops.callback(server.stop)
        ws = Workspace.of_project(ROOT, workdir / "tree", server)
        if stack_file is not None:
            (ws.root / f"Pulumi.{stack}.yaml").write_text(stack_file)
        if cert is not None:
            shutil.copy2(cert, ws.root / "certs" / f"{stack}.pem")
        env = dict(run_env)
        if vlt is not None:
            env.update(vlt.env())
        repo = StackRepo(ws.root, stack, env)
        for ns in external_namespaces(ws.root, stack):
            cluster.ensure_namespace(ns)
        pods = PodStandIn(cluster).start()
        stops.callback(pods.stop)
        helm = HelmStandIn(cluster).start()
        stops.callback(helm.stop)
        yield MigrationRig(cluster, flux, server, ws, repo, workdir, pods, helm, vlt, op, controller, backup)


def dev_stack(backend: str, *, recipient: str = "", vault_address: str = "") -> str:
    """A one-app stack `dev` on `backend` (sops: for `recipient`; vault: at `vault_address`, TLS)."""
    lines = ["config:", "  kubernetes:context: dev", f"  k8s-secrets:backend: {backend}"]
    if backend == "sops":
        lines += ["  k8s-secrets:sops:", f"    recipients: [{recipient}]"]
    if backend == "vault":
        lines += ["  k8s-secrets:vault:", f"    address: {vault_address}", "    tls:", "      enabled: true"]
    lines += [
        "  k8s-secrets:monitoring:",
        "    enabled: false",
        "  k8s-secrets:apps:",
        f"    - name: {DEPLOYMENT}",
        f"      namespace: {APP_NS}",
        f"      secretName: {SECRET}",
    ]
    if backend == "vault":
        lines += ["      vault:", f"        path: {DEPLOYMENT}"]
    lines += [
        "      deployments:",
        f"        - name: {DEPLOYMENT}",
        "          image: ghcr.io/stefanprodan/podinfo:6.7.1",
        "          envFrom: true",
    ]
    return "\n".join(lines) + "\n"

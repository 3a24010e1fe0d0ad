"""Issue 19, item 6: `ksecrets migrate --stack staging --to vault` through Git, each phase rendered,
committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager (Deployments → ReplicaSets), source-controller and
kustomize-controller v1.9.6 (harness/flux.py) cloning from git's own http-backend
(harness/gitserver.py), the sealed-secrets controller v0.36.6 with a key from `ksecrets keygen`,
Vault (dev server, TLS), the Vault Secrets Operator (harness/vso.py), and `ksecrets seal`,
`migrate --prepare`, `vault bootstrap`, `migrate --backup`, `migrate --finish` and `export` on a
commit of the project's tree.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
the Vault and operator HelmReleases the install phase adds are marked Ready, Vault and the
operator run as local processes); the scheduler and kubelet (kubelet.PodStandIn); what `flux
bootstrap` writes (flux.FluxControllers.bootstrap). The stack's one change is ``vault.address``,
set once `--prepare` has added the ``vault:`` section (harness/vault_stack.py).

A watcher samples, every 0.2 s through the whole run, each Deployment's generation and pod
template and the app's Secret (its values and who owns it). Generation is monotonic, so a sampled
generation equal to the first one proves no template change happened before that sample.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness import vault_stack
from tests.e2e.harness.flux import FluxControllers, condition, revision
from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.sealed_secrets import StackRepo, keygen, kubectl_secret_data, ksecrets_run
from tests.e2e.harness.vault import DevVault
from tests.e2e.harness.vso import Operator

NEEDED = (
    "source-controller",
    "kustomize-controller",
    "vault",
    "vault-secrets-operator",
    "sealed-secrets-controller",
)
STACK = "staging"
APP_NS, SECRET, DEPLOYMENT = "my-app", "my-app-secrets", "my-app"


@dataclass
class Sample:
    at: float
    generation: int | None
    template: str | None  # sha256 of the pod template as the server holds it
    values: dict[str, str] | None  # the Secret's data (without the operator's _raw)
    owners: tuple[str, ...]  # kinds of the Secret's ownerReferences


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
        dep = self.cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}")
        sec = self.cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}")
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
class MigrateEnv:
    cluster: Cluster
    flux: FluxControllers
    vault: DevVault
    operator: Operator
    server: GitServer
    ws: Workspace
    repo: StackRepo
    backup: Path
    pods: PodStandIn
    helm: HelmStandIn
    workdir: Path

    def publish(self, message: str) -> str:
        self.repo.export()
        sha = self.ws.commit(message)
        self.ws.push()
        self.flux.request_reconcile("GitRepository", "flux-system")
        for layer in ("infrastructure", "apps"):
            self.flux.request_reconcile("Kustomization", f"{STACK}-{layer}")
        return sha

    def converge(self, sha: str, timeout: float = 300) -> None:
        for layer in ("infrastructure", "apps"):
            self.flux.wait_ready(f"{STACK}-{layer}", revision(sha), timeout=timeout)


@pytest.fixture(scope="module")
def mx(cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir: Path):
    missing = missing_binaries(NEEDED)
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = binaries()
    workdir = e2e_dir / "flux-migrate"
    vault, cluster, flux, op = vault_stack.vault_flux_cluster(cluster_factory, workdir, "flux-migrate", bins)

    template = StackRepo.copy(ROOT, workdir / "template", STACK, sealed_run_env)
    backup = workdir / "keys" / "keygen.ksbackup"
    backup.parent.mkdir(parents=True, exist_ok=True)
    sealed_controller_factory(cluster, workdir / "sealed-controller", keygen(template, backup), STACK)

    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    shutil.copy2(template.cert_path, ws.root / "certs" / f"{STACK}.pem")
    repo = StackRepo(ws.root, STACK, {**sealed_run_env, **vault.env()})
    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = MigrateEnv(cluster, flux, vault, op, server, ws, repo, backup, pods, helm, workdir)
    try:
        yield env
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        op.stop()
        server.stop()
        vault.stop()


def test_migrate_to_vault_through_git(mx: MigrateEnv):
    """Issue 19, test 6. Sealed values reach the cluster through Flux; then each phase of `ksecrets
    migrate` is committed and reconciled: `--prepare` (Vault and the operator installed, the
    SealedSecrets release their Secrets), the switch (values pushed from the sealed entries,
    VaultStaticSecrets take the Secrets over, Flux prunes the SealedSecrets), `--finish`. Through
    all of it the Secret is never missing and never holds another value, no Deployment's pod
    template changes before the operator has written (owns) the Secret, and the final Secret holds
    every original value."""
    # Phase 0: the sealed stack, sealed for this cluster's key, bootstrapped through Flux.
    env_file = mx.workdir / "env" / "staging.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
        "API_KEY=ak-staging-ünïcode-0123\nEMPTY=\nMULTI_EQUALS=a=b=c\n"
    )
    env_file.chmod(0o600)
    mx.repo.seal(SECRET, env_file, namespace=APP_NS, scope="strict")
    original = {
        k: base64.b64decode(v).decode() for k, v in kubectl_secret_data(mx.cluster, SECRET, APP_NS, env_file).items()
    }
    mx.repo.export()
    sha = mx.ws.commit("staging sealed for this cluster's key")
    mx.ws.push()
    mx.flux.start()
    mx.flux.bootstrap(mx.server.url, mx.repo.k8s_dir / "sync")
    mx.converge(sha)
    mx.cluster.wait(
        "the sealed Secret",
        lambda: (s := Watcher(mx.cluster).sample()).values == original and s.owners == ("SealedSecret",),
        120,
    )
    mx.cluster.wait(
        "the Deployment Available",
        lambda: (
            (
                condition(mx.cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}"), "Available")
                or {}
            ).get("status")
            == "True"
        ),
        120,
    )
    watcher = Watcher(mx.cluster).start()
    try:
        time.sleep(1.0)
        base = watcher.samples[-1]
        assert base.generation is not None and base.values == original

        # Phase 1: --prepare, committed and reconciled.
        out = ksecrets_run("migrate", "--stack", STACK, "--to", "vault", "--prepare", cwd=mx.ws.root, env=mx.repo.env)
        assert "vaultMigration: install" in out.stdout
        vault_stack.point_at(mx.ws.root, STACK, mx.vault)
        sha1 = mx.publish("staging: install Vault (migrate --prepare)")
        mx.converge(sha1)

        def released() -> bool:
            s = watcher.samples[-1]
            return s.owners == () and s.values == original

        mx.cluster.wait("the SealedSecret released its Secret (no ownerReference)", released, 120)
        after_prepare = watcher.samples[-1]
        assert after_prepare.generation == base.generation and after_prepare.template == base.template

        # Vault up: bootstrap as README says (after the install commit).
        vault_stack.bootstrap(mx.cluster, mx.vault, mx.ws.root, STACK, mx.workdir / "bootstrap")

        # Phase 2: the switch, with the keygen backup as the recovery key.
        out = ksecrets_run(
            "migrate", "--stack", STACK, "--to", "vault", "--backup", str(mx.backup), cwd=mx.ws.root, env=mx.repo.env
        )
        assert "backend switched to vault" in out.stdout, out.stdout
        kv = mx.vault.client().secrets.kv.v2.read_secret_version(
            path="my-app", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        assert kv == original
        switched_at = time.monotonic()
        sha2 = mx.publish("staging: vault backend (migrate --to vault)")
        mx.converge(sha2)

        def operator_owns() -> bool:
            s = watcher.samples[-1]
            return "VaultStaticSecret" in s.owners and s.values == original

        mx.cluster.wait("the operator owns the Secret", operator_owns, 180)
        assert mx.cluster.get(f"/apis/bitnami.com/v1alpha1/namespaces/{APP_NS}/sealedsecrets/{SECRET}") is None

        # Phase 3: --finish.
        out = ksecrets_run("migrate", "--stack", STACK, "--to", "vault", "--finish", cwd=mx.ws.root, env=mx.repo.env)
        assert "vaultMigration removed" in out.stdout
        sha3 = mx.publish("staging: migration done (migrate --finish)")
        mx.converge(sha3)
        time.sleep(2.0)
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    # The Secret was never missing and never held anything but the original values.
    assert all(s.values == original for s in samples), [s.values is None for s in samples].count(True)
    first_owned = next(s.at for s in samples if "VaultStaticSecret" in s.owners)
    assert first_owned >= switched_at
    # No pod template change before the operator had written the Secret: every sample before it
    # has the first generation and template.
    before = [s for s in samples if s.at < first_owned]
    assert before and all(s.generation == base.generation and s.template == base.template for s in before), {
        (s.generation, s.template[:8] if s.template else None) for s in before
    }
    changes = sorted({s.generation for s in samples if s.generation is not None})
    final = samples[-1]
    assert final.values == original and "VaultStaticSecret" in final.owners
    apps = mx.flux.kustomization(f"{STACK}-apps")
    kinds = {e["id"].rsplit("_", 1)[-1] for e in apps["status"]["inventory"]["entries"]}
    assert "VaultStaticSecret" in kinds and "SealedSecret" not in kinds, kinds
    print(
        f"\nfigure: flux migrate: {len(samples)} samples over {samples[-1].at - samples[0].at:.0f} s; the operator "
        f"owned the Secret {first_owned - switched_at:.1f} s after the switch was committed; Deployment generations "
        f"seen {changes} (base {base.generation})"
    )

"""Issue 20 §3: `ksecrets migrate --stack dev --to vault` from a sops stack, through Git, each phase
exported, committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(kustomize-controller decrypts the SOPS Secret with the age key Secret of `decryption.secretRef`),
git's http-backend, Vault (dev server, TLS) and the Vault Secrets Operator (harness/vso.py), and
`ksecrets sops set`, `migrate --prepare`, `vault bootstrap`, `migrate --age-key-file`, `migrate
--finish` and `export` on a copy of the project's tree with a sops stack `dev` added.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
Vault and the operator run as local processes); the scheduler and kubelet (kubelet.PodStandIn);
what `flux bootstrap` writes and the flux-system Kustomization that keeps `sync/` applied
(flux.FluxControllers.bootstrap, applied again at each commit). The stack's `vault.address` is set
to the local Vault once the switch added the section (harness/vault_stack.point_at).

The watcher of test_flux_migrate samples the app's Secret and Deployment every 0.2 s.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from ksecrets.sealing import sops
from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness import vault_stack
from tests.e2e.harness.flux import revision
from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.sealed_secrets import kubectl_secret_data, ksecrets_run
from tests.e2e.test_flux_migrate import APP_NS, DEPLOYMENT, SECRET, Watcher

NEEDED = ("source-controller", "kustomize-controller", "vault", "vault-secrets-operator")
STACK = "dev"
STACK_FILE = f"""\
config:
  kubernetes:context: dev
  k8s-secrets:backend: sops
  k8s-secrets:sops:
    recipients: [{{recipient}}]
  k8s-secrets:monitoring:
    enabled: false
  k8s-secrets:apps:
    - name: {DEPLOYMENT}
      namespace: {APP_NS}
      secretName: {SECRET}
      deployments:
        - name: {DEPLOYMENT}
          image: ghcr.io/stefanprodan/podinfo:6.7.1
          envFrom: true
"""


@pytest.fixture(scope="module")
def vx(cluster_factory, e2e_dir: Path):
    missing = missing_binaries(NEEDED)
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    workdir = e2e_dir / "flux-migrate-sops-vault"
    vault, cluster, flux, op = vault_stack.vault_flux_cluster(cluster_factory, workdir, "flux-sops-vault", binaries())
    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    age = sops.generate_age_key()
    key_file = workdir / "keys" / f"{STACK}.agekey"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(age.key_file())
    key_file.chmod(0o600)
    (ws.root / f"Pulumi.{STACK}.yaml").write_text(STACK_FILE.format(recipient=age.recipient))
    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = {"SOPS_AGE_KEY_FILE": str(key_file), **vault.env()}
    try:
        yield dict(cluster=cluster, flux=flux, vault=vault, server=server, ws=ws, age=age, env=env, workdir=workdir)
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        op.stop()
        server.stop()
        vault.stop()


def test_migrate_sops_to_vault_through_git(vx):
    cluster, flux, vault, ws, env, workdir = vx["cluster"], vx["flux"], vx["vault"], vx["ws"], vx["env"], vx["workdir"]
    sync = ws.root / "k8s" / STACK / "sync"

    def ks(*args: str) -> str:
        return ksecrets_run(*args, cwd=ws.root, env=env).stdout

    def publish(message: str, *, reconcile: bool = True) -> str:
        ks("export", "--stack", STACK)
        sha = ws.commit(message)
        ws.push()
        if reconcile:
            flux.bootstrap(vx["server"].url, sync)  # the flux-system Kustomization's part
            flux.request_reconcile("GitRepository", "flux-system")
            for layer in ("infrastructure", "apps"):
                flux.request_reconcile("Kustomization", f"{STACK}-{layer}")
        return sha

    def converge(sha: str) -> None:
        for layer in ("infrastructure", "apps"):
            flux.wait_ready(f"{STACK}-{layer}", revision(sha), timeout=300)

    env_file = workdir / "env" / "dev.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
        "API_KEY=ak-dev-ünïcode-0123\nEMPTY=\nMULTI_EQUALS=a=b=c\n"
    )
    env_file.chmod(0o600)
    ks("sops", "set", "--stack", STACK, "--name", SECRET, f"--from-env-file={env_file}")
    original = {
        k: base64.b64decode(v).decode() for k, v in kubectl_secret_data(cluster, SECRET, APP_NS, env_file).items()
    }
    manifest = cluster.kubectl(
        "-n", "flux-system", "create", "secret", "generic", "sops-age",
        f"--from-file=age.agekey={env['SOPS_AGE_KEY_FILE']}", "--dry-run=client", "-o", "yaml",
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=manifest)
    sha = publish("dev: sops Secret", reconcile=False)
    flux.start()
    flux.bootstrap(vx["server"].url, sync)
    converge(sha)
    cluster.wait("the SOPS Secret", lambda: Watcher(cluster).sample().values == original, 120)
    watcher = Watcher(cluster).start()
    try:
        time.sleep(1.0)
        # Phase 1: --prepare: the SOPS file says `prune: disabled` (re-encrypted, same values).
        out = ks("migrate", "--stack", STACK, "--to", "vault", "--prepare")
        assert "kustomize.toolkit.fluxcd.io/prune: disabled" in out, out
        sha1 = publish("dev: SOPS Secret not pruned (migrate --to vault --prepare)")
        converge(sha1)
        cluster.wait(
            "the Secret carries prune: disabled",
            lambda: (
                (
                    ((cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}") or {}).get("metadata") or {}).get(
                        "annotations"
                    )
                    or {}
                ).get("kustomize.toolkit.fluxcd.io/prune")
                == "disabled"
            ),
            120,
        )

        # Phase 2: the switch: values decrypted with the age key, pushed to Vault, backend vault
        # (handover); Vault's address and bootstrap as README says, then one commit.
        out = ks("migrate", "--stack", STACK, "--to", "vault")
        assert "values moved from sops to vault; backend switched to vault" in out, out
        moved = int(out.split(" values moved")[0].split()[-1])
        vault_stack.point_at(ws.root, STACK, vault)
        vault_stack.bootstrap(cluster, vault, ws.root, STACK, workdir / "bootstrap")
        kv = vault.client().secrets.kv.v2.read_secret_version(
            path=DEPLOYMENT, mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        assert kv == original
        switched_at = time.monotonic()
        sha2 = publish("dev: vault backend (migrate --to vault)")
        converge(sha2)
        cluster.wait(
            "the operator owns the Secret",
            lambda: "VaultStaticSecret" in (s := watcher.samples[-1]).owners and s.values == original,
            180,
        )

        # Phase 3: --finish.
        out = ks("migrate", "--stack", STACK, "--to", "vault", "--finish")
        assert "vaultMigration removed" in out
        sha3 = publish("dev: migration done (migrate --finish)")
        converge(sha3)
        time.sleep(2.0)
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    missing = sum(1 for s in samples if s.values is None)
    other = sum(1 for s in samples if s.values is not None and s.values != original)
    assert missing == 0 and other == 0, (missing, other, len(samples))
    final = samples[-1]
    assert final.values == original and "VaultStaticSecret" in final.owners
    first_owned = next(s.at for s in samples if "VaultStaticSecret" in s.owners)
    apps = flux.kustomization(f"{STACK}-apps")
    kinds = {e["id"].rsplit("_", 1)[-1] for e in apps["status"]["inventory"]["entries"]}
    assert "VaultStaticSecret" in kinds and "Secret" not in kinds, kinds
    print(
        f"\nfigure: flux migrate sops->vault: {moved} values moved; {len(samples)} samples over "
        f"{samples[-1].at - samples[0].at:.0f} s, the Secret never missing nor other-valued; the operator owned it "
        f"{first_owned - switched_at:.1f} s after the switch was committed"
    )

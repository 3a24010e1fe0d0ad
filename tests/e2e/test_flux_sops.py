"""Issue 20 §2, last bullet: a sops stack through Git with the real kustomize-controller.

A stack on the sops backend (`Pulumi.dev.yaml` written into a copy of the project's tree, with one
app), its Secret written by the real `ksecrets sops set` from an env file, exported by `ksecrets
export`, committed and pushed to the harness's Git server. Flux's kustomize-controller v1.9.6
decrypts it with the age key in the Secret the apps Kustomization's `decryption.secretRef` names
(created by hand, as README's `stack new` steps say), and the Secret in the cluster holds exactly
what the real `kubectl create secret generic --from-env-file` makes of the same env file. Then a
file encrypted for another age key: the apps Kustomization goes not Ready with Flux's own
decryption message (and the Secret keeps its values); putting the right file back in Git recovers.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(harness/flux.py) cloning from git's own http-backend (harness/gitserver.py), the age and SOPS
code Flux links (its own decryptor), `ksecrets sops set` / `export` on the copy.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn);
the scheduler and kubelet (kubelet.PodStandIn); what `flux bootstrap` writes
(flux.FluxControllers.bootstrap).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pytest

from ksecrets.sealing import sops
from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness.flux import FluxControllers, cluster_crds, condition, revision
from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.sealed_secrets import kubectl_secret_data, ksecrets_run, secret_data

NEEDED = ("source-controller", "kustomize-controller")
STACK = "dev"
APP_NS, SECRET = "web", "web-secrets"
KEY_SECRET = "sops-age"  # the stack's sops.keySecret (the default)
STACK_FILE = """\
config:
  kubernetes:context: dev
  k8s-secrets:backend: sops
  k8s-secrets:sops:
    recipients: [{recipient}]
  k8s-secrets:monitoring:
    enabled: false
  k8s-secrets:apps:
    - name: web
      namespace: web
      secretName: web-secrets
      deployments:
        - name: web
          image: ghcr.io/stefanprodan/podinfo:6.7.1
          envFrom: true
"""
# Values kubectl's env-file reader and ours must agree on: `=` inside, spaces, UTF-8, empty.
ENV = (
    "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
    "API_KEY=ak-dev-ünïcode-0123\nEMPTY=\nMULTI_EQUALS=a=b=c\n"
)


@dataclass
class SopsEnv:
    cluster: Cluster
    flux: FluxControllers
    server: GitServer
    ws: Workspace
    key: sops.AgeKey
    key_file: Path
    workdir: Path
    env: dict[str, str]

    def ksecrets(self, *args: str):
        return ksecrets_run(*args, cwd=self.ws.root, env=self.env)

    def publish(self, message: str, *, reconcile: bool = True) -> str:
        self.ksecrets("export", "--stack", STACK)
        sha = self.ws.commit(message)
        self.ws.push()
        if not reconcile:
            return sha
        self.flux.request_reconcile("GitRepository", "flux-system")
        for layer in ("infrastructure", "apps"):
            self.flux.request_reconcile("Kustomization", f"{STACK}-{layer}")
        return sha


@pytest.fixture(scope="module")
def sx(cluster_factory, e2e_dir: Path):
    missing = missing_binaries(NEEDED)
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = binaries()
    workdir = e2e_dir / "flux-sops"
    cluster = cluster_factory("flux-sops", crds=cluster_crds())
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()
    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    key = sops.generate_age_key()
    key_file = workdir / "keys" / f"{STACK}.agekey"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key.key_file())
    key_file.chmod(0o600)
    (ws.root / f"Pulumi.{STACK}.yaml").write_text(STACK_FILE.format(recipient=key.recipient))
    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = SopsEnv(cluster, flux, server, ws, key, key_file, workdir, {"SOPS_AGE_KEY_FILE": str(key_file)})
    try:
        yield env
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        server.stop()


def _age_key_secret(sx: SopsEnv) -> None:
    """README's step: the age key reaches the cluster as the Secret `decryption.secretRef` names
    (kubectl -n flux-system create secret generic sops-age --from-file=age.agekey=dev.agekey)."""
    out = sx.cluster.kubectl(
        "-n",
        "flux-system",
        "create",
        "secret",
        "generic",
        KEY_SECRET,
        f"--from-file=age.agekey={sx.key_file}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    sx.cluster.kubectl("apply", "-f", "-", input=out.stdout)


def test_flux_decrypts_the_committed_sops_secret_and_refuses_a_foreign_key(sx: SopsEnv):
    env_file = sx.workdir / "env" / "dev.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(ENV)
    env_file.chmod(0o600)
    out = sx.ksecrets("sops", "set", "--stack", STACK, "--name", SECRET, f"--from-env-file={env_file}")
    assert "created" in out.stdout, out.stdout
    expected = kubectl_secret_data(sx.cluster, SECRET, APP_NS, env_file)
    assert set(expected) == {"DATABASE_URL", "API_KEY", "EMPTY", "MULTI_EQUALS"}

    exported = sx.ws.root / "k8s" / STACK / "apps" / f"secret-{SECRET}.sops.yaml"
    sha = sx.publish("dev: sops Secret", reconcile=False)  # Flux is bootstrapped below
    assert exported.read_bytes() == (sx.ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml").read_bytes()
    assert "ENC[AES256_GCM" in exported.read_text() and "ak-dev" not in exported.read_text()
    _age_key_secret(sx)
    sx.flux.start()
    sx.flux.bootstrap(sx.server.url, sx.ws.root / "k8s" / STACK / "sync")
    for layer in ("infrastructure", "apps"):
        sx.flux.wait_ready(f"{STACK}-{layer}", revision(sha), timeout=300)
    live = sx.cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}")
    assert live is not None
    assert (live.get("data") or {}) == expected  # byte-equal, base64 of the same bytes
    assert live.get("type") == "Opaque"
    assert "sops" not in live  # Flux stripped the SOPS metadata
    apps = sx.flux.kustomization(f"{STACK}-apps")
    assert apps["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": KEY_SECRET}}

    # A file encrypted for another age key: Flux cannot decrypt, the Kustomization is not Ready
    # with Flux's own message, the Secret keeps its values.
    other = sops.generate_age_key()
    good = (sx.ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml").read_bytes()
    plain = sops.decrypt(good.decode(), [sx.key.identity], "good")
    foreign = dict(plain)
    foreign["data"] = {**plain["data"], "API_KEY": base64.b64encode(b"other-key-value").decode()}
    foreign.pop("sops", None)
    (sx.ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml").write_text(
        sops.encrypt_secret(foreign, [other.recipient], f"secrets/{STACK}/{SECRET}.sops.yaml")
    )
    bad_sha = sx.publish("dev: a SOPS file for another key")

    def refused(k: dict | None) -> bool:
        c = condition(k)
        return bool(
            c
            and c["status"] == "False"
            and bad_sha in (k.get("status") or {}).get("lastAttemptedRevision", "")
            and "decrypt" in c.get("message", "").lower()
        )

    ks = sx.flux.wait_condition(f"{STACK}-apps", refused, "not Ready: cannot decrypt", timeout=300)
    c = condition(ks)
    assert c is not None and c["reason"] in ("BuildFailed", "ReconciliationFailed"), c
    assert "other-key-value" not in c["message"] and SECRET in c["message"], c
    assert ks["status"]["lastAppliedRevision"] == revision(sha)
    assert sx.cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}")["data"] == expected

    # Fixing it in Git recovers.
    (sx.ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml").write_bytes(good)
    fixed = sx.publish("dev: the SOPS file for the stack's key again")
    sx.flux.wait_ready(f"{STACK}-apps", revision(fixed), timeout=300)
    assert secret_data(sx.cluster, APP_NS, SECRET) is not None
    assert sx.cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}")["data"] == expected
    print(
        f"\nfigure: flux sops: {len(expected)} keys decrypted by kustomize-controller equal kubectl's; "
        f"foreign key: {c['reason']}: {c['message'][:300]}"
    )

"""Issue 19, item 1 for the Vault stack: the real source-controller and kustomize-controller
bring `production` to Ready from a Git server, with a real Vault and the real Vault Secrets
Operator writing the app's Secret.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(harness/flux.py), git's own http-backend on 127.0.0.1 (harness/gitserver.py) holding a commit of
the project's tree, Vault (dev server with TLS; harness/vault.py), the Vault Secrets Operator with
its own CRDs and the chart's RBAC (harness/vso.py), and `ksecrets export`, `vault bootstrap` and
`vault push` on that tree. Flux evaluates ``dependsOn``, ``wait`` (kstatus, and the stack's
``healthCheckExprs`` for VaultStaticSecrets), impersonation of ``production-apps`` and prune.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn
marks the Vault, operator and sealed-secrets HelmReleases Ready; the operator and Vault run as
local processes instead of the charts' pods); the scheduler and kubelet (kubelet.PodStandIn); what
`flux bootstrap` writes (flux.FluxControllers.bootstrap). The stack's one change is
``vault.address`` (harness/vault_stack.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness import vault_stack
from tests.e2e.harness.flux import FluxControllers, condition, revision
from tests.e2e.harness.gitops import HelmStandIn, build, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.procs import wait_for
from tests.e2e.harness.sealed_secrets import StackRepo, ksecrets_run
from tests.e2e.harness.vault import DevVault
from tests.e2e.harness.vso import Operator

NEEDED = ("source-controller", "kustomize-controller", "vault", "vault-secrets-operator")
STACK = "production"


def secret_values(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data, without the ``_raw`` key the operator adds (the whole kv-v2 response)."""
    obj = cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if obj is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items() if k != "_raw"}


@dataclass
class VaultFluxEnv:
    cluster: Cluster
    flux: FluxControllers
    vault: DevVault
    operator: Operator
    server: GitServer
    ws: Workspace
    repo: StackRepo
    pods: PodStandIn
    helm: HelmStandIn
    workdir: Path


@pytest.fixture(scope="module")
def vx(cluster_factory, e2e_dir: Path):
    missing = missing_binaries(NEEDED)
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = binaries()
    workdir = e2e_dir / "flux-vault"
    vault, cluster, flux, op = vault_stack.vault_flux_cluster(cluster_factory, workdir, "flux-vault", bins)

    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    vault_stack.point_at(ws.root, STACK, vault)
    repo = StackRepo(ws.root, STACK, {})
    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = VaultFluxEnv(cluster, flux, vault, op, server, ws, repo, pods, helm, workdir)
    try:
        yield env
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        op.stop()
        server.stop()
        vault.stop()


def test_vault_stack_bootstrap_to_ready(vx: VaultFluxEnv):
    """Issue 19, test 1 for `production`: Vault bootstrapped and a value pushed as README says;
    then the GitRepository and the sync/ Kustomizations applied once. kustomize-controller applies
    infrastructure, then apps (dependsOn), both Ready at the pushed commit; every object of both
    layers is in their inventories; the operator (logged in as my-app's ServiceAccount through the
    real TokenReview) wrote my-app-secrets with the pushed values, and apps turned Ready only once
    the VaultStaticSecret had synced (healthCheckExprs evaluated by Flux)."""
    bootstrap_out = vault_stack.bootstrap(vx.cluster, vx.vault, vx.ws.root, STACK, vx.workdir / "bootstrap")
    assert "role my-app (my-app/my-app)" in bootstrap_out
    values = {"DATABASE_URL": "postgres://app:flux-e2e@db.example:5432/app", "API_KEY": "ak-flux-e2e-0123456789"}
    env_file = vx.workdir / "env" / "production.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    push = ksecrets_run(
        "vault",
        "push",
        "--stack",
        STACK,
        "--path",
        "my-app",
        f"--from-env-file={env_file}",
        cwd=vx.ws.root,
        env=vx.vault.env(),
    )
    assert "secret/data/my-app: version 1" in push.stdout

    vx.repo.export()
    sha = vx.ws.commit("production against this run's Vault")
    vx.ws.push()
    started = time.monotonic()
    vx.flux.start()
    vx.flux.bootstrap(vx.server.url, vx.repo.k8s_dir / "sync")
    want = revision(sha)
    infra = vx.flux.wait_ready(f"{STACK}-infrastructure", want, timeout=300)
    infra_ready = time.monotonic()

    seen: dict[str, float] = {}

    def apps_ready(k: dict) -> bool:
        now = time.monotonic()
        if "secret" not in seen and secret_values(vx.cluster, "my-app", "my-app-secrets") == values:
            seen["secret"] = now
        c = condition(k)
        ok = bool(
            c
            and c["status"] == "True"
            and c.get("observedGeneration") == k["metadata"]["generation"]
            and k["status"].get("lastAppliedRevision") == want
        )
        if ok:
            seen.setdefault("ready", now)
        return ok

    apps = vx.flux.wait_condition(f"{STACK}-apps", apps_ready, f"Ready at {want}", timeout=300)
    assert "secret" in seen and seen["secret"] <= seen["ready"], "apps Ready before the operator's Secret"

    for layer, ks in (("infrastructure", infra), ("apps", apps)):
        objects = build(vx.cluster, vx.repo.k8s_dir / layer)
        inventory = {e["id"] for e in ks["status"]["inventory"]["entries"]}
        assert len(inventory) == len(objects), (layer, sorted(inventory))
        assert condition(ks)["reason"] == "ReconciliationSucceeded", condition(ks)

    assert secret_values(vx.cluster, "my-app", "my-app-secrets") == values
    vss = vx.cluster.get("/apis/secrets.hashicorp.com/v1beta1/namespaces/my-app/vaultstaticsecrets/my-app")
    synced = condition(vss, "SecretSynced")
    assert synced is not None and synced["status"] == "True", vss.get("status")
    labels = vss["metadata"]["labels"]
    assert labels["kustomize.toolkit.fluxcd.io/name"] == f"{STACK}-apps"
    dep = vx.cluster.get("/apis/apps/v1/namespaces/my-app/deployments/my-app")
    assert condition(dep, "Available")["status"] == "True"
    pvc = vx.cluster.get("/api/v1/namespaces/vault/persistentvolumeclaims/vault-snapshots")
    assert pvc is not None
    src = vx.flux.gitrepository()
    assert src["status"]["artifact"]["revision"] == want
    assert not vx.pods.errors and not vx.helm.errors, (vx.pods.errors, vx.helm.errors)
    wait_for("the operator alive", lambda: vx.operator.proc is not None and vx.operator.proc.alive(), 5)
    print(
        f"\nfigure: flux bootstrap (production, Vault): infrastructure Ready {infra_ready - started:.1f} s after "
        f"the controllers started, apps Ready {seen['ready'] - started:.1f} s, the operator's Secret at "
        f"{seen['secret'] - started:.1f} s; the snapshot PVC {pvc['status'].get('phase')}"
    )


def _flux(*args: str, cluster: Cluster, cwd: Path) -> subprocess.CompletedProcess:
    cli = binaries()["flux"]
    return subprocess.run(
        [str(cli), f"--kubeconfig={cluster.kubeconfig}", "--namespace=flux-system", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _make_flux_diff(cluster: Cluster, cwd: Path) -> subprocess.CompletedProcess:
    """`make flux-diff STACK=production` with the built CLI, against this cluster."""
    return subprocess.run(
        ["make", "-s", "flux-diff", f"STACK={STACK}", f"FLUX={binaries()['flux']}"],
        cwd=cwd,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_flux_build_and_diff_preview_a_changed_app(vx: VaultFluxEnv):
    """The Flux-side preview (`make flux-diff STACK=production`: `flux diff kustomization
    production-<layer> --path k8s/production/<layer> --kustomization-file k8s/production/sync/...`
    for both layers) against the real API server (server-side dry-run, Flux's own labels and field manager) finds nothing;
    after the app's replicas are changed in the stack and exported (not committed), `flux build
    kustomization --dry-run` prints the new object and `flux diff` names the drifted Deployment and
    the field, and the target fails; nothing on the server changed."""
    if missing_binaries(("flux",)):
        pytest.skip("the flux CLI is not built: run `make e2e-tools`")
    apps = f"{STACK}-apps"
    args = (
        "--path",
        f"k8s/{STACK}/apps",
        "--kustomization-file",
        f"k8s/{STACK}/sync/kustomization-{apps}.yaml",
    )
    same = _make_flux_diff(vx.cluster, vx.ws.root)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "drifted" not in same.stdout, same.stdout

    path = vx.ws.root / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    live = vx.cluster.get("/apis/apps/v1/namespaces/my-app/deployments/my-app")
    before = live["spec"]["replicas"]
    doc["config"]["k8s-secrets:apps"][0]["deployments"][0]["replicas"] = before + 2
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    vx.repo.export()

    built = _flux("build", "kustomization", apps, *args, "--dry-run", cluster=vx.cluster, cwd=vx.ws.root)
    assert built.returncode == 0, built.stderr
    deployment = next(
        d
        for d in yaml.safe_load_all(built.stdout)
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "my-app"
    )
    assert deployment["spec"]["replicas"] == before + 2
    assert deployment["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == apps

    diff = _make_flux_diff(vx.cluster, vx.ws.root)
    # flux exits 1 ("identified at least one change"), so the recipe fails and make exits 2
    assert diff.returncode == 2 and "identified at least one change" in diff.stderr, diff.stdout + diff.stderr
    assert diff.stdout.count("drifted") == 1, diff.stdout
    assert "Deployment/my-app/my-app drifted" in diff.stdout, diff.stdout
    assert "spec.replicas" in diff.stdout and f"+ {before + 2}" in diff.stdout.replace("  ", " "), diff.stdout
    assert vx.cluster.get("/apis/apps/v1/namespaces/my-app/deployments/my-app")["spec"]["replicas"] == before
    print(f"\nfigure: flux diff of a changed app:\n{diff.stdout.strip()}")

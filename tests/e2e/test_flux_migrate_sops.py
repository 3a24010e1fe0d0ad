"""Issue 20 §3: `ksecrets migrate --stack staging --to sops` (sealed-secrets -> sops) through Git,
each phase exported, committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(harness/flux.py; kustomize-controller decrypts the SOPS Secret with the age key Secret of
`decryption.secretRef`), git's http-backend (harness/gitserver.py), the sealed-secrets controller
v0.36.6 with a key from `ksecrets keygen`, and `ksecrets seal`, `migrate --prepare`, `migrate
--backup --age-recipient`, `migrate --finish`, `export` on a commit of the project's tree.

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn);
the scheduler and kubelet (kubelet.PodStandIn); what `flux bootstrap` writes and the flux-system
Kustomization that keeps `sync/` applied (flux.FluxControllers.bootstrap, applied again at each
commit: the switch adds `decryption` to the apps Kustomization in `sync/`). The age key Secret is
created by hand, as README says.

The watcher of test_flux_migrate samples the app's Secret and Deployment every 0.2 s.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest

from ksecrets.sealing import sops
from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness.flux import FluxControllers, cluster_crds, condition, revision
from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.sealed_secrets import StackRepo, keygen, kubectl_secret_data, ksecrets_run
from tests.e2e.test_flux_migrate import APP_NS, DEPLOYMENT, SECRET, STACK, Watcher

NEEDED = ("source-controller", "kustomize-controller", "sealed-secrets-controller")


@pytest.fixture(scope="module")
def sx(cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir: Path):
    missing = missing_binaries(NEEDED)
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = binaries()
    workdir = e2e_dir / "flux-migrate-sops"
    cluster = cluster_factory("flux-migrate-sops", crds=cluster_crds())
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()
    template = StackRepo.copy(ROOT, workdir / "template", STACK, sealed_run_env)
    backup = workdir / "keys" / "keygen.ksbackup"
    backup.parent.mkdir(parents=True, exist_ok=True)
    sealed_controller_factory(cluster, workdir / "sealed-controller", keygen(template, backup), STACK)
    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    shutil.copy2(template.cert_path, ws.root / "certs" / f"{STACK}.pem")
    repo = StackRepo(ws.root, STACK, dict(sealed_run_env))
    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = dict(cluster=cluster, flux=flux, server=server, ws=ws, repo=repo, backup=backup, workdir=workdir, pods=pods)
    try:
        yield env
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        server.stop()


def test_migrate_sealed_to_sops_through_git(sx):
    cluster, flux, ws, repo, workdir = sx["cluster"], sx["flux"], sx["ws"], sx["repo"], sx["workdir"]

    def publish(message: str) -> str:
        repo.export()
        sha = ws.commit(message)
        ws.push()
        flux.bootstrap(sx["server"].url, repo.k8s_dir / "sync")  # the flux-system Kustomization's part
        flux.request_reconcile("GitRepository", "flux-system")
        for layer in ("infrastructure", "apps"):
            flux.request_reconcile("Kustomization", f"{STACK}-{layer}")
        return sha

    def converge(sha: str) -> None:
        for layer in ("infrastructure", "apps"):
            flux.wait_ready(f"{STACK}-{layer}", revision(sha), timeout=300)

    env_file = workdir / "env" / "staging.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        "DATABASE_URL=postgres://app:s3cr=t with spaces@db:5432/app?x=1\n"
        "API_KEY=ak-staging-ünïcode-0123\nEMPTY=\nMULTI_EQUALS=a=b=c\n"
    )
    env_file.chmod(0o600)
    repo.seal(SECRET, env_file, namespace=APP_NS, scope="strict")
    original = {
        k: base64.b64decode(v).decode() for k, v in kubectl_secret_data(cluster, SECRET, APP_NS, env_file).items()
    }
    repo.export()
    sha = ws.commit("staging sealed for this cluster's key")
    ws.push()
    flux.start()
    flux.bootstrap(sx["server"].url, repo.k8s_dir / "sync")
    converge(sha)
    cluster.wait(
        "the sealed Secret",
        lambda: (s := Watcher(cluster).sample()).values == original and s.owners == ("SealedSecret",),
        120,
    )
    watcher = Watcher(cluster).start()
    try:
        time.sleep(1.0)
        base = watcher.samples[-1]

        # Phase 1: --prepare (release), committed and reconciled.
        out = ksecrets_run("migrate", "--stack", STACK, "--to", "sops", "--prepare", cwd=ws.root, env=repo.env)
        assert "vaultMigration: release" in out.stdout, out.stdout
        sha1 = publish("staging: SealedSecrets release their Secrets (migrate --to sops --prepare)")
        converge(sha1)
        cluster.wait(
            "the SealedSecret released its Secret",
            lambda: watcher.samples[-1].owners == () and watcher.samples[-1].values == original,
            120,
        )
        assert watcher.samples[-1].generation == base.generation

        # The age key reaches the cluster as the Secret `decryption.secretRef` names.
        age = sops.generate_age_key()
        key_file = workdir / "keys" / "staging.agekey"
        key_file.write_text(age.key_file())
        key_file.chmod(0o600)
        manifest = cluster.kubectl(
            "-n", "flux-system", "create", "secret", "generic", "sops-age",
            f"--from-file=age.agekey={key_file}", "--dry-run=client", "-o", "yaml",
        ).stdout  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=manifest)

        # Phase 2: the switch: values unsealed with the keygen backup, SOPS files written, backend sops.
        out = ksecrets_run(
            "migrate", "--stack", STACK, "--to", "sops", "--backup", str(sx["backup"]),
            "--age-recipient", age.recipient, cwd=ws.root, env=repo.env,
        )  # fmt: skip
        assert "values moved from sealed-secrets to sops; backend switched to sops" in out.stdout, out.stdout
        moved = int(out.stdout.split(" values moved")[0].split()[-1])
        written = ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml"
        got = sops.secret_values(written.read_text(), [age.identity], "x")
        assert {k: v.decode() for k, v in got.items()} == original
        switched_at = time.monotonic()
        sha2 = publish("staging: sops backend (migrate --to sops)")
        converge(sha2)

        def flux_owns() -> bool:
            sec = cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}") or {}
            labels = (sec.get("metadata") or {}).get("labels") or {}
            return labels.get("kustomize.toolkit.fluxcd.io/name") == f"{STACK}-apps"

        cluster.wait("Flux applied the decrypted Secret", flux_owns, 120)
        cluster.wait(
            "the SealedSecret pruned",
            lambda: cluster.get(f"/apis/bitnami.com/v1alpha1/namespaces/{APP_NS}/sealedsecrets/{SECRET}") is None,
            120,
        )
        time.sleep(2.0)
        finish_at = time.monotonic()
        # Phase 3: --finish: the pod templates drop the sealed checksum (one rollout, same Secret).
        out = ksecrets_run("migrate", "--stack", STACK, "--to", "sops", "--finish", cwd=ws.root, env=repo.env)
        assert "vaultMigration removed" in out.stdout, out.stdout
        sha3 = publish("staging: migration done (migrate --to sops --finish)")
        converge(sha3)
        time.sleep(2.0)
        dep = cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}")
        cluster.wait(
            "the Deployment Available",
            lambda: (
                (
                    condition(cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}"), "Available")
                    or {}
                ).get("status")
                == "True"
            ),
            120,
        )
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    missing = sum(1 for s in samples if s.values is None)
    other = sum(1 for s in samples if s.values is not None and s.values != original)
    assert missing == 0 and other == 0, (missing, other)
    final = samples[-1]
    assert final.values == original and final.owners == ()
    apps = flux.kustomization(f"{STACK}-apps")
    kinds = {e["id"].rsplit("_", 1)[-1] for e in apps["status"]["inventory"]["entries"]}
    assert "SealedSecret" not in kinds and "Secret" in kinds, kinds
    assert apps["spec"]["decryption"]["secretRef"]["name"] == "sops-age"
    # Nothing rolled before --finish: the prepare and the switch changed no pod template.
    before = [s for s in samples if s.at < finish_at]
    assert before and all(s.generation == base.generation and s.template == base.template for s in before)
    gens = sorted({s.generation for s in samples if s.generation is not None})
    print(
        f"\nfigure: flux migrate sealed->sops: {moved} values moved; {len(samples)} samples over "
        f"{samples[-1].at - samples[0].at:.0f} s (switch committed {samples[-1].at - switched_at:.0f} s before the "
        f"end), the Secret never missing nor other-valued; Deployment generations {gens} "
        f"(final {dep['metadata']['generation'] if dep else None})"
    )

"""Issue 20 §3: `ksecrets migrate --stack staging --to sops` (sealed-secrets -> sops) through Git,
each phase exported, committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(harness/flux.py; kustomize-controller decrypts the SOPS Secret with the age key Secret of
`decryption.secretRef`), git's http-backend (harness/gitserver.py), the sealed-secrets controller
v0.36.6 with a key from `ksecrets keygen`, and `ksecrets seal`, `migrate --prepare`, `migrate
--backup --age-recipient`, `migrate --finish`, `export` on a commit of the project's tree. The
setup is harness/migrate.py's (shared by test_flux_migrate*.py).

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn);
the scheduler and kubelet (kubelet.PodStandIn); what `flux bootstrap` writes and the flux-system
Kustomization that keeps `sync/` applied (flux.FluxControllers.bootstrap, applied again at each
commit: the switch adds `decryption` to the apps Kustomization in `sync/`). The age key Secret is
created by hand, as README says.

The watcher of harness/migrate.py samples the app's Secret and Deployment every 0.2 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ksecrets.sealing import sops
from tests.e2e.harness.migrate import APP_NS, DEPLOYMENT, SECRET, MigrationRig, Watcher, migration_rig

STACK = "staging"


@pytest.fixture(scope="module")
def sx(cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir: Path):
    with migration_rig(
        cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir / "flux-migrate-sops", "flux-migrate-sops",
        stack=STACK, sealed=True,
    ) as rig:  # fmt: skip
        yield rig


def test_migrate_sealed_to_sops_through_git(sx: MigrationRig):
    cluster = sx.cluster
    env_file = sx.env_file()
    sx.repo.seal(SECRET, env_file, namespace=APP_NS, scope="strict")
    original = sx.expected(env_file)
    sx.bootstrap("staging sealed for this cluster's key")
    cluster.wait(
        "the sealed Secret",
        lambda: (s := Watcher(cluster).sample()).values == original and s.owners == ("SealedSecret",),
        120,
    )
    watcher = Watcher(cluster).start()
    try:
        time.sleep(1.0)
        base = watcher.last

        # Phase 1: --prepare (release), committed and reconciled.
        out = sx.ks("migrate", "--stack", STACK, "--to", "sops", "--prepare")
        assert "vaultMigration: release" in out, out
        sx.publish("staging: SealedSecrets release their Secrets (migrate --to sops --prepare)")
        cluster.wait(
            "the SealedSecret released its Secret",
            lambda: watcher.last.owners == () and watcher.last.values == original,
            120,
        )
        assert watcher.last.generation == base.generation

        # The age key reaches the cluster as the Secret `decryption.secretRef` names.
        age = sx.age_key()

        # Phase 2: the switch: values unsealed with the keygen backup, SOPS files written, backend sops.
        out = sx.ks(
            "migrate", "--stack", STACK, "--to", "sops", "--backup", str(sx.backup), "--age-recipient", age.recipient
        )
        assert "values moved from sealed-secrets to sops; backend switched to sops" in out, out
        moved = int(out.split(" values moved")[0].split()[-1])
        written = sx.ws.root / "secrets" / STACK / f"{SECRET}.sops.yaml"
        got = sops.secret_values(written.read_text(), [age.identity], "x")
        assert {k: v.decode() for k, v in got.items()} == original
        switched_at = time.monotonic()
        sx.publish("staging: sops backend (migrate --to sops)")

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
        out = sx.ks("migrate", "--stack", STACK, "--to", "sops", "--finish")
        assert "vaultMigration removed" in out, out
        sx.publish("staging: migration done (migrate --to sops --finish)")
        time.sleep(2.0)
        dep = cluster.get(f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{DEPLOYMENT}")
        sx.deployment_available()
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    missing, other = watcher.absent(), watcher.other(original)
    assert missing == 0 and other == 0, (missing, other)
    final = samples[-1]
    assert final.values == original and final.owners == ()
    kinds = sx.inventory_kinds()
    assert "SealedSecret" not in kinds and "Secret" in kinds, kinds
    assert sx.flux.kustomization(f"{STACK}-apps")["spec"]["decryption"]["secretRef"]["name"] == "sops-age"
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

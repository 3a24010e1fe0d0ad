"""Issue 20 §3: `ksecrets migrate --stack dev --to vault` from a sops stack, through Git, each phase
exported, committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager, source-controller and kustomize-controller v1.9.6
(kustomize-controller decrypts the SOPS Secret with the age key Secret of `decryption.secretRef`),
git's http-backend, Vault (dev server, TLS) and the Vault Secrets Operator (harness/vso.py), and
`ksecrets sops set`, `migrate --prepare`, `vault bootstrap`, `migrate --age-key-file`, `migrate
--finish` and `export` on a copy of the project's tree with a sops stack `dev` added. The setup is
harness/migrate.py's (shared by test_flux_migrate*.py).

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
Vault and the operator run as local processes); the scheduler and kubelet (kubelet.PodStandIn);
what `flux bootstrap` writes and the flux-system Kustomization that keeps `sync/` applied
(flux.FluxControllers.bootstrap, applied again at each commit). The stack's `vault.address` is set
to the local Vault once the switch added the section (harness/vault_stack.point_at).

The watcher of harness/migrate.py samples the app's Secret and Deployment every 0.2 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ksecrets.sealing import sops
from tests.e2e.harness.migrate import APP_NS, SECRET, MigrationRig, Watcher, dev_stack, migration_rig

STACK = "dev"
AGE = sops.generate_age_key()


@pytest.fixture(scope="module")
def vx(cluster_factory, sealed_controller_factory, e2e_dir: Path):
    with migration_rig(
        cluster_factory, sealed_controller_factory, {}, e2e_dir / "flux-migrate-sops-vault", "flux-sops-vault",
        stack=STACK, stack_file=dev_stack("sops", recipient=AGE.recipient), vault=True,
    ) as rig:  # fmt: skip
        yield rig


def test_migrate_sops_to_vault_through_git(vx: MigrationRig):
    cluster = vx.cluster
    vx.age_key(AGE)
    env_file = vx.env_file()
    vx.ks("sops", "set", "--stack", STACK, "--name", SECRET, f"--from-env-file={env_file}")
    original = vx.expected(env_file)
    vx.bootstrap("dev: sops Secret")
    cluster.wait("the SOPS Secret", lambda: Watcher(cluster).sample().values == original, 120)
    watcher = Watcher(cluster).start()
    try:
        time.sleep(1.0)
        # Phase 1: --prepare: the SOPS file says `prune: disabled` (re-encrypted, same values).
        out = vx.ks("migrate", "--stack", STACK, "--to", "vault", "--prepare")
        assert "kustomize.toolkit.fluxcd.io/prune: disabled" in out, out
        vx.publish("dev: SOPS Secret not pruned (migrate --to vault --prepare)")
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
        out = vx.ks("migrate", "--stack", STACK, "--to", "vault")
        assert "values moved from sops to vault; backend switched to vault" in out, out
        moved = int(out.split(" values moved")[0].split()[-1])
        vx.point_vault()
        vx.bootstrap_vault()
        assert vx.kv() == original
        switched_at = time.monotonic()
        vx.publish("dev: vault backend (migrate --to vault)")
        cluster.wait(
            "the operator owns the Secret",
            lambda: "VaultStaticSecret" in (s := watcher.last).owners and s.values == original,
            180,
        )

        # Phase 3: --finish.
        out = vx.ks("migrate", "--stack", STACK, "--to", "vault", "--finish")
        assert "vaultMigration removed" in out
        vx.publish("dev: migration done (migrate --finish)")
        time.sleep(2.0)
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    missing, other = watcher.absent(), watcher.other(original)
    assert missing == 0 and other == 0, (missing, other, len(samples))
    final = samples[-1]
    assert final.values == original and "VaultStaticSecret" in final.owners
    first_owned = next(s.at for s in samples if "VaultStaticSecret" in s.owners)
    kinds = vx.inventory_kinds()
    assert "VaultStaticSecret" in kinds and "Secret" not in kinds, kinds
    print(
        f"\nfigure: flux migrate sops->vault: {moved} values moved; {len(samples)} samples over "
        f"{samples[-1].at - samples[0].at:.0f} s, the Secret never missing nor other-valued; the operator owned it "
        f"{first_owned - switched_at:.1f} s after the switch was committed"
    )

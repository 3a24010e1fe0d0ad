"""Issue 19, item 6: `ksecrets migrate --stack staging --to vault` through Git, each phase rendered,
committed, pushed and reconciled by the real Flux.

Real: kube-apiserver + kube-controller-manager (Deployments → ReplicaSets), source-controller and
kustomize-controller v1.9.6 (harness/flux.py) cloning from git's own http-backend
(harness/gitserver.py), the sealed-secrets controller v0.36.6 with a key from `ksecrets keygen`,
Vault (dev server, TLS), the Vault Secrets Operator (harness/vso.py), and `ksecrets seal`,
`migrate --prepare`, `vault bootstrap`, `migrate --backup`, `migrate --finish` and `export` on a
commit of the project's tree. The setup is harness/migrate.py's (shared by test_flux_migrate*.py).

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
the Vault and operator HelmReleases the install phase adds are marked Ready, Vault and the
operator run as local processes); the scheduler and kubelet (kubelet.PodStandIn); what `flux
bootstrap` writes and the flux-system Kustomization that keeps `sync/` applied
(flux.FluxControllers.bootstrap, applied again at each commit). The stack's one change is
``vault.address``, set once `--prepare` has added the ``vault:`` section (harness/vault_stack.py).

A watcher samples, every 0.2 s through the whole run, each Deployment's generation and pod
template and the app's Secret (its values and who owns it). Generation is monotonic, so a sampled
generation equal to the first one proves no template change happened before that sample.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness.migrate import APP_NS, SECRET, MigrationRig, Watcher, migration_rig

STACK = "staging"


@pytest.fixture(scope="module")
def mx(cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir: Path):
    with migration_rig(
        cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir / "flux-migrate", "flux-migrate",
        stack=STACK, sealed=True, vault=True,
    ) as rig:  # fmt: skip
        yield rig


def test_migrate_to_vault_through_git(mx: MigrationRig):
    """Issue 19, test 6. Sealed values reach the cluster through Flux; then each phase of `ksecrets
    migrate` is committed and reconciled: `--prepare` (Vault and the operator installed, the
    SealedSecrets release their Secrets), the switch (values pushed from the sealed entries,
    VaultStaticSecrets take the Secrets over, Flux prunes the SealedSecrets), `--finish`. Through
    all of it the Secret is never missing and never holds another value, no Deployment's pod
    template changes before the operator has written (owns) the Secret, and the final Secret holds
    every original value."""
    # Phase 0: the sealed stack, sealed for this cluster's key, bootstrapped through Flux.
    env_file = mx.env_file()
    mx.repo.seal(SECRET, env_file, namespace=APP_NS, scope="strict")
    original = mx.expected(env_file)
    mx.bootstrap("staging sealed for this cluster's key")
    mx.cluster.wait(
        "the sealed Secret",
        lambda: (s := Watcher(mx.cluster).sample()).values == original and s.owners == ("SealedSecret",),
        120,
    )
    mx.deployment_available()
    watcher = Watcher(mx.cluster).start()
    try:
        time.sleep(1.0)
        base = watcher.last
        assert base.generation is not None and base.values == original

        # Phase 1: --prepare, committed and reconciled.
        out = mx.ks("migrate", "--stack", STACK, "--to", "vault", "--prepare")
        assert "vaultMigration: install" in out
        mx.point_vault()
        mx.publish("staging: install Vault (migrate --prepare)")

        def released() -> bool:
            s = watcher.last
            return s.owners == () and s.values == original

        mx.cluster.wait("the SealedSecret released its Secret (no ownerReference)", released, 120)
        after_prepare = watcher.last
        assert after_prepare.generation == base.generation and after_prepare.template == base.template

        # Vault up: bootstrap as README says (after the install commit).
        mx.bootstrap_vault()

        # Phase 2: the switch, with the keygen backup as the recovery key.
        out = mx.ks("migrate", "--stack", STACK, "--to", "vault", "--backup", str(mx.backup))
        assert "backend switched to vault" in out, out
        assert mx.kv("my-app") == original
        switched_at = time.monotonic()
        mx.publish("staging: vault backend (migrate --to vault)")

        def operator_owns() -> bool:
            s = watcher.last
            return "VaultStaticSecret" in s.owners and s.values == original

        mx.cluster.wait("the operator owns the Secret", operator_owns, 180)
        assert mx.cluster.get(f"/apis/bitnami.com/v1alpha1/namespaces/{APP_NS}/sealedsecrets/{SECRET}") is None

        # Phase 3: --finish.
        out = mx.ks("migrate", "--stack", STACK, "--to", "vault", "--finish")
        assert "vaultMigration removed" in out
        mx.publish("staging: migration done (migrate --finish)")
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
    kinds = mx.inventory_kinds()
    assert "VaultStaticSecret" in kinds and "SealedSecret" not in kinds, kinds
    print(
        f"\nfigure: flux migrate: {len(samples)} samples over {samples[-1].at - samples[0].at:.0f} s; the operator "
        f"owned the Secret {first_owned - switched_at:.1f} s after the switch was committed; Deployment generations "
        f"seen {changes} (base {base.generation})"
    )

"""Issue 20 §3: `ksecrets migrate --stack dev --to B` for the pairs no other test runs through Git:
sops -> sealed-secrets, vault -> sealed-secrets and vault -> sops. Each phase (`--prepare`, the
switch, `--finish` where the switch set a phase) is exported, committed, pushed and reconciled to
Ready by the real Flux; the three pairs the other tests run are test_flux_migrate.py
(sealed-secrets -> vault), test_flux_migrate_sops.py (sealed-secrets -> sops) and
test_flux_migrate_sops_vault.py (sops -> vault).

Real: kube-apiserver + kube-controller-manager (the garbage collector that deletes a Secret whose
owner is deleted, and orphans it on `--cascade=orphan`), source-controller and kustomize-controller
v1.9.6 (applying, pruning, SOPS decryption with the age key Secret of `decryption.secretRef`), git's
http-backend, the sealed-secrets controller v0.36.6 with a key from `ksecrets keygen`, Vault (dev
server, TLS) and the Vault Secrets Operator, and every `ksecrets` command: `sops set`, `vault
bootstrap`, `vault push`, `migrate --prepare`, `migrate`, `migrate --finish`, `export`, `scan`. The
setup is harness/migrate.py's, one cluster per pair (the pairs' stacks would share the
infrastructure layer's objects, Vault's HelmRelease and VaultConnection among them, so one cluster
for all is not safe).

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn:
Vault, the operator and the sealed-secrets controller run as local processes, and pruning their
HelmReleases at `--finish` does not stop them); the scheduler and kubelet (kubelet.PodStandIn); what
`flux bootstrap` writes and the flux-system Kustomization that keeps `sync/` applied
(flux.FluxControllers.bootstrap, applied again at each commit). The age key Secret is created by
hand, as README says; `vault.address` points at the local Vault.

Asserted per pair, from a watcher sampling the Secret every 0.2 s: the Secret never holds anything
but the source's values, byte for byte (what `kubectl create secret --from-env-file` makes of the
env file: an empty value, `=`, spaces, UTF-8), and is never absent; it holds them at the end, owned
by the new mechanism (the SealedSecret; Flux's apps Kustomization for sops); the old objects are gone
from the cluster and Flux's inventory; `ksecrets scan --env-file` finds no value in the committed
tree. A sops source's `--prepare`: `prune: disabled` and the controller's `managed` annotation. A
vault source's `--prepare` (`release`): the VaultStaticSecret keeps `prune: disabled` (its Secret
carries its ownerReference, and Flux prunes in the background) and has the operator write `managed`;
the switch (`uninstall`) keeps Vault and the operator installed while Flux prunes the VaultAuth and
the VaultConnection; the VaultStaticSecret is deleted as `migrate` says (`--cascade=orphan`, the
garbage collector removes its ownerReference from the Secret); `--finish` drops the install.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from ksecrets.sealing import sops
from tests.e2e.harness.migrate import APP_NS, DEPLOYMENT, SECRET, MigrationRig, Watcher, dev_stack, migration_rig
from tests.e2e.harness.sealed_secrets import ksecrets_run

STACK = "dev"
PAIRS = [("sops", "sealed-secrets"), ("vault", "sealed-secrets"), ("vault", "sops")]
AGE = sops.generate_age_key()  # the sops source's key (a sops target gets a key of its own)
VSS_API = f"/apis/secrets.hashicorp.com/v1beta1/namespaces/{APP_NS}/vaultstaticsecrets"
SEALED_API = f"/apis/bitnami.com/v1alpha1/namespaces/{APP_NS}/sealedsecrets"
VSO_NS = "vault-secrets-operator-system"
VSO_OBJECTS = (
    f"/apis/secrets.hashicorp.com/v1beta1/namespaces/{APP_NS}/vaultauths",
    f"/apis/secrets.hashicorp.com/v1beta1/namespaces/{VSO_NS}/vaultconnections",
)
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report_figures():
    yield
    if FIGURES:
        print("\nmigrate pairs through Flux:\n  " + "\n  ".join(FIGURES))


@pytest.fixture(params=PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def pair(request, cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir: Path):
    source, target = request.param
    name = f"mig-{source}-{target.split('-')[0]}"
    started = time.monotonic()
    with migration_rig(
        cluster_factory, sealed_controller_factory, sealed_run_env, e2e_dir / name, name, stack=STACK,
        stack_file=dev_stack(source, recipient=AGE.recipient, vault_address="https://127.0.0.1:8200"),
        sealed="sealed-secrets" in (source, target), vault="vault" in (source, target),
    ) as rig:  # fmt: skip
        yield source, target, rig, started


def secret(rig: MigrationRig) -> dict:
    return rig.cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}") or {}


def annotations(rig: MigrationRig) -> dict[str, str]:
    return (secret(rig).get("metadata") or {}).get("annotations") or {}


def data_keys(rig: MigrationRig) -> set[str]:
    return set(secret(rig).get("data") or {})


def stack_kubeconfig(rig: MigrationRig) -> Path:
    """The cluster's admin kubeconfig with its context named as the stack's `kubernetes:context`."""
    doc = yaml.safe_load(rig.cluster.kubeconfig.read_text())
    doc["contexts"][0]["name"] = doc["current-context"] = STACK
    path = rig.workdir / "stack.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def applied_by_flux(rig: MigrationRig) -> bool:
    labels = (secret(rig).get("metadata") or {}).get("labels") or {}
    return labels.get("kustomize.toolkit.fluxcd.io/name") == f"{STACK}-apps"


def helm_releases(rig: MigrationRig) -> set[str]:
    """The HelmReleases in Flux's inventory of the infrastructure layer (ids: ns_name_group_kind)."""
    k = rig.flux.kustomization(f"{STACK}-infrastructure") or {}
    ids = [e["id"].split("_") for e in k["status"]["inventory"]["entries"]]
    return {i[1] for i in ids if i[-1] == "HelmRelease"}


def test_migrate_pair_through_git(pair):
    source, target, rig, started = pair
    cluster = rig.cluster
    timings: dict[str, float] = {"setup": time.monotonic() - started}

    # Phase 0: the source stack with its values, bootstrapped through Flux.
    env_file = rig.env_file()
    if source == "sops":
        rig.age_key(AGE)
        rig.ks("sops", "set", "--stack", STACK, "--name", SECRET, f"--from-env-file={env_file}")
    else:
        rig.point_vault()
        rig.bootstrap_vault()
        out = rig.ks("vault", "push", "--stack", STACK, "--path", DEPLOYMENT, f"--from-env-file={env_file}")
        assert f"secret/data/{DEPLOYMENT}: version 1" in out, out
    original = rig.expected(env_file)
    t = time.monotonic()
    rig.bootstrap(f"dev on {source}")
    old_owner = "VaultStaticSecret" if source == "vault" else None
    cluster.wait(
        f"the {source} Secret",
        lambda: (s := Watcher(cluster).sample()).values == original and (old_owner is None or old_owner in s.owners),
        180,
    )
    timings["bootstrap"] = time.monotonic() - t
    # `migrate --finish` reaches the cluster as the user does: kubectl, the stack's context `dev`.
    kube_env_file = stack_kubeconfig(rig)
    kube_env = {
        **rig.env,
        "KUBECONFIG": str(kube_env_file),
        "PATH": f"{cluster.bins['kubectl'].parent}{os.pathsep}{rig.env.get('PATH', os.environ['PATH'])}",
    }
    watcher = Watcher(cluster).start()
    phases: list[str] = []
    try:
        time.sleep(1.0)
        base = watcher.last
        assert base.values == original

        # Phase 1: --prepare.
        t = time.monotonic()
        res = ksecrets_run(
            "migrate", "--stack", STACK, "--to", target, "--prepare", cwd=rig.ws.root, env=rig.env, expect_ok=False
        )
        assert res.returncode == 0, res.stderr
        if source == "sops":
            wanted = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
            if target == "sealed-secrets":
                wanted["sealedsecrets.bitnami.com/managed"] = "true"
            assert all(f"{k}: {v}" in res.stdout for k, v in wanted.items()), res.stdout
        else:  # the operator writes the controller's annotation; Flux will leave the VaultStaticSecret
            wanted = {"sealedsecrets.bitnami.com/managed": "true"}
            assert "vaultMigration: release" in res.stdout, res.stdout
        rig.publish(f"dev: the Secret kept and handed over (migrate --to {target} --prepare)")
        cluster.wait(
            "the Secret carries the handover annotations",
            lambda: wanted.items() <= annotations(rig).items(),
            120,
        )
        if source == "vault":  # and the operator dropped its `_raw` (excludeRaw) before the handover
            cluster.wait("the Secret without _raw", lambda: data_keys(rig) == set(original), 120)
        if source == "vault":
            vss = cluster.get(f"{VSS_API}/{DEPLOYMENT}") or {}
            assert vss["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled", vss
        phases.append("prepare")
        timings["prepare"] = time.monotonic() - t

        # Phase 2: the switch.
        t = time.monotonic()
        args = ["migrate", "--stack", STACK, "--to", target]
        if target == "sops":
            new_age = rig.age_key()  # the sops target's own key, in the cluster before the switch
            args += ["--age-recipient", new_age.recipient]
        switched = ksecrets_run(*args, cwd=rig.ws.root, env=rig.env)
        out, switch_err = switched.stdout, switched.stderr
        assert f"values moved from {source} to {target}; backend switched to {target}" in out, out
        moved = int(out.split(" values moved")[0].split()[-1])
        assert moved == len(original)
        switched_at = time.monotonic()
        rig.publish(f"dev: {target} backend (migrate --to {target})")
        if target == "sealed-secrets":

            def new_owner() -> bool:
                return watcher.last.owners == ("SealedSecret",) and watcher.last.values == original

        else:

            def new_owner() -> bool:
                return applied_by_flux(rig) and watcher.last.values == original

        cluster.wait(f"the Secret written by {target}", new_owner, 60)
        owned_at = time.monotonic()
        kinds = rig.inventory_kinds()
        if source == "vault":
            # `uninstall`: Flux pruned the VaultAuth and the VaultConnection (the operator, still
            # installed, removed its finalizers) and left the VaultStaticSecret (prune: disabled).
            for api in VSO_OBJECTS:
                cluster.wait(
                    f"{api.rsplit('/', 1)[-1]} pruned", lambda api=api: not (cluster.get(api) or {}).get("items"), 120
                )
            assert not {"VaultStaticSecret", "VaultAuth", "VaultConnection"} & kinds, kinds
            assert cluster.get(f"{VSS_API}/{DEPLOYMENT}") is not None
            assert {"vault", "vault-secrets-operator"} <= helm_releases(rig), helm_releases(rig)
            # `--finish` now would uninstall the operator, whose CRD's removal deletes the
            # VaultStaticSecret and the garbage collector the Secret: it asks the cluster (the real
            # kubectl, the stack's context `dev`) and refuses, naming it and the command.
            command = f"kubectl --context {STACK} delete vaultstaticsecret -n {APP_NS} {DEPLOYMENT} --cascade=orphan"
            stack_text = (rig.ws.root / f"Pulumi.{STACK}.yaml").read_bytes()
            res = ksecrets_run(
                "migrate", "--stack", STACK, "--to", target, "--finish", cwd=rig.ws.root, env=kube_env, expect_ok=False
            )
            assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res
            assert f"{APP_NS}/{DEPLOYMENT} (Secret {SECRET})" in res.stderr and command in res.stderr, res.stderr
            assert command in out or command in switch_err, (out, switch_err)  # the switch said it too
            assert (rig.ws.root / f"Pulumi.{STACK}.yaml").read_bytes() == stack_text
            phases.append("finish refused (VaultStaticSecret left)")
            # What `migrate` told the user: delete it without its Secret, before `--finish`.
            cluster.kubectl(*command.split()[1:], "--wait=true", kubeconfig=kube_env_file)
            cluster.wait("the VaultStaticSecret gone", lambda: not (cluster.get(VSS_API) or {}).get("items"), 120)
            unowned = ("SealedSecret",) if target == "sealed-secrets" else ()
            cluster.wait("the Secret without the operator's ownerReference", lambda: watcher.last.owners == unowned, 60)
            phases.append("VaultStaticSecret deleted (--cascade=orphan)")
        else:
            assert "Secret" not in kinds, kinds  # dropped from Flux's inventory, left in place (prune: disabled)
        if target == "sealed-secrets":
            assert "SealedSecret" in kinds, kinds
        else:
            assert "Secret" in kinds and "VaultStaticSecret" not in kinds, kinds
            assert rig.flux.kustomization(f"{STACK}-apps")["spec"]["decryption"]["secretRef"]["name"] == "sops-age"
        phases.append("switch")
        timings["switch"] = time.monotonic() - t

        # Phase 3: --finish, after a switch that set a phase (to sops: `handover`; away from Vault:
        # `uninstall`, whose --finish drops Vault and the operator); sops -> sealed-secrets ends at the switch.
        t = time.monotonic()
        res = ksecrets_run(
            "migrate", "--stack", STACK, "--to", target, "--finish", cwd=rig.ws.root, env=kube_env, expect_ok=False
        )
        if target == "sops" or source == "vault":
            assert res.returncode == 0 and "vaultMigration removed" in res.stdout, res
            rig.publish(f"dev: migration done (migrate --to {target} --finish)")
            phases.append("finish")
            if source == "vault":
                assert not {"vault", "vault-secrets-operator"} & helm_releases(rig), helm_releases(rig)
        else:
            assert res.returncode == 2 and "vaultMigration: is not set" in res.stderr, res
        time.sleep(2.0)
        timings["finish"] = time.monotonic() - t
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    other = watcher.other(original)
    assert other == 0, f"{other} samples held values other than the source's"
    final = samples[-1]
    assert final.values == original, "the final Secret does not hold every source value"
    # Exactly the stack's keys: no `_raw` of the operator left behind (the watcher's values skip it).
    assert data_keys(rig) == set(original), sorted(data_keys(rig))
    if target == "sealed-secrets":
        assert final.owners == ("SealedSecret",), final.owners
        assert cluster.get(f"{SEALED_API}/{SECRET}") is not None
    else:
        assert final.owners == () and applied_by_flux(rig), final.owners
    absent = [s for s in samples if s.values is None]
    assert not absent, f"the Secret was absent in {len(absent)} samples"
    gap = (absent[-1].at - absent[0].at + 0.2) if absent else 0.0
    assert all(s.at >= switched_at for s in absent), "the Secret was absent before the switch"
    assert all(s.at <= owned_at for s in absent), "the Secret was absent after the new mechanism wrote it"

    # No plaintext in what the stack commits (the stack file, its SOPS files, the exported k8s/; the
    # work tree's copy of the project's tests holds these test values on purpose): the real `ksecrets scan`.
    committed = [p for p in (f"Pulumi.{STACK}.yaml", f"secrets/{STACK}", f"k8s/{STACK}") if (rig.ws.root / p).exists()]
    scan = ksecrets_run("scan", "--env-file", str(env_file), *committed, cwd=rig.ws.root, env=rig.env, expect_ok=False)
    assert scan.returncode == 0, scan.stdout + scan.stderr

    gens = sorted({s.generation for s in samples if s.generation is not None})
    total = time.monotonic() - started
    figure = (
        f"{source} -> {target}: {moved} values moved; phases {', '.join(phases)}; {len(samples)} samples over "
        f"{samples[-1].at - samples[0].at:.0f} s, none other-valued, absent {len(absent)} ({gap:.1f} s); "
        f"Deployment generations {gens}; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {total:.0f} s"
    )
    FIGURES.append(figure)
    print("\nfigure: flux migrate " + figure)

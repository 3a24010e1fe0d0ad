"""Moving a sealed-secrets stack to Vault on a cluster that has no Vault yet (issue 11), at the
builder level: what each phase's export asks Flux to apply, through the real CLI, with Vault at
the HTTP boundary (the fake) only where a phase needs it.

What must hold, phase by phase:
- `--prepare` needs no Vault: the sealed stack installs Vault and the operator, keeps its
  SealedSecrets (with the annotations that release their Secrets from garbage collection) and
  changes no pod template;
- the switch: VaultStaticSecrets that take over the existing Secret (`overwrite`), no
  SealedSecret, and still no pod template change (nothing rolls before the operator wrote);
- `--finish`: a plain vault stack.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ksecrets.config.load import load_stack
from ksecrets.manifests.sealed_secrets import HANDOVER_ANNOTATIONS
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.sealing.keys import cert_pem, generate_key_and_cert, private_key_pem
from ksecrets.sealing.sealedsecret import unseal
from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack

from tests.vault.test_bootstrap import CA as KUBE_CA

ROOT = Path(__file__).resolve().parents[2]
DB_URL = "postgres://app:p4ss-w0rd-secret@db:5432/app"
API_KEY = "ak-live-0123456789-secret"


@pytest.fixture
def sealed_stack(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    key, cert = generate_key_and_cert(key_bits=2048)
    (root / "certs").mkdir()
    (root / "certs" / "staging.pem").write_bytes(cert_pem(cert))
    shutil.copy2(ROOT / "Pulumi.staging.yaml", root / "Pulumi.staging.yaml")
    values = {"DATABASE_URL": DB_URL.encode(), "API_KEY": API_KEY.encode()}
    seal_into_stack(root, "staging", SealRequest(name="my-app-secrets", values=values))
    keyfile = tmp_path / "key.pem"
    keyfile.write_bytes(private_key_pem(key))
    return root, keyfile, key


def _objects(root: Path) -> dict[tuple[str, str], dict]:
    cfg = load_stack("staging", root)
    return {(p.obj["kind"], p.obj["metadata"]["name"]): p.obj for p in plan_stack(cfg)}


def _template(objs) -> dict:
    return objs[("Deployment", "my-app")]["spec"]["template"]


def test_sealed_to_vault_on_a_cluster_without_vault(cli, vault, vault_env, sealed_stack):
    root, keyfile, key = sealed_stack
    before = _objects(root)
    assert ("HelmRelease", "vault") not in before

    # Phase 1: no Vault is reachable or needed (the fake has recorded nothing).
    r = cli("migrate", "--stack", "staging", "--to", "vault", "--prepare", "--root", str(root))
    assert r.code == 0, r.err
    assert vault.log == []
    install = _objects(root)
    assert {
        ("HelmRelease", "vault"),
        ("HelmRelease", "vault-secrets-operator"),
        ("Namespace", "vault"),
        ("Namespace", "vault-secrets-operator-system"),
    } <= set(install)
    sealed = install[("SealedSecret", "my-app-secrets")]
    assert sealed["spec"]["encryptedData"] == before[("SealedSecret", "my-app-secrets")]["spec"]["encryptedData"]
    annotations = sealed["spec"]["template"]["metadata"]["annotations"]
    assert {k: annotations[k] for k in HANDOVER_ANNOTATIONS} == HANDOVER_ANNOTATIONS
    # The values still decrypt (the controller keeps serving them), and no pod template changed.
    assert set(unseal(sealed, [key], "test")["data"]) == {"API_KEY", "DATABASE_URL"}
    assert _template(install) == _template(before)
    assert cli("export", "--root", str(root)).code == 0

    # Vault is installed, initialised and unsealed by the operator; bootstrap works on this stack.
    cfg = load_stack("staging", root)
    assert cfg.installs_vault and cfg.apps[0].vault.path == "my-app"
    ca = root / "kube-ca.pem"
    ca.write_text(KUBE_CA)
    r = cli(
        "vault",
        "bootstrap",
        "--stack",
        "staging",
        "--kube-host",
        "https://10.0.0.1:443",
        "--kube-ca-file",
        str(ca),
        "--root",
        str(root),
    )
    assert r.code == 0, r.err
    assert "changed: role my-app (my-app/my-app)" in r.out.splitlines()

    # Phase 2: push and switch.
    r = cli(
        "migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(keyfile), "--root", str(root)
    )
    assert r.code == 0, r.err
    assert "warning" not in r.err
    assert vault.kv_latest("secret", "my-app") == {"API_KEY": API_KEY, "DATABASE_URL": DB_URL}
    handover = _objects(root)
    assert ("SealedSecret", "my-app-secrets") not in handover
    vss = handover[("VaultStaticSecret", "my-app")]
    assert vss["spec"]["destination"]["name"] == "my-app-secrets"
    assert vss["spec"]["destination"]["overwrite"] is True and vss["spec"]["destination"]["create"] is True
    assert vss["spec"]["rolloutRestartTargets"] == [{"kind": "Deployment", "name": "my-app"}]
    # The apply that prunes the SealedSecret changes no pod template: nothing rolls before the
    # operator has written the Secret; the operator restarts the Deployment after its write.
    assert _template(handover) == _template(before)
    assert cli("export", "--root", str(root)).code == 0

    # Phase 3: the operator owns the Secret; a plain vault stack.
    r = cli("migrate", "--stack", "staging", "--to", "vault", "--finish", "--root", str(root))
    assert r.code == 0, r.err
    done = _objects(root)
    assert load_stack("staging", root).vault_migration is None
    assert "overwrite" not in done[("VaultStaticSecret", "my-app")]["spec"]["destination"]
    assert "annotations" not in _template(done)["metadata"]
    assert cli("export", "--root", str(root)).code == 0


def test_switch_without_prepare_warns(cli, vault, vault_env, sealed_stack):
    root, keyfile, _ = sealed_stack
    vault.enable_kv2()
    r = cli(
        "migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(keyfile), "--root", str(root)
    )
    assert r.code == 0, r.err
    assert r.err.startswith("warning: Pulumi.staging.yaml: the stack skipped `migrate --prepare`")


def test_phases_out_of_order_are_refused(cli, sealed_stack):
    root, _, _ = sealed_stack
    before = (root / "Pulumi.staging.yaml").read_bytes()
    r = cli("migrate", "--stack", "staging", "--to", "vault", "--finish", "--root", str(root))
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: vaultMigration: is not set; --finish follows the "
        "switch (`ksecrets migrate --to vault`), once the VaultStaticSecrets have synced\n",
    )
    f = root / "Pulumi.staging.yaml"
    f.write_text(
        f.read_text().replace(
            "k8s-secrets:backend: sealed-secrets",
            "k8s-secrets:backend: sealed-secrets\n  k8s-secrets:vaultMigration: handover",
        )
    )
    r = cli("export", "--root", str(root))
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: vaultMigration: phase handover needs backend vault or sops, not sealed-secrets\n",
    )
    f.write_bytes(before)


def test_uninstall_phase_is_a_stack_switched_away_from_vault_that_still_installs_it(cli, sealed_stack):
    """`uninstall` (written by the switch away from Vault): the stack still installs Vault and the
    operator, so it needs its vault section (without it the export refuses with one line); it drops
    the operator's objects from the apps layer; `--finish` ends it and with it the install."""
    root, _, _ = sealed_stack
    f = root / "Pulumi.staging.yaml"
    before = f.read_bytes()
    sealed = "k8s-secrets:backend: sealed-secrets"
    f.write_text(before.decode().replace(sealed, sealed + "\n  k8s-secrets:vaultMigration: uninstall"))
    r = cli("export", "--root", str(root))
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: vaultMigration: phase uninstall needs a vault section "
        "(the Vault this stack still installs)\n",
    )
    f.write_text(
        before.decode().replace(sealed, sealed + "\n  k8s-secrets:vaultMigration: uninstall\n  k8s-secrets:vault: {}")
    )
    cfg = load_stack("staging", root)
    assert cfg.installs_vault and not cfg.spec.vault
    kinds = {p.obj["kind"] for p in plan_stack(cfg)}
    assert "HelmRelease" in kinds and not {"VaultStaticSecret", "VaultAuth", "VaultConnection"} & kinds
    # (--no-cluster-check: the question to the cluster is tests/backends/test_migrate_switch.py's)
    r = cli(
        "migrate", "--stack", "staging", "--to", "sealed-secrets", "--finish", "--no-cluster-check", "--root", str(root)
    )
    assert r.code == 0 and "vaultMigration removed" in r.out, r.err
    assert not load_stack("staging", root).installs_vault
    f.write_bytes(before)

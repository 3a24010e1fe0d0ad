"""`ksecrets vault push` and `ksecrets migrate --to vault`, through the real CLI entry point
against the fake Vault."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ksecrets.config.load import load_stack
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.sealing.keys import generate_key_and_cert, cert_pem, private_key_pem
from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack
from tests.vault.fakevault import ADDR

PROD_ROOT = Path(__file__).parent / "fixtures" / "production"  # frozen production stack

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
DB_URL = "postgres://app:p4ss-w0rd-secret@db:5432/app"
API_KEY = "ak-live-0123456789-secret"


@pytest.fixture
def prod_root(tmp_path):
    shutil.copy2(PROD_ROOT / "Pulumi.production.yaml", tmp_path / "Pulumi.production.yaml")
    return tmp_path


def _env_file(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "app.env"
    f.write_text(text)
    return f


# --- push ---------------------------------------------------------------------------------------


def test_push_writes_then_says_unchanged_and_never_prints_values(cli, vault, vault_env, prod_root, tmp_path):
    vault.enable_kv2()
    env = _env_file(tmp_path, f"DATABASE_URL={DB_URL}\nAPI_KEY={API_KEY}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.out, r.err) == (0, "secret/data/my-app: version 1 (added: API_KEY, DATABASE_URL)\n", "")
    assert vault.writes() == [
        ("POST", "secret/data/my-app", {"options": {"cas": 0}, "data": {"API_KEY": API_KEY, "DATABASE_URL": DB_URL}})
    ]
    vault.log.clear()
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.out) == (0, "secret/data/my-app: unchanged (version 1)\n")
    assert vault.writes() == []
    env.write_text(f"DATABASE_URL={DB_URL}\nAPI_KEY=new-{API_KEY}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.out) == (0, "secret/data/my-app: version 2 (changed: API_KEY)\n")
    assert vault.writes()[-1][2]["options"] == {"cas": 1}


def test_push_keeps_rotated_keys(cli, vault, vault_env, tmp_path):
    shutil.copy2(FIXTURES / "Pulumi.vaultdb.yaml", tmp_path / "Pulumi.vaultdb.yaml")
    vault.mounts["kv"] = {"type": "kv", "options": {"version": "2"}}
    vault.put_kv("kv", "shop/orders", {"API_KEY": "rotated-by-the-rotator", "DATABASE_URL": "old"})
    env = _env_file(tmp_path, f"API_KEY={API_KEY}\nDATABASE_URL={DB_URL}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "vaultdb",
        "--path",
        "shop/orders",
        "--from-env-file",
        str(env),
        "--root",
        str(tmp_path),
    )
    assert r.code == 0
    assert r.out == (
        "kv/data/shop/orders: version 2 (changed: DATABASE_URL)\n"
        "kv/data/shop/orders: kept Vault's value of rotated keys: API_KEY\n"
    )
    assert vault.kv_latest("kv", "shop/orders") == {"API_KEY": "rotated-by-the-rotator", "DATABASE_URL": DB_URL}


def test_push_refuses_missing_declared_keys(cli, vault, vault_env, prod_root, tmp_path):
    vault.enable_kv2()
    env = _env_file(tmp_path, f"API_KEY={API_KEY}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.err) == (2, f"ksecrets: {env}: missing keys declared for app my-app: DATABASE_URL\n")
    assert vault.log == []


def test_push_to_an_unknown_path(cli, vault, vault_env, prod_root, tmp_path):
    env = _env_file(tmp_path, "A=1\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "nope",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.err) == (
        2,
        "ksecrets: --path: 'nope' is not the Vault path of an app in Pulumi.production.yaml (paths: my-app)\n",
    )


def test_push_faults_are_one_line_without_values(cli, vault, vault_env, prod_root, tmp_path):
    vault.enable_kv2()
    vault.sealed = True
    env = _env_file(tmp_path, f"DATABASE_URL={DB_URL}\nAPI_KEY={API_KEY}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert (r.code, r.out) == (1, "")  # a Vault fault: exit 1 in every command (README, exit codes)
    assert r.err == (
        f"ksecrets: Vault {ADDR}: secret/data/my-app: Vault is sealed "
        "(unseal it: `vault operator unseal` on each pod)\n"
    )


def test_push_reads_the_token_file_when_vault_token_is_unset(cli, vault, vault_env, prod_root, tmp_path, monkeypatch):
    vault.enable_kv2()
    monkeypatch.delenv("VAULT_TOKEN")
    home = Path(vault_env and tmp_path / "home")
    home.mkdir()
    (home / ".vault-token").write_text("test-token")
    env = _env_file(tmp_path, f"DATABASE_URL={DB_URL}\nAPI_KEY={API_KEY}\n")
    r = cli(
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        str(env),
        "--root",
        str(prod_root),
    )
    assert r.code == 0 and r.out.startswith("secret/data/my-app: version 1")


def test_push_on_a_sealed_secrets_stack_is_refused(cli, vault_env, repo_copy, tmp_path):
    env = _env_file(tmp_path, "A=1\n")
    r = cli(
        "vault", "push", "--stack", "staging", "--path", "my-app", "--from-env-file", str(env), "--root", str(repo_copy)
    )
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: backend: sealed-secrets; the vault commands need a vault stack\n",
    )


# --- migrate ------------------------------------------------------------------------------------


@pytest.fixture
def sealed_stack(tmp_path):
    """A sealed-secrets stack (staging's shape) sealed with a fresh key we hold."""
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
    return root, keyfile


def test_migrate_pushes_every_value_then_switches_the_backend(cli, vault, vault_env, sealed_stack):
    root, keyfile = sealed_stack
    vault.enable_kv2()
    before = (root / "Pulumi.staging.yaml").read_text()
    r = cli(
        "migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(keyfile), "--root", str(root)
    )
    assert r.code == 0, r.err
    assert r.out.splitlines()[:2] == [
        "secret/data/my-app: version 1 (written; keys: API_KEY, DATABASE_URL)",
        "backend switched to vault",
    ]
    assert DB_URL not in r.out + r.err and API_KEY not in r.out + r.err
    assert vault.kv_latest("secret", "my-app") == {"API_KEY": API_KEY, "DATABASE_URL": DB_URL}
    after = (root / "Pulumi.staging.yaml").read_text()
    assert "k8s-secrets:backend: vault" in after
    assert before.replace("k8s-secrets:backend: sealed-secrets", "") != after
    assert "# Staging: Sealed Secrets." in after  # comments survive the round trip
    cfg = load_stack("staging", root)
    assert cfg.backend == "vault"
    assert cfg.apps[0].vault.path == "my-app" and set(cfg.apps[0].keys) == {"API_KEY", "DATABASE_URL"}
    kinds = [p.obj["kind"] for p in plan_stack(cfg)]
    assert "VaultStaticSecret" in kinds and "SealedSecret" not in kinds


def test_migrate_switches_nothing_when_a_push_fails(cli, vault, vault_env, sealed_stack):
    root, keyfile = sealed_stack
    vault.enable_kv2()
    vault.deny.add("secret/data/my-app")
    before = (root / "Pulumi.staging.yaml").read_bytes()
    r = cli(
        "migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(keyfile), "--root", str(root)
    )
    assert r.code == 1  # a Vault fault: exit 1 in every command (README, exit codes)
    assert r.err == (
        f"ksecrets: Vault {ADDR}: secret/data/my-app: permission denied (403): the token's policies do not allow this\n"
    )
    assert (root / "Pulumi.staging.yaml").read_bytes() == before


def test_migrate_with_the_wrong_key_pushes_nothing(cli, vault, vault_env, sealed_stack, tmp_path):
    root, _ = sealed_stack
    other, _ = generate_key_and_cert(key_bits=2048)
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(private_key_pem(other))
    before = (root / "Pulumi.staging.yaml").read_bytes()
    r = cli("migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(wrong), "--root", str(root))
    assert r.code == 2 and r.err.startswith(
        "ksecrets: Pulumi.staging.yaml: sealed[0] (my-app/my-app-secrets): spec.encryptedData."
    )
    assert vault.log == []
    assert (root / "Pulumi.staging.yaml").read_bytes() == before


def test_migrate_an_already_vault_stack(cli, vault, vault_env, prod_root, tmp_path):
    key, _ = generate_key_and_cert(key_bits=2048)
    k = tmp_path / "k.pem"
    k.write_bytes(private_key_pem(key))
    r = cli(
        "migrate", "--stack", "production", "--to", "vault", "--recovery-private-key", str(k), "--root", str(prod_root)
    )
    assert (r.code, r.err) == (2, "ksecrets: Pulumi.production.yaml: backend: already vault; nothing to migrate\n")


def test_migrate_refuses_a_typed_secret_before_pushing(cli, vault, vault_env, sealed_stack):
    root, keyfile = sealed_stack
    f = root / "Pulumi.staging.yaml"
    f.write_text(
        f.read_text().replace("      scope: strict\n", "      scope: strict\n      type: kubernetes.io/basic-auth\n", 1)
    )
    before = f.read_bytes()
    r = cli(
        "migrate", "--stack", "staging", "--to", "vault", "--recovery-private-key", str(keyfile), "--root", str(root)
    )
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: sealed[0] (my-app/my-app-secrets): type "
        "kubernetes.io/basic-auth is not Opaque, which the Vault Secrets Operator creates; "
        "move it by hand; nothing was pushed\n",
    )
    assert vault.log == [] and f.read_bytes() == before

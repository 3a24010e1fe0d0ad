"""`ksecrets rotate`: sealed-secrets re-seals one key into the stack; vault writes a new version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ksecrets.config.load import load_stack
from ksecrets.jobs.rotate import URL_SAFE
from ksecrets.sealing import crypto
from ksecrets.sealing.keys import cert_pem, generate_key_and_cert
from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack

STACK = """\
# a sealed-secrets stack for rotation tests
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    certificate: certs/rot.pem
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      keys: [API_KEY, DATABASE_URL]
      rotation:
        - key: API_KEY
          length: 40
"""
OLD_API_KEY = b"old-api-key-value-0123456789"
DB_URL = b"postgres://app@db/app"


@pytest.fixture(scope="module")
def pair():
    return generate_key_and_cert(2048, dt.timedelta(days=365))


@pytest.fixture
def stack(tmp_path, pair) -> Path:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/rot.pem").write_bytes(cert_pem(pair[1]))
    (tmp_path / "Pulumi.rot.yaml").write_text(STACK)
    seal_into_stack(
        tmp_path, "rot", SealRequest(name="my-app-secrets", values={"API_KEY": OLD_API_KEY, "DATABASE_URL": DB_URL})
    )
    return tmp_path


def plain(root: Path, key_pair, key: str) -> bytes:
    entry = load_stack("rot", root).sealed_entry("my-app", "my-app-secrets")
    return crypto.decrypt_value([key_pair[0]], dict(entry.encrypted_data)[key], b"my-app/my-app-secrets")


def test_sealed_rotation_reseals_only_that_key(stack, pair, cli):
    before = dict(load_stack("rot", stack).sealed_entry("my-app", "my-app-secrets").encrypted_data)
    result = cli("rotate", "--stack", "rot", "--name", "my-app-secrets", "--key", "API_KEY", "--root", str(stack))
    assert result.code == 0, result.err
    after = dict(load_stack("rot", stack).sealed_entry("my-app", "my-app-secrets").encrypted_data)
    assert after["DATABASE_URL"] == before["DATABASE_URL"]  # untouched ciphertext
    assert after["API_KEY"] != before["API_KEY"]
    new = plain(stack, pair, "API_KEY")
    assert new != OLD_API_KEY and len(new) == 40 and set(new.decode()) <= set(URL_SAFE)  # length from the stack
    assert plain(stack, pair, "DATABASE_URL") == DB_URL
    from ksecrets.sealing.certs import load_certificate

    fp = load_certificate(stack / "certs/rot.pem").fingerprint
    assert result.out.splitlines() == [
        f"Pulumi.rot.yaml: my-app/my-app-secrets: rotated API_KEY (40 characters, sealed for {fp}); other keys kept",
        "next: make render, then commit Pulumi.rot.yaml and k8s/rot/; Flux applies the new SealedSecret and "
        "the Deployments roll on the changed ciphertext",
    ]
    assert new.decode() not in result.out + result.err


def test_length_flag_overrides(stack, pair, cli):
    result = cli(
        "rotate",
        "--stack",
        "rot",
        "--name",
        "my-app-secrets",
        "--key",
        "DATABASE_URL",
        "--length",
        "17",
        "--root",
        str(stack),
    )
    assert result.code == 0, result.err
    assert len(plain(stack, pair, "DATABASE_URL")) == 17
    assert plain(stack, pair, "API_KEY") == OLD_API_KEY


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--key", "NOPE"],
            "ksecrets: Pulumi.rot.yaml: my-app/my-app-secrets has no key 'NOPE' (keys: API_KEY, "
            "DATABASE_URL); rotation replaces an existing key\n",
        ),
        (["--key", "API_KEY", "--length", "8"], "ksecrets: --length: 8 is out of range (16 to 256)\n"),
        (
            ["--key", "API_KEY", "--namespace", "other"],
            "ksecrets: Pulumi.rot.yaml: other/my-app-secrets has no sealed "
            "values to rotate; seal them first (ksecrets seal --stack rot "
            "--name my-app-secrets ...)\n",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(stack, cli, args, message):
    text = (stack / "Pulumi.rot.yaml").read_text()
    result = cli("rotate", "--stack", "rot", "--name", "my-app-secrets", "--root", str(stack), *args)
    assert (result.code, result.err) == (2, message)
    assert (stack / "Pulumi.rot.yaml").read_text() == text


def test_manual_backend_says_how(tmp_path, cli):
    (tmp_path / "Pulumi.man.yaml").write_text("config:\n  k8s-secrets:backend: manual\n")
    result = cli("rotate", "--stack", "man", "--name", "s", "--key", "K", "--root", str(tmp_path))
    assert result.code == 2
    assert "pulumi config set --secret --path 'k8s-secrets:manualValues.s.K'" in result.err


def test_vault_backend_writes_a_new_version_once(fake_kv, cli, monkeypatch):
    from pathlib import Path as P

    root = P(__file__).parent / "fixtures"
    fake_kv.seed("my-app", {"API_KEY": "old-api-key-value", "DATABASE_PASSWORD": "pw", "DATABASE_URL": "u"})
    monkeypatch.setenv("VAULT_ADDR", fake_kv.addr)
    monkeypatch.setenv("VAULT_TOKEN", fake_kv.token)
    result = cli("rotate", "--stack", "rotating", "--name", "my-app-secrets", "--key", "API_KEY", "--root", str(root))
    assert result.code == 0, result.err
    new = fake_kv.current("my-app")["API_KEY"]
    assert len(new) == 48  # rotation.length of API_KEY in the fixture stack
    assert fake_kv.current("my-app")["DATABASE_PASSWORD"] == "pw"
    assert result.out.splitlines() == [
        "secret/data/my-app key API_KEY: rotated (kv-v2 version 2)",
        "next: nothing to commit; the Vault Secrets Operator syncs my-app/my-app-secrets within refreshAfter (60s) "
        "and restarts its Deployments",
    ]
    assert new not in result.out + result.err


def test_vault_backend_failed_write_exits_1(fake_kv, cli, monkeypatch):
    from pathlib import Path as P

    fake_kv.seed("my-app", {"API_KEY": "old-api-key-value"})
    fake_kv.fail_write = 500
    monkeypatch.setenv("VAULT_ADDR", fake_kv.addr)
    monkeypatch.setenv("VAULT_TOKEN", fake_kv.token)
    result = cli(
        "rotate",
        "--stack",
        "rotating",
        "--name",
        "my-app-secrets",
        "--key",
        "API_KEY",
        "--root",
        str(P(__file__).parent / "fixtures"),
    )
    assert result.code == 1
    assert result.err.startswith(
        "ksecrets: rotation of secret/data/my-app key API_KEY failed, the old value stays current"
    )
    assert fake_kv.current("my-app") == {"API_KEY": "old-api-key-value"}


def test_vault_backend_postgres_key_from_the_workstation(pg_server, fake_kv, cli, monkeypatch, tmp_path):
    from ksecrets.jobs.rotate.postgres import can_login
    from ksecrets.jobs.rotate import Postgres

    pg_server.create_role("ws_user", "ws-old-password-0123456789")
    (tmp_path / "Pulumi.ws.yaml").write_text(f"""\
config:
  k8s-secrets:backend: vault
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      keys: [DB_PASSWORD]
      vault: {{path: my-app}}
      rotation:
        - key: DB_PASSWORD
          generator: postgres
          postgres: {{host: "{pg_server.socket_dir}", port: {pg_server.port}, database: postgres, role: ws_user,
                     adminSecret: pg-admin}}
""")
    fake_kv.seed("my-app", {"DB_PASSWORD": "ws-old-password-0123456789"})
    for name, value in (
        ("VAULT_ADDR", fake_kv.addr),
        ("VAULT_TOKEN", fake_kv.token),
        ("PGADMIN_USER", pg_server.admin),
        ("PGADMIN_PASSWORD", pg_server.admin_password),
    ):
        monkeypatch.setenv(name, value)
    result = cli("rotate", "--stack", "ws", "--name", "my-app-secrets", "--key", "DB_PASSWORD", "--root", str(tmp_path))
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "secret/data/my-app key DB_PASSWORD: rotated (kv-v2 version 2) and ALTER ROLE ws_user committed"
    )
    new = fake_kv.current("my-app")["DB_PASSWORD"]
    pg = Postgres(
        pg_server.socket_dir, pg_server.port, "postgres", "ws_user", pg_server.admin, pg_server.admin_password
    )
    assert can_login(pg, "ws_user", new) is True
    assert can_login(pg, "ws_user", "ws-old-password-0123456789") is False
    assert new not in result.out + result.err

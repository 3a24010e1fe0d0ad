"""generator random, the Kubernetes-auth login and the command's bad input."""

from __future__ import annotations

import logging

import hvac
import pytest

from ksecrets.errors import KsecretsError
from ksecrets.jobs.rotate import URL_SAFE, RotationFailed, Target, generate, rotate_random
from ksecrets.jobs.rotate.__main__ import main, vault_login

VAULT_ADDR = "http://vault.test:8200"  # served by the fake_kv fixture
TARGET = Target(mount="secret", path="my-app", key="API_KEY")


@pytest.mark.parametrize("length", [16, 32, 57, 256])
def test_generate_exact_length_url_safe(length):
    values = {generate(length) for _ in range(50)}
    assert len(values) == 50  # 6 bits per character: a repeat would be a broken generator
    for value in values:
        assert len(value) == length and set(value) <= set(URL_SAFE)


@pytest.mark.parametrize("length", [0, 15, 257])
def test_generate_refuses_short_or_huge(length):
    with pytest.raises(KsecretsError, match=r"--length: .* out of range \(16 to 256\)"):
        generate(length)


def test_rotate_random_writes_a_new_version_keeping_other_keys(fake_kv):
    fake_kv.seed("my-app", {"API_KEY": "old-api-key-value", "DATABASE_URL": "postgres://db"})
    version = rotate_random(hvac.Client(url=VAULT_ADDR, token="t"), TARGET, 24)
    assert version == 2
    current = fake_kv.current("my-app")
    assert current["DATABASE_URL"] == "postgres://db"
    assert len(current["API_KEY"]) == 24 and current["API_KEY"] != "old-api-key-value"


def test_rotate_random_check_and_set_conflict_keeps_the_other_writers_version(fake_kv):
    fake_kv.seed("my-app", {"API_KEY": "old-api-key-value"})
    fake_kv.concurrent_write = {"API_KEY": "written-by-someone-else"}
    with pytest.raises(RotationFailed, match="check-and-set expected version 1"):
        rotate_random(hvac.Client(url=VAULT_ADDR, token="t"), TARGET, 24)
    assert fake_kv.current("my-app") == {"API_KEY": "written-by-someone-else"}


def test_kubernetes_login_with_the_projected_token(fake_kv, tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJ.projected.jwt\n")
    client = vault_login(
        {
            "VAULT_ADDR": VAULT_ADDR,
            "KSECRETS_VAULT_ROLE": "my-app-rotator",
            "KSECRETS_VAULT_AUTH_MOUNT": "kubernetes",
            "KSECRETS_VAULT_TOKEN_FILE": str(token),
        }
    )
    assert fake_kv.logins == [{"role": "my-app-rotator", "jwt": "eyJ.projected.jwt"}]
    assert client.token == "hvs.from-kubernetes-login"


def test_command_random_end_to_end_with_kubernetes_auth(fake_kv, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="ksecrets.rotate")
    fake_kv.seed("my-app", {"API_KEY": "old-api-key-value"})
    token = tmp_path / "token"
    token.write_text("eyJ.projected.jwt")
    env = {"VAULT_ADDR": VAULT_ADDR, "KSECRETS_VAULT_ROLE": "my-app-rotator", "KSECRETS_VAULT_TOKEN_FILE": str(token)}
    assert main(["--mount", "secret", "--path", "my-app", "--key", "API_KEY", "--length", "32"], env) == 0
    new = fake_kv.current("my-app")["API_KEY"]
    assert len(new) == 32
    assert "rotated secret/data/my-app key API_KEY: new kv-v2 version 2" in caplog.text
    out = capsys.readouterr()
    for value in (new, "old-api-key-value", "eyJ.projected.jwt"):
        assert value not in out.out + out.err + caplog.text


def test_command_without_credentials_exits_2(capsys):
    assert main(["--mount", "secret", "--path", "p", "--key", "k"], {"VAULT_ADDR": VAULT_ADDR}) == 2
    assert capsys.readouterr().err == (
        "ksecrets.rotate: no Vault credentials: set VAULT_TOKEN, or KSECRETS_VAULT_ROLE for Kubernetes auth\n"
    )


def test_command_postgres_without_admin_credentials_exits_2(capsys):
    code = main(
        [
            "--mount",
            "secret",
            "--path",
            "p",
            "--key",
            "k",
            "--generator",
            "postgres",
            "--pg-host",
            "db",
            "--pg-role",
            "app",
        ],
        {"VAULT_ADDR": VAULT_ADDR, "VAULT_TOKEN": "t"},
    )
    assert code == 2
    assert "PGADMIN_USER and PGADMIN_PASSWORD" in capsys.readouterr().err


def test_command_missing_token_file_exits_2(tmp_path, capsys):
    env = {"VAULT_ADDR": VAULT_ADDR, "KSECRETS_VAULT_ROLE": "r", "KSECRETS_VAULT_TOKEN_FILE": str(tmp_path / "none")}
    assert main(["--mount", "secret", "--path", "p", "--key", "k"], env) == 2
    assert "cannot read the service-account token" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,env,problem",
    [
        (
            ["--mount", "secret", "--path", "my-app/../../sys/policies/acl/x"],
            {},
            '--path: "my-app/../../sys/policies/acl/x" is not a Vault secret path',
        ),
        (["--mount", "sys", "--path", "p"], {}, '--mount: "sys" is not a Vault mount path: sys/ is Vault\'s own'),
        (
            ["--mount", "secret", "--path", "p"],
            {"KSECRETS_VAULT_ROLE": "../../sys/x"},
            'KSECRETS_VAULT_ROLE: "../../sys/x" is not a Vault name',
        ),
        (
            ["--mount", "secret", "--path", "p"],
            {"KSECRETS_VAULT_ROLE": "r", "KSECRETS_VAULT_AUTH_MOUNT": "k8s/../../sys"},
            'KSECRETS_VAULT_AUTH_MOUNT: "k8s/../../sys" is not a Vault mount path',
        ),
    ],
)
def test_command_refuses_names_that_leave_their_vault_path(argv, env, problem, capsys, tmp_path):
    token = tmp_path / "token"
    token.write_text("jwt")
    env = {"VAULT_ADDR": VAULT_ADDR, "KSECRETS_VAULT_TOKEN_FILE": str(token), **env}
    if "KSECRETS_VAULT_ROLE" not in env:
        env["VAULT_TOKEN"] = "t"
    assert main([*argv, "--key", "k"], env) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"ksecrets.rotate: {problem}"), line

"""The hvac client set-up and kv-v2 check-and-set, asserted at the HTTP boundary."""

from __future__ import annotations

import pytest
import requests
import responses

from ksecrets.errors import KsecretsError
from ksecrets.vault import kv
from ksecrets.vault.client import make_client, read_token, resolve_address
from ksecrets.config.model import VaultConfig, VaultTLS
from tests.vault.fakevault import ADDR

SECRET = "s3cr3t-value-never-shown"


# --- address and token ------------------------------------------------------------------------


def test_address_from_env_wins_over_the_stack():
    assert resolve_address(VaultConfig(), {"VAULT_ADDR": "https://vault.example:8200/"}) == "https://vault.example:8200"


def test_address_defaults_to_the_stack_service_address():
    assert resolve_address(VaultConfig(), {}) == "http://vault.vault.svc:8200"
    assert resolve_address(VaultConfig(tls=VaultTLS(enabled=True)), {}) == "https://vault.vault.svc:8200"


def test_token_from_env_then_the_cli_token_file(tmp_path):
    token_file = tmp_path / ".vault-token"
    token_file.write_text("hvs.from-file\n")
    assert read_token({"VAULT_TOKEN": "hvs.env"}, token_file) == "hvs.env"
    assert read_token({}, token_file) == "hvs.from-file"


def test_no_token_is_a_one_line_error(tmp_path):
    with pytest.raises(KsecretsError) as e:
        read_token({}, tmp_path / "absent")
    assert str(e.value) == f"no Vault token: set VAULT_TOKEN or run `vault login` (which writes {tmp_path / 'absent'})"


def test_client_sends_token_and_namespace_headers(rsps, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    seen = {}

    def cb(request):
        seen.update(request.headers)
        return 200, {}, '{"data": {"data": {"A": "1"}, "metadata": {"version": 1}}}'

    rsps.add_callback(responses.GET, f"{ADDR}/v1/secret/data/app", callback=cb)
    c = make_client(
        env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "tok", "VAULT_NAMESPACE": "team-a", "VAULT_CACERT": str(ca)}
    )
    assert c.adapter._kwargs["verify"] == str(ca)
    assert kv.read_current(c, "secret", "app") == ({"A": "1"}, 1)
    assert seen["X-Vault-Token"] == "tok"
    assert seen["X-Vault-Namespace"] == "team-a"


def test_missing_cacert_file_is_an_error(tmp_path):
    with pytest.raises(KsecretsError, match=r"^VAULT_CACERT: .*/nope.pem: no such file$"):
        make_client(env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t", "VAULT_CACERT": str(tmp_path / "nope.pem")})


def test_the_cli_has_no_token_flag():
    from ksecrets.cli import build_parser

    parser = build_parser()
    for argv in (
        ["vault", "push", "--stack", "p", "--path", "a", "--from-env-file", "f", "--token", "x"],
        ["vault", "bootstrap", "--stack", "p", "--token", "x"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


# --- kv-v2 check-and-set ----------------------------------------------------------------------


def test_first_write_uses_cas_zero(vault, client):
    vault.enable_kv2()
    result = kv.write_if_changed(client, "secret", "my-app", {"API_KEY": SECRET, "DB": "x"})
    assert result == kv.WriteResult(changed=True, version=1, added=("API_KEY", "DB"))
    assert vault.log == [
        ("GET", "secret/data/my-app", None),
        ("GET", "sys/internal/ui/mounts/secret/my-app", None),  # 404: is the mount kv-v2?
        ("POST", "secret/data/my-app", {"options": {"cas": 0}, "data": {"API_KEY": SECRET, "DB": "x"}}),
        ("GET", "secret/data/my-app", None),  # read back: a write counts once Vault shows it
    ]


def test_same_values_write_nothing(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"API_KEY": SECRET})
    result = kv.write_if_changed(client, "secret", "my-app", {"API_KEY": SECRET})
    assert result == kv.WriteResult(changed=False, version=1)
    assert vault.writes() == []


def test_a_changed_value_writes_with_cas_of_the_version_read(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"A": "1", "B": "2"})
    vault.put_kv("secret", "my-app", {"A": "1", "B": "3"})
    result = kv.write_if_changed(client, "secret", "my-app", {"A": "9", "C": "4"})
    assert result == kv.WriteResult(changed=True, version=3, added=("C",), updated=("A",), removed=("B",))
    assert vault.writes() == [("POST", "secret/data/my-app", {"options": {"cas": 2}, "data": {"A": "9", "C": "4"}})]
    assert vault.kv_latest("secret", "my-app") == {"A": "9", "C": "4"}


def test_a_concurrent_change_is_refused_not_overwritten(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"A": "1"})
    vault.fail_cas_once.add(("secret", "my-app"))  # someone writes version 2 between our read and write
    with pytest.raises(KsecretsError) as e:
        kv.write_if_changed(client, "secret", "my-app", {"A": SECRET})
    assert str(e.value) == (
        f"Vault {ADDR}: secret/data/my-app: changed concurrently: check-and-set expected "
        "version 1; nothing was overwritten, read it again and retry"
    )
    assert vault.kv_latest("secret", "my-app") == {"other": "writer"}


def test_keep_existing_keeps_vaults_value(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"API_KEY": "rotated", "DB": "old"})
    result = kv.write_if_changed(
        client, "secret", "my-app", {"API_KEY": "stale", "DB": "new"}, keep_existing=("API_KEY",)
    )
    assert result.kept == ("API_KEY",) and result.updated == ("DB",)
    assert vault.kv_latest("secret", "my-app") == {"API_KEY": "rotated", "DB": "new"}


def test_rotate_key_replaces_one_key_with_cas(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"API_KEY": "old", "DB": "keep"})
    assert kv.rotate_key(client, "secret", "my-app", "API_KEY", "new") == 2
    assert vault.writes() == [
        ("POST", "secret/data/my-app", {"options": {"cas": 1}, "data": {"API_KEY": "new", "DB": "keep"}})
    ]


def test_rotate_key_on_a_missing_secret_is_an_error(vault, client):
    vault.enable_kv2()
    with pytest.raises(KsecretsError) as e:
        kv.rotate_key(client, "secret", "nope", "API_KEY", SECRET)
    assert str(e.value) == f"Vault {ADDR}: secret/data/nope: no such secret (404)"
    assert vault.writes() == []


def test_deleted_latest_version_reads_as_missing_and_writes_with_its_cas(vault, client):
    vault.enable_kv2()
    vault.put_kv("secret", "my-app", {"A": "1"})
    vault.put_kv("secret", "my-app", {"A": "2"})
    vault.delete_latest("secret", "my-app")  # version 2 deleted
    with pytest.raises(KsecretsError, match=r"no such secret \(its latest version 2 is deleted\)$"):
        kv.read_current(client, "secret", "my-app")
    assert kv.write_if_changed(client, "secret", "my-app", {"A": "1"}).version == 3
    assert vault.writes()[-1][2]["options"] == {"cas": 2}


def test_non_text_values_are_refused_before_any_request(vault, client):
    with pytest.raises(KsecretsError, match=r"key 'A': values must be text \(str\)$"):
        kv.write_if_changed(client, "secret", "x", {"A": b"bytes"})  # type: ignore[dict-item]
    assert vault.log == []


# --- faults: one line, address and path, never a value ----------------------------------------


def _fault(fn) -> str:
    with pytest.raises(KsecretsError) as e:
        fn()
    message = str(e.value)
    assert "\n" not in message and SECRET not in message
    return message


def test_unreachable(rsps):
    rsps.add(responses.GET, f"{ADDR}/v1/secret/data/my-app", body=requests.exceptions.ConnectionError("refused"))
    c = make_client(env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t"})
    assert _fault(lambda: kv.write_if_changed(c, "secret", "my-app", {"A": SECRET})) == (
        f"Vault {ADDR}: secret/data/my-app: unreachable (connection failed; check VAULT_ADDR and that Vault is running)"
    )


def test_tls_failure(rsps):
    rsps.add(responses.GET, f"{ADDR}/v1/secret/data/my-app", body=requests.exceptions.SSLError("bad cert"))
    c = make_client(env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t"})
    assert _fault(lambda: kv.read_current(c, "secret", "my-app")) == (
        f"Vault {ADDR}: secret/data/my-app: TLS verification failed (set VAULT_CACERT to the CA that signed Vault's certificate)"
    )


def test_sealed(vault, client):
    vault.enable_kv2()
    vault.sealed = True
    assert _fault(lambda: kv.write_if_changed(client, "secret", "my-app", {"A": SECRET})) == (
        f"Vault {ADDR}: secret/data/my-app: Vault is sealed (unseal it: `vault operator unseal` on each pod)"
    )
    assert vault.log == [("GET", "secret/data/my-app", None), ("GET", "sys/health", None)]


def test_permission_denied(vault, client):
    vault.enable_kv2()
    vault.deny.add("secret/data/my-app")
    assert _fault(lambda: kv.write_if_changed(client, "secret", "my-app", {"A": SECRET})) == (
        f"Vault {ADDR}: secret/data/my-app: permission denied (403): the token's policies do not allow this"
    )


def test_wrong_token_is_permission_denied(vault):
    vault.enable_kv2()
    c = make_client(env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "wrong"})
    assert _fault(lambda: kv.read_current(c, "secret", "x")).endswith(
        "permission denied (403): the token's policies do not allow this"
    )


def test_kv_v1_mount_is_the_wrong_type_and_nothing_is_written(vault, client):
    vault.mounts["secret"] = {"type": "kv", "options": {"version": "1"}}
    assert _fault(lambda: kv.write_if_changed(client, "secret", "my-app", {"A": SECRET})) == (
        f"Vault {ADDR}: secret/data/my-app: wrong mount type: secret/ is kv version 1, not kv version 2"
    )
    assert vault.writes() == []


def test_non_kv_mount_is_the_wrong_type(vault, client):
    vault.mounts["database"] = {"type": "database", "options": None}
    assert _fault(lambda: kv.read_current(client, "database", "my-app")) == (
        f"Vault {ADDR}: database/data/my-app: wrong mount type: database/ is a database mount, not kv version 2"
    )


def test_no_mount_at_all(vault, client):
    assert _fault(lambda: kv.read_current(client, "secret", "my-app")) == (
        f"Vault {ADDR}: secret/data/my-app: no kv-v2 mount at secret/ (not enabled, or the token may not see it)"
    )


def test_missing_path(vault, client):
    vault.enable_kv2()
    assert _fault(lambda: kv.read_current(client, "secret", "my-app")) == (
        f"Vault {ADDR}: secret/data/my-app: no such secret (404)"
    )


def test_bad_request_text_never_echoes_a_value(rsps):
    rsps.add(responses.GET, f"{ADDR}/v1/secret/data/x", json={"data": {"data": {}, "metadata": {"version": 1}}})
    rsps.add(responses.POST, f"{ADDR}/v1/secret/data/x", status=400, json={"errors": [f"invalid value {SECRET}"]})
    c = make_client(env={"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t"})
    assert _fault(lambda: kv.write_if_changed(c, "secret", "x", {"A": SECRET})) == (
        f"Vault {ADDR}: secret/data/x: bad request (400): the request was rejected"
    )

"""Against a real Vault: runs when VAULT_ADDR and VAULT_TOKEN are set, skipped otherwise.

    vault server -dev -dev-root-token-id=root &
    VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root .venv/bin/python -m pytest tests/vault/test_integration.py -q

Everything lives under mounts, policies and roles with a random suffix, removed at the end, so it
is safe on any dev server. A file audit device at `file/` is enabled with `file_path=discard` when
none exists (the chart's /vault/audit does not exist outside the pod) and disabled afterwards.
"""

from __future__ import annotations

import os
import secrets

import hvac
import pytest

from ksecrets.config.load import parse
from ksecrets.errors import KsecretsError
from ksecrets.vault import kv
from ksecrets.usecases.vault_bootstrap import app_policy_name, bootstrap
from ksecrets.vault.client import make_client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN")),
        reason="needs a Vault server: set VAULT_ADDR and VAULT_TOKEN (e.g. `vault server -dev`)",
    ),
]


def _any_ca() -> str:
    """A CA certificate for the kubernetes auth config. Vault checks only that it parses until a
    login; without one, a Vault outside a pod fails reading its pod's CA file (the real server's
    answer: `open /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: no such file`)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA = _any_ca()


@pytest.fixture(scope="module")
def suffix() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def cfg(suffix):
    return parse(
        {
            "backend": "vault",
            "vault": {"kvMount": f"kv-it-{suffix}", "authMount": f"k8s-it-{suffix}", "audience": "vault"},
            "apps": [
                {
                    "name": f"it-{suffix}",
                    "namespace": "it",
                    "keys": ["API_KEY"],
                    "rotation": [{"key": "API_KEY"}],
                    "vault": {"path": f"apps/it-{suffix}"},
                }
            ],
        },
        stack="integration",
        source="integration",
    )


@pytest.fixture(scope="module")
def client(cfg, suffix):
    c = make_client(cfg.vault)
    audit_created = False
    if "file/" not in (c.sys.list_enabled_audit_devices().get("data") or {}):
        c.sys.enable_audit_device("file", path="file", options={"file_path": "discard"})
        audit_created = True
    yield c
    app = cfg.apps[0]
    for mount in (cfg.vault.kv_mount, f"kv1-it-{suffix}"):
        try:
            c.sys.disable_secrets_engine(mount)
        except hvac.exceptions.VaultError:
            pass
    c.sys.disable_auth_method(cfg.vault.auth_mount)
    for name in (app_policy_name(cfg, app), f"ksecrets-{app.name}-rotator"):
        c.sys.delete_acl_policy(name)
    if audit_created:
        c.sys.disable_audit_device("file")


def test_bootstrap_twice_second_run_changes_nothing(client, cfg):
    first = bootstrap(client, cfg, kube_host="https://127.0.0.1:6443", kube_ca_pem=CA)
    assert first.any_changes
    second = bootstrap(client, cfg, kube_host="https://127.0.0.1:6443", kube_ca_pem=CA)
    assert second.changed == [], second.changed
    policy = client.sys.read_acl_policy(app_policy_name(cfg, cfg.apps[0]))["data"]["policy"]
    assert f'path "{cfg.vault.kv_mount}/data/{cfg.apps[0].vault.path}"' in policy


def test_write_if_changed_and_cas(client, cfg):
    mount, path = cfg.vault.kv_mount, cfg.apps[0].vault.path
    r1 = kv.write_if_changed(client, mount, path, {"API_KEY": "one"})
    assert r1.changed and r1.version == 1
    r2 = kv.write_if_changed(client, mount, path, {"API_KEY": "one"})
    assert (r2.changed, r2.version) == (False, 1)
    assert kv.rotate_key(client, mount, path, "API_KEY", "two") == 2
    assert kv.read_current(client, mount, path) == ({"API_KEY": "two"}, 2)
    # A stale check-and-set is refused by the real server.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"API_KEY": "x"}, cas=1, mount_point=mount)


def test_faults_against_the_real_server(client, cfg, suffix):
    mount = cfg.vault.kv_mount
    with pytest.raises(KsecretsError, match=r": no such secret \(404\)$"):
        kv.read_current(client, mount, "does/not/exist")
    client.sys.enable_secrets_engine("kv", path=f"kv1-it-{suffix}", options={"version": "1"})
    with pytest.raises(KsecretsError, match=rf"wrong mount type: kv1-it-{suffix}/ is kv version 1, not kv version 2$"):
        kv.write_if_changed(client, f"kv1-it-{suffix}", "x", {"A": "1"})
    limited = client.auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"]
    weak = make_client(
        cfg.vault,
        env={
            "VAULT_ADDR": os.environ["VAULT_ADDR"],
            "VAULT_TOKEN": limited,
            "VAULT_CACERT": os.environ.get("VAULT_CACERT", ""),
        },
    )
    with pytest.raises(KsecretsError, match=r"permission denied \(403\)"):
        kv.read_current(weak, mount, cfg.apps[0].vault.path)

"""`bootstrap`: the exact requests of a first run, and a second run that writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksecrets.config.load import load_stack, load_stack_file
from ksecrets.errors import KsecretsError
from ksecrets.usecases.vault_bootstrap import bootstrap
from tests.vault.fakevault import ADDR

PROD_ROOT = Path(__file__).parent / "fixtures" / "production"  # frozen production stack

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
HOST = "https://10.0.0.1:6443"
DB_PASSWORD = "db-admin-password-never-shown"

PRODUCTION_POLICY = (
    "# ksecrets, stack production: app my-app/my-app reads its own secret, nothing else.\n"
    'path "secret/data/my-app" {\n'
    '  capabilities = ["read"]\n'
    "}\n"
)


@pytest.fixture
def production():
    return load_stack("production", PROD_ROOT)


@pytest.fixture
def vaultdb():
    return load_stack_file(FIXTURES / "Pulumi.vaultdb.yaml")


def test_first_run_on_a_fresh_vault_makes_exactly_these_requests(vault, client, production):
    report = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    assert vault.log == [
        ("GET", "sys/mounts", None),
        ("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}),
        ("GET", "sys/mounts", None),  # every write is read back before it counts
        ("GET", "sys/auth", None),
        ("POST", "sys/auth/kubernetes", {"type": "kubernetes", "description": "ksecrets: cluster production"}),
        ("GET", "sys/auth", None),
        ("GET", "auth/kubernetes/config", None),
        ("POST", "auth/kubernetes/config", {"kubernetes_host": HOST, "kubernetes_ca_cert": CA}),
        ("GET", "auth/kubernetes/config", None),
        ("GET", "sys/policies/acl/ksecrets-my-app", None),
        ("POST", "sys/policies/acl/ksecrets-my-app", {"policy": PRODUCTION_POLICY}),
        ("GET", "sys/policies/acl/ksecrets-my-app", None),
        ("GET", "auth/kubernetes/role/my-app", None),
        (
            "POST",
            "auth/kubernetes/role/my-app",
            {
                "bound_service_account_names": ["my-app"],
                "bound_service_account_namespaces": ["my-app"],
                "audience": "vault",
                "token_policies": ["ksecrets-my-app"],
                "token_ttl": 3600,
                "token_max_ttl": 86400,
            },
        ),
        ("GET", "auth/kubernetes/role/my-app", None),
        ("GET", "sys/audit", None),
        ("PUT", "sys/audit/file", {"type": "file", "options": {"file_path": "/vault/audit/vault-audit.log"}}),
        ("GET", "sys/audit", None),
    ]
    assert report.changed == [
        "secrets engine secret/ (kv v2)",
        "auth method kubernetes/ (kubernetes)",
        f"auth kubernetes/config (host {HOST})",
        "policy ksecrets-my-app",
        "role my-app (my-app/my-app)",
        "audit device file/ (/vault/audit/vault-audit.log)",
    ]
    assert report.unchanged == []


def test_second_run_issues_no_writes_and_says_so(vault, client, production):
    bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    vault.log.clear()
    report = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    assert vault.writes() == []
    assert [m for m, _, _ in vault.log] == ["GET"] * 6
    assert not report.any_changes
    assert report.lines() == ["no changes: all 6 items already as configured"]


def test_drift_is_repaired_and_only_that(vault, client, production):
    bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    vault.objects["auth/kubernetes/role/my-app"]["bound_service_account_namespaces"] = ["*"]
    vault.policies["ksecrets-my-app"] = 'path "secret/*" { capabilities = ["read", "list"] }'
    vault.log.clear()
    report = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    assert [(m, p) for m, p, _ in vault.writes()] == [
        ("POST", "sys/policies/acl/ksecrets-my-app"),
        ("POST", "auth/kubernetes/role/my-app"),
    ]
    assert vault.policies["ksecrets-my-app"] == PRODUCTION_POLICY
    assert report.changed == ["policy ksecrets-my-app", "role my-app (my-app/my-app)"]


def test_without_a_ca_vault_uses_its_pods_own(vault, client, production):
    bootstrap(client, production)
    assert ("POST", "auth/kubernetes/config", {"kubernetes_host": "https://kubernetes.default.svc:443"}) in vault.log


def test_everything_with_database_rotation_and_two_apps(vault, client, vaultdb):
    report = bootstrap(client, vaultdb, kube_host=HOST, kube_ca_pem=CA, db_admin_password=DB_PASSWORD)
    writes = {(m, p): b for m, p, b in vault.writes()}
    assert writes[("POST", "sys/mounts/kv")] == {"type": "kv", "options": {"version": "2"}}
    assert writes[("POST", "sys/auth/k8s")]["type"] == "kubernetes"
    assert writes[("POST", "sys/policies/acl/ksecrets-orders")] == {
        "policy": (
            "# ksecrets, stack vaultdb: app shop/orders reads its own secret, nothing else.\n"
            'path "kv/data/shop/orders" {\n  capabilities = ["read"]\n}\n'
            'path "database/creds/orders-rw" {\n  capabilities = ["read"]\n}\n'
        )
    }
    assert writes[("POST", "sys/policies/acl/ksecrets-orders-rotator")] == {
        "policy": (
            "# ksecrets, stack vaultdb: the rotator of app shop/orders writes new versions of its secret "
            "(check-and-set), nothing else.\n"
            'path "kv/data/shop/orders" {\n  capabilities = ["read", "create", "update"]\n}\n'
            # issue 12: the minimum interval between rotations reads and marks the metadata
            'path "kv/metadata/shop/orders" {\n  capabilities = ["read", "create", "update"]\n}\n'
        )
    }
    assert writes[("POST", "auth/k8s/role/orders")]["bound_service_account_names"] == ["orders-sa"]
    assert writes[("POST", "auth/k8s/role/orders")]["audience"] == "vault-test"
    assert writes[("POST", "auth/k8s/role/orders-rotator")] == {
        "bound_service_account_names": ["orders-rotator"],
        "bound_service_account_namespaces": ["shop"],
        "audience": "vault-test",
        "token_policies": ["ksecrets-orders-rotator"],
        "token_ttl": 600,
        "token_max_ttl": 1800,
    }
    assert ("POST", "auth/k8s/role/billing-rotator") not in writes  # billing does not rotate
    assert writes[("POST", "auth/k8s/role/billing")]["bound_service_account_names"] == ["billing"]
    assert writes[("POST", "sys/mounts/database")] == {"type": "database"}
    assert writes[("POST", "database/config/orders-db")] == {
        "plugin_name": "postgresql-database-plugin",
        "connection_url": "postgresql://{{username}}:{{password}}@db.orders.svc:5432/orders",
        "username": "vault-admin",
        "allowed_roles": ["orders-rw"],
        "password": DB_PASSWORD,
        "verify_connection": True,
    }
    assert writes[("POST", "database/roles/orders-rw")] == {
        "db_name": "orders-db",
        "creation_statements": [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE \"orders-rw\";"
        ],
        "default_ttl": 3600,
        "max_ttl": 86400,
    }
    assert all(DB_PASSWORD not in line for line in report.lines())
    # Second run: no password needed (Vault never returns it) and nothing written.
    vault.log.clear()
    again = bootstrap(client, vaultdb, kube_host=HOST, kube_ca_pem=CA)
    assert vault.writes() == []
    assert again.lines() == [f"no changes: all {len(report.changed)} items already as configured"]


def test_database_connection_without_password_is_a_clear_error(vault, client, vaultdb):
    with pytest.raises(KsecretsError) as e:
        bootstrap(client, vaultdb, kube_host=HOST)
    assert str(e.value) == (
        f"Vault {ADDR}: database/config/orders-db: the connection does not exist yet; set "
        "KSECRETS_DB_ADMIN_PASSWORD to the password of 'vault-admin' to write it (Vault never returns it, so it is "
        "only needed then)"
    )


def test_an_existing_kv_v1_mount_is_never_replaced(vault, client, production):
    vault.mounts["secret"] = {"type": "kv", "options": {"version": "1"}}
    with pytest.raises(KsecretsError) as e:
        bootstrap(client, production)
    assert str(e.value) == (
        f"Vault {ADDR}: sys/mounts/secret: wrong mount type: secret/ is kv version 1, "
        "not kv version 2; bootstrap will not replace it"
    )
    assert vault.writes() == []


def test_an_auth_mount_of_another_type_is_never_replaced(vault, client, production):
    vault.enable_kv2()
    vault.auth["kubernetes"] = {"type": "jwt"}
    with pytest.raises(
        KsecretsError, match=r"sys/auth/kubernetes: wrong mount type: kubernetes/ is jwt, not kubernetes"
    ):
        bootstrap(client, production)
    assert vault.writes() == []


def test_permission_denied_names_the_path(vault, client, production):
    vault.deny.add("sys/policies/acl")
    vault.enable_kv2()
    with pytest.raises(KsecretsError) as e:
        bootstrap(client, production)
    assert str(e.value) == (
        f"Vault {ADDR}: sys/policies/acl/ksecrets-my-app: permission denied (403): "
        "the token's policies do not allow this"
    )


def test_sealed_vault(vault, client, production):
    vault.sealed = True
    with pytest.raises(KsecretsError) as e:
        bootstrap(client, production)
    assert str(e.value) == f"Vault {ADDR}: sys/mounts: Vault is sealed (unseal it: `vault operator unseal` on each pod)"


def test_two_apps_claiming_one_role_are_refused(vault, client, tmp_path):
    text = (
        (FIXTURES / "Pulumi.vaultdb.yaml")
        .read_text()
        .replace("        path: billing\n", "        path: billing\n        role: orders\n")
    )
    f = tmp_path / "Pulumi.clash.yaml"
    f.write_text(text)
    with pytest.raises(KsecretsError) as e:
        bootstrap(client, load_stack_file(f))
    assert str(e.value) == (
        "Pulumi.clash.yaml: apps: Vault role 'orders' would serve both shop/orders and "
        "billing/billing; set vault.role on one of them"
    )
    assert vault.log == []


def test_cli_bootstrap_twice(cli, vault, vault_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA)
    args = (
        "vault",
        "bootstrap",
        "--stack",
        "production",
        "--kube-host",
        HOST,
        "--kube-ca-file",
        str(ca),
        "--root",
        str(PROD_ROOT),
    )
    r = cli(*args)
    assert (r.code, r.err) == (0, "")
    assert r.out.splitlines() == [
        "changed: secrets engine secret/ (kv v2)",
        "changed: auth method kubernetes/ (kubernetes)",
        f"changed: auth kubernetes/config (host {HOST})",
        "changed: policy ksecrets-my-app",
        "changed: role my-app (my-app/my-app)",
        "changed: audit device file/ (/vault/audit/vault-audit.log)",
        "6 changed, 0 already as configured",
    ]
    assert vault.objects["auth/kubernetes/config"] == {"kubernetes_host": HOST, "kubernetes_ca_cert": CA}
    r = cli(*args)
    assert (r.code, r.out) == (0, "no changes: all 6 items already as configured\n")


def test_cli_bootstrap_rejects_a_ca_file_that_is_not_pem(cli, vault_env, tmp_path):
    bad = tmp_path / "ca.txt"
    bad.write_text("hello")
    r = cli("vault", "bootstrap", "--stack", "production", "--kube-ca-file", str(bad), "--root", str(PROD_ROOT))
    assert (r.code, r.err) == (2, f"ksecrets: {bad}: not a PEM certificate\n")


def test_really_unreachable_vault(vault_env, monkeypatch, production):
    # No mock: a real connection to a closed local port.
    from ksecrets.vault.client import make_client

    c = make_client(production.vault, env={"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "t"})
    with pytest.raises(KsecretsError) as e:
        bootstrap(c, production)
    assert str(e.value) == (
        "Vault http://127.0.0.1:9: sys/mounts: unreachable (connection failed; check VAULT_ADDR "
        "and that Vault is running)"
    )


# --- a Vault outside the cluster: the token reviewer JWT -------------------------------------------
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2YXVsdCJ9.c2lnbmF0dXJlLW5ldmVyLXNob3du"  # ksecrets: allow credential (a made-up JWT)


def test_token_reviewer_jwt_is_sent_and_written_on_every_run(vault, client, production):
    report = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA, token_reviewer_jwt=JWT)
    assert (
        "POST",
        "auth/kubernetes/config",
        {"kubernetes_host": HOST, "kubernetes_ca_cert": CA, "token_reviewer_jwt": JWT},
    ) in vault.log
    item = f"auth kubernetes/config (host {HOST}, token reviewer JWT: write-only, written on every run)"
    assert item in report.changed
    # Vault never returns the JWT, so bootstrap cannot tell it is the same: it writes it again,
    # and nothing else.
    vault.log.clear()
    again = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA, token_reviewer_jwt=JWT)
    assert [(m, p) for m, p, _ in vault.writes()] == [("POST", "auth/kubernetes/config")]
    assert again.changed == [item]


def test_without_the_jwt_a_jwt_set_before_is_removed(vault, client, production):
    bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA, token_reviewer_jwt=JWT)
    vault.log.clear()
    report = bootstrap(client, production, kube_host=HOST, kube_ca_pem=CA)
    assert vault.writes() == [("POST", "auth/kubernetes/config", {"kubernetes_host": HOST, "kubernetes_ca_cert": CA})]
    assert report.changed == [f"auth kubernetes/config (host {HOST})"]


def test_cli_token_reviewer_jwt_file(cli, vault, vault_env, tmp_path):
    jwt_file = tmp_path / "reviewer.jwt"
    jwt_file.write_text(JWT + "\n")
    r = cli(
        "vault",
        "bootstrap",
        "--stack",
        "production",
        "--kube-host",
        HOST,
        "--token-reviewer-jwt-file",
        str(jwt_file),
        "--root",
        str(PROD_ROOT),
    )
    assert (r.code, r.err) == (0, "")
    assert vault.objects["auth/kubernetes/config"] == {"kubernetes_host": HOST, "token_reviewer_jwt_set": True}
    assert JWT not in r.out


@pytest.mark.parametrize(
    "content, reason",
    [
        ("", "the token reviewer JWT file is empty"),
        (
            "not-a-jwt-but-a-secret",
            "not a JWT (expected one line of three dot-separated parts, as `kubectl create token` prints)",
        ),
        ("a.b c.d", "not a JWT (expected one line of three dot-separated parts, as `kubectl create token` prints)"),
    ],
)
def test_cli_token_reviewer_jwt_file_bad_input(cli, vault, vault_env, tmp_path, content, reason):
    jwt_file = tmp_path / "reviewer.jwt"
    jwt_file.write_text(content)
    r = cli(
        "vault",
        "bootstrap",
        "--stack",
        "production",
        "--token-reviewer-jwt-file",
        str(jwt_file),
        "--root",
        str(PROD_ROOT),
    )
    assert (r.code, r.out, r.err) == (2, "", f"ksecrets: {jwt_file}: {reason}\n")
    assert vault.log == []


def test_cli_token_reviewer_jwt_file_missing(cli, vault, vault_env, tmp_path):
    missing = tmp_path / "nope.jwt"
    r = cli(
        "vault",
        "bootstrap",
        "--stack",
        "production",
        "--token-reviewer-jwt-file",
        str(missing),
        "--root",
        str(PROD_ROOT),
    )
    assert (r.code, r.err) == (
        2,
        f"ksecrets: {missing}: cannot read the token reviewer JWT file (No such file or directory)\n",
    )

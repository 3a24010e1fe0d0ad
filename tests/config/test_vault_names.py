"""Every name from the stack file that becomes part of a Vault request path is validated when the
stack loads (Vault's own name rule: the SDK's GenericNameRegex), so `role: ../../sys/policies/acl/x`
can never reach `auth/<mount>/role/<role>`: one line naming the file and key, exit 2."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import ROOT, run_ksecrets

BASE = yaml.safe_load((ROOT / "tests/fixtures/full-vault-stack.yaml").read_text())
P = "k8s-secrets:"
NAME = "letters, digits, '_', '-', '.'; first and last a letter, digit or '_'"


def _with(edit) -> dict:
    doc = copy.deepcopy(BASE)
    edit(doc["config"])
    return doc


def _app_vault(key, value):
    return lambda c: c[P + "apps"][0]["vault"].__setitem__(key, value)


def _vault(key, value):
    return lambda c: c[P + "vault"].__setitem__(key, value)


def _dynamic(key, value):
    return lambda c: c[P + "apps"][0]["vault"]["dynamic"][0].__setitem__(key, value)


def _database(key, value):
    return lambda c: c[P + "vault"]["database"].__setitem__(key, value)


def _path_msg(value):
    return f"\"{value}\" is not a Vault secret path (relative, no leading or trailing '/'; each '/'-separated part: {NAME})"


def _mount_msg(value):
    return f"\"{value}\" is not a Vault mount path (no leading or trailing '/'; each '/'-separated part: {NAME})"


def _name_msg(value):
    return f'"{value}" is not a Vault name ({NAME}; at most 128 characters)'


BAD = [
    (
        "role-traversal",
        _app_vault("role", "../../sys/policies/acl/x"),
        "apps[0].vault.role",
        _name_msg("../../sys/policies/acl/x"),
    ),
    ("role-slash", _app_vault("role", "shop/admin"), "apps[0].vault.role", _name_msg("shop/admin")),
    ("role-space", _app_vault("role", "shop admin"), "apps[0].vault.role", _name_msg("shop admin")),
    ("role-dot-end", _app_vault("role", "shop."), "apps[0].vault.role", _name_msg("shop.")),
    (
        "path-traversal",
        _app_vault("path", "shop/../../sys/policies/acl/x"),
        "apps[0].vault.path",
        _path_msg("shop/../../sys/policies/acl/x"),
    ),
    ("path-absolute", _app_vault("path", "/shop"), "apps[0].vault.path", _path_msg("/shop")),
    ("path-empty-part", _app_vault("path", "team//shop"), "apps[0].vault.path", _path_msg("team//shop")),
    ("path-dot", _app_vault("path", "./shop"), "apps[0].vault.path", _path_msg("./shop")),
    ("path-query", _app_vault("path", "shop?version=1"), "apps[0].vault.path", _path_msg("shop?version=1")),
    ("dynamic-role", _dynamic("role", "../creds/admin"), "apps[0].vault.dynamic[0].role", _name_msg("../creds/admin")),
    ("dynamic-mount", _dynamic("mount", "../sys"), "apps[0].vault.dynamic[0].mount", _mount_msg("../sys")),
    ("kv-mount-traversal", _vault("kvMount", "secret/.."), "vault.kvMount", _mount_msg("secret/..")),
    (
        "kv-mount-sys",
        _vault("kvMount", "sys"),
        "vault.kvMount",
        '"sys" is not a Vault mount path: sys/ is Vault\'s own',
    ),
    (
        "kv-mount-auth",
        _vault("kvMount", "auth/kubernetes"),
        "vault.kvMount",
        '"auth/kubernetes" is not a Vault mount path: auth/ is Vault\'s own',
    ),
    ("auth-mount", _vault("authMount", "kubernetes/../../sys"), "vault.authMount", _mount_msg("kubernetes/../../sys")),
    (
        "db-mount",
        _database("mount", "identity"),
        "vault.database.mount",
        '"identity" is not a Vault mount path: identity/ is Vault\'s own',
    ),
    (
        "db-connection",
        _database("connectionName", "orders/../x"),
        "vault.database.connectionName",
        _name_msg("orders/../x"),
    ),
]


@pytest.mark.parametrize("case_id,edit,key,problem", BAD, ids=[c[0] for c in BAD])
def test_a_name_that_would_leave_its_vault_path_fails_to_load(tmp_path, cli, case_id, edit, key, problem):
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(_with(edit), sort_keys=False))
    result = cli("export", "--root", str(tmp_path))
    assert (result.code, result.out) == (2, "")
    assert result.err == f"ksecrets: Pulumi.test.yaml: {key}: {problem}\n"
    assert not (tmp_path / "k8s").exists()


@pytest.mark.parametrize(
    "edit",
    [
        _app_vault("role", "shop.reader_1"),
        _app_vault("path", "team-a/shop.v2/db_creds"),
        _vault("kvMount", "kv/team-a"),
        _vault("authMount", "k8s-prod"),
        _dynamic("role", "shop_ro"),
        _database("connectionName", "orders.db"),
    ],
)
def test_ordinary_names_still_load(tmp_path, cli, edit):
    (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump(_with(edit), sort_keys=False))
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 0, result.err


def test_the_issues_example_in_a_real_process(tmp_path):
    (tmp_path / "Pulumi.test.yaml").write_text(
        yaml.safe_dump(_with(_app_vault("role", "../../sys/policies/acl/x")), sort_keys=False)
    )
    proc = run_ksecrets(
        "vault",
        "bootstrap",
        "--stack",
        "test",
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "t"},
    )
    assert proc.returncode == 2
    assert proc.stderr == f"ksecrets: Pulumi.test.yaml: apps[0].vault.role: {_name_msg('../../sys/policies/acl/x')}\n"

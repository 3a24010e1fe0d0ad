"""One Vault, several clusters: `vault bootstrap` of each cluster of a fleet (stacks that extend one
environment file) at the HTTP boundary. Each cluster gets its own kubernetes auth mount and roles,
policies are shared where clusters grant the same path and separate where they differ, a run of
one cluster never writes what another uses, and re-runs write nothing. tests/e2e/test_vault_fleet.py
proves the same against a real Vault and two real API servers (logins refused across clusters)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.errors import ConfigError, KsecretsError
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.usecases.vault_bootstrap import bootstrap
from tests.conftest import ROOT

CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
HOSTS = {"prod-a": "https://10.0.0.1:6443", "prod-b": "https://10.0.1.1:6443", "prod-c": "https://10.0.2.1:6443"}


def _app(name: str, path: str, rotate: bool = False) -> dict[str, Any]:
    app: dict[str, Any] = {
        "name": name,
        "namespace": name,
        "serviceAccount": name,
        "secretName": f"{name}-secrets",
        "keys": ["API_KEY"],
        "vault": {"path": path},
    }
    if rotate:
        app["rotation"] = [{"key": "API_KEY"}]
    return app


ENVIRONMENT = {
    "backend": "vault",
    "vault": {"tls": {"enabled": True}, "kvMount": "secret", "audience": "vault"},
    "apps": [_app("my-app", "my-app", rotate=True), _app("billing", "billing")],
}


def write_fleet(root: Path, stacks: dict[str, dict[str, Any]], environment: dict[str, Any] = ENVIRONMENT) -> None:
    """environments/production.yaml and one `Pulumi.<stack>.yaml` per cluster extending it."""
    shutil.copy2(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "environments").mkdir(exist_ok=True)
    (root / "environments" / "production.yaml").write_text(yaml.safe_dump(environment, sort_keys=False))
    for stack, own in stacks.items():
        config = {"kubernetes:context": stack, "k8s-secrets:extends": "environments/production.yaml"}
        config.update({f"k8s-secrets:{k}": v for k, v in own.items()})
        (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))


# prod-b keeps my-app's path (shared policy) but reads billing from its own path.
STACKS = {
    "prod-a": {},
    "prod-b": {"apps": [_app("my-app", "my-app", rotate=True), _app("billing", "billing-eu-b")]},
}


@pytest.fixture
def fleet(tmp_path) -> Path:
    write_fleet(tmp_path, STACKS)
    return tmp_path


def _run(client, root: Path, stack: str):
    return bootstrap(client, load_stack_file(root / f"Pulumi.{stack}.yaml"), kube_host=HOSTS[stack], kube_ca_pem=CA)


def _role(vault, stack: str, role: str) -> dict[str, Any]:
    return vault.objects[f"auth/kubernetes-{stack}/role/{role}"]


def _cluster_state(vault, stack: str) -> dict[str, Any]:
    """Everything a cluster's logins depend on: its mount, its config and roles, their policies."""
    prefix = f"auth/kubernetes-{stack}/"
    objects = {p: v for p, v in vault.objects.items() if p.startswith(prefix)}
    policies = {n for p, v in objects.items() if "/role/" in p for n in v["token_policies"]}
    return copy.deepcopy(
        {
            "mount": vault.auth.get(f"kubernetes-{stack}"),
            "objects": objects,
            "policies": {n: vault.policies.get(n) for n in sorted(policies)},
        }
    )


def test_each_cluster_has_its_own_mount_roles_and_the_policies_of_its_own_paths(vault, client, fleet):
    _run(client, fleet, "prod-a")
    _run(client, fleet, "prod-b")
    for stack in ("prod-a", "prod-b"):
        assert vault.auth[f"kubernetes-{stack}"]["description"] == f"ksecrets: cluster {stack}"
        assert vault.objects[f"auth/kubernetes-{stack}/config"]["kubernetes_host"] == HOSTS[stack]
        for role in ("my-app", "my-app-rotator", "billing"):
            body = _role(vault, stack, role)
            assert body["bound_service_account_namespaces"] == [role.removesuffix("-rotator")]
    assert "kubernetes" not in vault.auth  # no cluster logs in at a shared default mount
    # my-app reads the same path on both clusters: one policy, shared; billing's paths differ.
    for role in ("my-app", "my-app-rotator"):
        assert _role(vault, "prod-a", role)["token_policies"] == _role(vault, "prod-b", role)["token_policies"]
    (a_billing,) = _role(vault, "prod-a", "billing")["token_policies"]
    (b_billing,) = _role(vault, "prod-b", "billing")["token_policies"]
    assert a_billing != b_billing and a_billing.startswith("ksecrets-billing-")
    assert 'path "secret/data/billing"' in vault.policies[a_billing]
    assert 'path "secret/data/billing-eu-b"' in vault.policies[b_billing]
    # no policy of one cluster's role grants the other's differing path
    assert "billing-eu-b" not in vault.policies[a_billing] and '"secret/data/billing"' not in vault.policies[b_billing]
    (shared,) = _role(vault, "prod-a", "my-app")["token_policies"]
    assert vault.policies[shared] == (
        "# ksecrets, environment production: Vault role my-app reads its own secret, nothing else.\n"
        'path "secret/data/my-app" {\n  capabilities = ["read"]\n}\n'
    )
    ksecrets_policies = sorted(n for n in vault.policies if n.startswith("ksecrets-"))
    assert len(ksecrets_policies) == 4  # my-app, my-app-rotator shared; billing once per cluster


def test_a_then_b_then_a_again_writes_nothing_and_b_never_touches_a(vault, client, fleet):
    _run(client, fleet, "prod-a")
    a_before = _cluster_state(vault, "prod-a")
    n = len(vault.log)
    report_b = _run(client, fleet, "prod-b")
    b_writes = [(m, p) for m, p, _ in vault.log[n:] if m != "GET"]
    assert report_b.any_changes and b_writes
    assert not [p for _, p in b_writes if p.startswith(("auth/kubernetes-prod-a", "sys/auth/kubernetes-prod-a"))]
    assert not [p for _, p in b_writes if p.removeprefix("sys/policies/acl/") in a_before["policies"]]
    assert _cluster_state(vault, "prod-a") == a_before
    b_after = _cluster_state(vault, "prod-b")
    for stack in ("prod-a", "prod-b", "prod-a", "prod-b"):
        n = len(vault.log)
        report = _run(client, fleet, stack)
        assert vault.log[n:] and all(m == "GET" for m, _, _ in vault.log[n:]), vault.log[n:]
        assert report.changed == []
    assert _cluster_state(vault, "prod-a") == a_before and _cluster_state(vault, "prod-b") == b_after


def test_a_mount_another_cluster_made_is_refused_not_reconfigured(vault, client, tmp_path):
    # prod-c names prod-a's mount by mistake: its run must not point that mount at its API server.
    write_fleet(tmp_path, {**STACKS, "prod-c": {"vault": {"authMount": "kubernetes-prod-a"}}})
    _run(client, tmp_path, "prod-a")
    a_before = _cluster_state(vault, "prod-a")
    n = len(vault.log)
    with pytest.raises(KsecretsError) as err:
        _run(client, tmp_path, "prod-c")
    assert str(err.value) == (
        "Vault http://vault.test:8200: sys/auth/kubernetes-prod-a: kubernetes-prod-a/ serves cluster 'prod-a', "
        "not 'prod-c' (its description); bootstrap will not reconfigure it: give each cluster its own "
        "vault.authMount (default kubernetes-<stack> for a stack that extends an environment)"
    )
    assert [(m, p) for m, p, _ in vault.log[n:] if m != "GET"] == []  # refused before any write
    assert _cluster_state(vault, "prod-a") == a_before


def test_an_environment_cannot_hold_the_auth_mount(tmp_path):
    env = copy.deepcopy(ENVIRONMENT)
    env["vault"]["authMount"] = "kubernetes"
    write_fleet(tmp_path, {"prod-a": {}}, environment=env)
    with pytest.raises(ConfigError) as err:
        load_stack_file(tmp_path / "Pulumi.prod-a.yaml")
    assert str(err.value).startswith(
        "environments/production.yaml: line 7: vault.authMount: is each cluster's own, not the environment's"
    )


def test_the_exported_objects_name_the_clusters_own_mount(fleet):
    for stack in ("prod-a", "prod-b"):
        cfg = load_stack_file(fleet / f"Pulumi.{stack}.yaml")
        objects = [p.obj for p in plan_stack(cfg)]
        auths = [o for o in objects if o["kind"] == "VaultAuth"]
        assert sorted(a["metadata"]["name"] for a in auths) == ["billing", "my-app"]
        assert {a["spec"]["mount"] for a in auths} == {f"kubernetes-{stack}"}
        envs = [
            e
            for o in objects
            if o["kind"] == "CronJob"
            for c in o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if e["name"] == "KSECRETS_VAULT_AUTH_MOUNT"
        ]
        assert envs and {e["value"] for e in envs} == {f"kubernetes-{stack}"}  # the rotator logs in there too
    # a stack that extends nothing keeps `kubernetes`
    prod = load_stack_file(ROOT / "Pulumi.production.yaml")
    assert prod.environment == "" and prod.vault is not None and prod.vault.auth_mount == "kubernetes"


def test_a_fleet_stack_without_a_vault_section_gets_its_own_mount_too(tmp_path):
    env = {k: v for k, v in ENVIRONMENT.items() if k != "vault"}
    write_fleet(tmp_path, {"prod-a": {}}, environment=env)
    cfg = load_stack_file(tmp_path / "Pulumi.prod-a.yaml")
    assert cfg.environment == "production" and cfg.vault is not None and cfg.vault.auth_mount == "kubernetes-prod-a"

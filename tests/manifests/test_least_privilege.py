"""Least privilege, checked on every Role of every stack (the repository's and the fixtures'),
both as exported and as registered under Pulumi mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.platform import Platform
from ksecrets.config import load_stack_file, stack_files
from ksecrets.usecases.stack_facts import plan_stack
from tests.conftest import ROOT
from tests.pulumi_harness import run_program

FIXTURES = ROOT / "tests" / "fixtures"


def _all_stacks(tmp_path_factory) -> list:
    stacks = [load_stack_file(p) for p in stack_files(ROOT)]
    d = tmp_path_factory.mktemp("stacks")
    for fixture in ("minimal-stack.yaml", "full-vault-stack.yaml"):
        target = d / f"Pulumi.{Path(fixture).stem}.yaml"
        target.write_text((FIXTURES / fixture).read_text())
        stacks.append(load_stack_file(target))
    return stacks


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    return _all_stacks(tmp_path_factory)


def _roles(objs):
    return [o for o in objs if o["kind"] in ("Role", "ClusterRole")]


def _check_role(role: dict) -> None:
    from policy.rules import is_key_backup_role

    name = f"{role['kind']} {role['metadata'].get('namespace', '')}/{role['metadata']['name']}"
    if is_key_backup_role(f"kubernetes:rbac.authorization.k8s.io/v1:{role['kind']}", role):
        return  # the one documented exception (ksecrets.manifests.keybackup), exactly list on secrets
    for rule in role.get("rules", []):
        verbs, resources = set(rule.get("verbs", [])), set(rule.get("resources", []))
        assert "*" not in verbs, f"{name} grants every verb"
        assert "*" not in resources, f"{name} grants every resource"
        assert "*" not in set(rule.get("apiGroups", [])), f"{name} grants every API group"
        if "secrets" in resources:
            assert not verbs & {"list", "watch"}, f"{name} may list or watch secrets"
            assert rule.get("resourceNames"), f"{name} may read secrets without naming them"


def test_no_role_lists_watches_or_wildcards(stacks):
    checked = 0
    for cfg in stacks:
        for role in _roles(p.obj for p in plan_stack(cfg)):
            _check_role(role)
            checked += 1
    assert checked >= 5  # every app of every stack has a Role


def test_the_check_itself_catches_violations():
    bad = {
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "n"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["x"], "verbs": ["get", "list"]}],
    }
    with pytest.raises(AssertionError, match="may list or watch secrets"):
        _check_role(bad)
    bad["rules"][0]["verbs"] = ["*"]
    with pytest.raises(AssertionError, match="every verb"):
        _check_role(bad)
    bad["rules"][0].update(verbs=["get"], resourceNames=[])
    with pytest.raises(AssertionError, match="without naming them"):
        _check_role(bad)


def test_app_roles_name_exactly_the_apps_own_secrets(stacks):
    for cfg in stacks:
        objs = [p.obj for p in plan_stack(cfg)]
        for app in cfg.apps:
            role = next(
                o
                for o in objs
                if o["kind"] == "Role"
                and o["metadata"]["name"] == f"{app.name}-secret-reader"
                and o["metadata"]["namespace"] == app.namespace
            )
            (rule,) = role["rules"]
            expected = {app.secret_name} | ({d.name for d in app.vault.dynamic} if app.vault else set())
            assert rule == {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": sorted(expected),
                "verbs": ["get"],
            }
            binding = next(
                o
                for o in objs
                if o["kind"] == "RoleBinding"
                and o["metadata"]["name"] == role["metadata"]["name"]
                and o["metadata"]["namespace"] == app.namespace
            )
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role["metadata"]["name"],
            }
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": app.service_account, "namespace": app.namespace}
            ]


def test_deployments_run_under_their_apps_service_account(stacks):
    for cfg in stacks:
        objs = [p.obj for p in plan_stack(cfg)]
        accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "ServiceAccount"}
        for app in cfg.apps:
            for d in app.deployments:
                obj = next(
                    o
                    for o in objs
                    if o["kind"] == "Deployment"
                    and o["metadata"]["name"] == d.name
                    and o["metadata"]["namespace"] == app.namespace
                )
                sa = obj["spec"]["template"]["spec"]["serviceAccountName"]
                assert sa == app.service_account and (app.namespace, sa) in accounts


def test_registered_roles_under_pulumi_are_least_privilege_too(stacks):
    for cfg in stacks:
        mocks, _ = run_program(lambda cfg=cfg: Platform(cfg.stack, cfg), stack=cfg.stack)
        roles = [
            r.inputs
            for r in mocks.resources
            if r.type
            in ("kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
        ]
        assert roles
        for role in roles:
            _check_role(role)

"""Clusters as stacks of an environment: `k8s-secrets:extends: environments/<env>.yaml`, the merge,
its errors, `stack new --env`, and the selectors (`--stack`, `--env`, `--all-stacks`)."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets.config import environments, load_stack_file
from ksecrets.config.selection import Selector, fleet, select
from ksecrets.errors import KsecretsError
from tests.conftest import ROOT, ksecrets_in_process


def _stack_config(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]


# --- the merge --------------------------------------------------------------------------------------

_keys = st.sampled_from(["a", "b", "c", "d"])
_leaf = st.one_of(st.integers(0, 3), st.sampled_from(["x", "y"]), st.lists(st.integers(0, 2), max_size=2), st.none())
_tree = st.recursive(_leaf, lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8)
_maps = st.dictionaries(_keys, _tree, max_size=4)


def _check(merged: dict, base: dict, override: dict) -> None:
    """The rule, key by key: a key one side sets is that side's; a key both set is merged when
    both values are mappings, else the stack's (override's)."""
    assert set(merged) == set(base) | set(override)  # nothing invented, nothing lost
    for key, value in merged.items():
        if key not in override:
            assert value == base[key]
        elif isinstance(override[key], dict) and isinstance(base.get(key), dict):
            _check(value, base[key], override[key])
        else:
            assert value == override[key]


@settings(max_examples=300, deadline=None)
@given(base=_maps, override=_maps)
def test_merge_keeps_every_override_and_every_unshadowed_base_value(base, override):
    before = copy.deepcopy((base, override))
    merged = environments.merge(base, override)
    _check(merged, base, override)
    assert (base, override) == before  # inputs untouched
    assert environments.merge(merged, override) == merged  # the stack's keys again change nothing
    assert environments.merge(base, {}) == base and environments.merge({}, override) == override


# --- a stack split into environment + cluster gives the same model -------------------------------------

_INHERITABLE = [
    k.removeprefix("k8s-secrets:")
    for k in _stack_config("staging")
    if k.startswith("k8s-secrets:") and k.removeprefix("k8s-secrets:") not in environments.NOT_INHERITED
]
_DECOYS = {"backend": "manual", "apps": [], "allowPlaceholders": []}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fleet")
    shutil.copy2(ROOT / "Pulumi.yaml", d)
    shutil.copytree(ROOT / "certs", d / "certs")
    (d / "environments").mkdir()
    return d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    placement=st.fixed_dictionaries({k: st.sampled_from(["stack", "env", "split"]) for k in _INHERITABLE}),
    data=st.data(),
)
def test_any_split_into_environment_and_stack_loads_the_same_model(fleet_dir, placement, data):
    """Every inheritable key of staging moved to the environment, kept in the stack, or split
    between both (a mapping's keys divided; a list or string with a decoy under the stack's value):
    the merged model is the unsplit stack's."""
    original = _stack_config("staging")
    (fleet_dir / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": original}))
    expected = load_stack_file(fleet_dir / "Pulumi.staging.yaml")
    stack: dict[str, Any] = {k: v for k, v in original.items() if not k.startswith("k8s-secrets:")}
    stack["k8s-secrets:extends"] = "environments/staging.yaml"
    stack["k8s-secrets:sealed"] = original["k8s-secrets:sealed"]
    env: dict[str, Any] = {}
    for key, where in placement.items():
        value = original["k8s-secrets:" + key]
        if where == "stack":
            stack["k8s-secrets:" + key] = value
        elif where == "env":
            env[key] = value
        elif isinstance(value, dict):
            to_env = data.draw(st.sets(st.sampled_from(sorted(value))), label=key) if value else set()
            env[key] = {k: v for k, v in value.items() if k in to_env}
            stack["k8s-secrets:" + key] = {k: v for k, v in value.items() if k not in to_env}
        else:
            env[key] = _DECOYS.get(key, value)
            stack["k8s-secrets:" + key] = value
    (fleet_dir / "environments" / "staging.yaml").write_text(yaml.safe_dump(env))
    (fleet_dir / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": stack}))
    merged = load_stack_file(fleet_dir / "Pulumi.staging.yaml")
    assert merged.environment == "staging" and expected.environment == ""  # the one difference: what it extends
    assert dataclasses.replace(merged, environment="") == expected


# --- errors name the environment file ----------------------------------------------------------------


@pytest.fixture
def prod_fleet(repo_copy: Path) -> Path:
    for name, env in (("prod-eu-2", "production"), ("stg-2", "staging")):
        res = ksecrets_in_process("stack", "new", name, "--env", env, "--root", str(repo_copy))
        assert res.returncode == 0, res.stderr
    return repo_copy


def test_stack_new_env_writes_the_environment_and_a_small_cluster_stack(prod_fleet):
    env = yaml.safe_load((prod_fleet / "environments" / "production.yaml").read_text())
    assert env["backend"] == "vault" and [a["name"] for a in env["apps"]] == ["my-app"]
    assert "sealed" not in env and "manualValues" not in env
    stack = yaml.safe_load((prod_fleet / "Pulumi.prod-eu-2.yaml").read_text())["config"]
    assert stack == {"kubernetes:context": "prod-eu-2", "k8s-secrets:extends": "environments/production.yaml"}
    stg = yaml.safe_load((prod_fleet / "Pulumi.stg-2.yaml").read_text())["config"]
    assert stg["k8s-secrets:sealedSecrets"] == {"certificate": "certs/stg-2.pem"}
    assert "k8s-secrets:sealed" not in stg  # staging's ciphertexts are for staging's key only
    cfg = load_stack_file(prod_fleet / "Pulumi.prod-eu-2.yaml")
    prod = load_stack_file(prod_fleet / "Pulumi.production.yaml")
    assert cfg.apps == prod.apps and cfg.rotation == prod.rotation
    # Everything of Vault but the auth mount: each cluster logs in at its own (one Vault, many clusters).
    assert "authMount" not in env["vault"] and prod.vault.auth_mount == "kubernetes"
    assert cfg.vault == dataclasses.replace(prod.vault, auth_mount="kubernetes-prod-eu-2")
    # A second cluster reuses the environment file as it is.
    before = (prod_fleet / "environments" / "production.yaml").read_bytes()
    res = ksecrets_in_process("stack", "new", "prod-us-1", "--env", "production", "--root", str(prod_fleet))
    assert res.returncode == 0, res.stderr
    assert (prod_fleet / "environments" / "production.yaml").read_bytes() == before
    assert fleet(prod_fleet) == {
        "prod-eu-2": "production",
        "prod-us-1": "production",
        "production": "production",
        "staging": "staging",
        "stg-2": "staging",
    }


def test_stack_new_env_refuses_a_missing_environment_and_a_backend_mismatch(repo_copy):
    res = ksecrets_in_process("stack", "new", "x-1", "--env", "nowhere", "--root", str(repo_copy))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "ksecrets: --env nowhere: neither environments/nowhere.yaml nor a stack nowhere (Pulumi.nowhere.yaml) "
        "to make it from"
    )
    res = ksecrets_in_process(
        "stack", "new", "x-1", "--env", "production", "--backend", "manual", "--root", str(repo_copy)
    )
    assert res.returncode == 2 and "has backend vault" in res.stderr
    assert not (repo_copy / "Pulumi.x-1.yaml").exists() and not (repo_copy / "environments").exists()


def test_a_bad_inherited_value_names_the_environment_file_and_line(prod_fleet):
    path = prod_fleet / "environments" / "production.yaml"
    text = path.read_text()
    path.write_text(text.replace("namespace: monitoring", "namespace: Not_A_Label", 1))
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if "Not_A_Label" in l)
    res = ksecrets_in_process("export", "--check", "--stack", "prod-eu-2", "--root", str(prod_fleet))
    assert res.returncode == 2
    assert res.stderr.startswith(f"ksecrets: environments/production.yaml: line {line}: monitoring.namespace: ")
    assert "Not_A_Label" in res.stderr  # a name, not a value
    # The stack that overrides it is not affected by the environment's bad value.
    stack = prod_fleet / "Pulumi.prod-eu-2.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["k8s-secrets:monitoring"] = {"namespace": "monitoring"}
    stack.write_text(yaml.safe_dump(doc))
    assert load_stack_file(stack).monitoring.namespace == "monitoring"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("sealed: []\n", "sealed: cannot be in an environment file (values are per cluster)"),
        ("manualValues: {}\n", "manualValues: cannot be in an environment file (values are per cluster)"),
        (
            "extends: environments/x.yaml\n",
            "extends: cannot be in an environment file (an environment extends nothing)",
        ),
        ("appz: []\n", 'appz: unknown key (did you mean "apps"?)'),
        ("- 1\n", "must be a mapping of the keys a stack's config holds, not a list"),
    ],
)
def test_what_an_environment_file_cannot_hold(prod_fleet, content, problem):
    (prod_fleet / "environments" / "production.yaml").write_text(content)
    with pytest.raises(KsecretsError) as exc:
        load_stack_file(prod_fleet / "Pulumi.prod-eu-2.yaml")
    assert str(exc.value).startswith("environments/production.yaml")
    assert problem in str(exc.value) and len(str(exc.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("../outside.yaml", "leaves the project folder"),
        ("/etc/passwd.yaml", "must be relative"),
        ("environments/missing.yaml", "no such file"),
        ("Pulumi.staging.yaml", "must name a .yaml file that is not a Pulumi stack or project file"),
    ],
)
def test_bad_extends_references_are_one_line_naming_the_stack_file(prod_fleet, ref, problem):
    stack = prod_fleet / "Pulumi.prod-eu-2.yaml"
    stack.write_text(stack.read_text().replace("environments/production.yaml", ref))
    res = ksecrets_in_process("export", "--check", "--stack", "prod-eu-2", "--root", str(prod_fleet))
    assert res.returncode == 2
    assert res.stderr.startswith("ksecrets: Pulumi.prod-eu-2.yaml: extends: ") and problem in res.stderr
    assert len(res.stderr.splitlines()) == 1


# --- selectors ------------------------------------------------------------------------------------------


def test_selectors_resolve_stacks_environments_and_all(prod_fleet):
    assert select(prod_fleet, Selector()) is None  # the command's default: every stack
    assert select(prod_fleet, Selector(envs=("production",))) == ["prod-eu-2", "production"]
    assert select(prod_fleet, Selector(stacks=("staging",), envs=("production",))) == [
        "prod-eu-2",
        "production",
        "staging",
    ]
    assert select(prod_fleet, Selector(all_stacks=True)) == ["prod-eu-2", "production", "staging", "stg-2"]
    with pytest.raises(
        KsecretsError, match=r"--env nope: no stack of that environment \(environments: production, staging\)"
    ):
        select(prod_fleet, Selector(envs=("nope",)))
    with pytest.raises(KsecretsError, match="not both"):
        select(prod_fleet, Selector(envs=("staging",), all_stacks=True))
    with pytest.raises(KsecretsError, match="Pulumi.nope.yaml: no such stack file"):
        select(prod_fleet, Selector(stacks=("nope",)))


def test_export_and_verify_take_env(prod_fleet):
    res = ksecrets_in_process("export", "--env", "production", "--root", str(prod_fleet))
    assert res.returncode == 0, res.stderr
    assert {p.name for p in (prod_fleet / "k8s").iterdir()} >= {"prod-eu-2", "production"}
    assert not (prod_fleet / "k8s" / "stg-2").exists()  # not selected: not written
    res = ksecrets_in_process("export", "--check", "--env", "production", "--root", str(prod_fleet))
    assert res.returncode == 0, res.stdout + res.stderr
    res = ksecrets_in_process("verify", "--env", "staging", "--root", str(prod_fleet))
    assert res.returncode == 1  # stg-2 has no certificate yet
    assert [l.split(":")[0] for l in res.stdout.splitlines()] == ["staging", "staging", "stg-2"]
    res = ksecrets_in_process("verify", "--env", "nope", "--root", str(prod_fleet))
    assert res.returncode == 2 and res.stderr.startswith("ksecrets: --env nope: no stack of that environment")


def test_a_stack_extending_nothing_is_its_own_environment(repo_copy):
    assert fleet(repo_copy) == {"production": "production", "staging": "staging"}
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(KsecretsError, match="no stack files"):
            select(d, Selector(envs=("x",)))


def test_app_add_on_a_cluster_that_inherits_its_apps_is_refused(prod_fleet):
    """Its own one-app list would replace the environment's apps: refused, nothing written."""
    before = (prod_fleet / "Pulumi.prod-eu-2.yaml").read_bytes()
    res = ksecrets_in_process(
        "app", "add", "--stack", "prod-eu-2", "--name", "web", "--namespace", "web", "--root", str(prod_fleet)
    )
    assert res.returncode == 2
    assert "its apps come from environments/production.yaml: add the app there" in res.stderr
    assert (prod_fleet / "Pulumi.prod-eu-2.yaml").read_bytes() == before

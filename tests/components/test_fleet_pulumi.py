"""Pulumi's path and export's path resolve a cluster stack's `extends` into the same merged config
(the engine passes `k8s-secrets:extends` as the plain string the stack file holds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.pulumi_source import load_from_pulumi
from ksecrets.config import load_stack_file
from tests.conftest import ksecrets_in_process
from tests.pulumi_harness import run_program


@pytest.fixture
def fleet_repo(repo_copy: Path) -> Path:
    for name, env in (("prod-eu-2", "production"), ("stg-2", "staging")):
        res = ksecrets_in_process("stack", "new", name, "--env", env, "--root", str(repo_copy))
        assert res.returncode == 0, res.stderr
    # A cluster's own override on top of what it inherits.
    stack = repo_copy / "Pulumi.stg-2.yaml"
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["k8s-secrets:monitoring"] = {"namespace": "observability"}
    stack.write_text(yaml.safe_dump(doc))
    return repo_copy


@pytest.mark.parametrize("stack", ["prod-eu-2", "stg-2"])
def test_the_pulumi_program_and_export_see_the_same_merged_config(fleet_repo, monkeypatch, stack):
    monkeypatch.chdir(fleet_repo)  # the engine runs the program in the project folder
    config = yaml.safe_load((fleet_repo / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert config["k8s-secrets:extends"].startswith("environments/")
    holder = {}
    run_program(lambda: holder.setdefault("cfg", load_from_pulumi()[0]), stack=stack, config=config)
    from_file = load_stack_file(fleet_repo / f"Pulumi.{stack}.yaml")
    assert holder["cfg"] == from_file
    assert from_file.apps  # inherited, not empty
    if stack == "stg-2":
        assert from_file.monitoring.namespace == "observability"  # the cluster's own
        assert from_file.monitoring.rule_labels == (("release", "prometheus"),)  # the environment's

"""Issue 10: `pulumi install` on a fresh clone sets up what the program needs.

Real: `git clone` of this repository (no .venv), the Pulumi CLI's `pulumi install` and the
Python language host (tools/pulumi*), `python -m venv` and pip against PyPI, then `pulumi
preview --policy-pack policy` of the staging stack against the harness's API server with only
what the install put in the clone's `.venv`.
Simulated, and why (tests/e2e/harness/pulumi.py, `_host_with_runtime_options`): the language
host is the 3.68 one (the newest served as a Go module) and the CLI is 3.274, which no longer
passes Pulumi.yaml's runtime options as flags; a wrapper passes `-virtualenv=.venv -root=<clone>`
as the 3.68 CLI did. Plugins are not downloaded (`--no-plugins`): they are the ones built here.
Slow (one install from PyPI, a few minutes).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux, external_namespaces
from tests.e2e.harness.pulumi import PulumiProject

PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pulumi_install_on_a_fresh_clone_then_preview(cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI)
    work = e2e_dir / "pulumi-install"
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists() and (clone / "requirements.txt").is_file()

    cluster = cluster_factory("pulumi-install")
    bootstrap_flux(cluster)
    for ns in external_namespaces(ROOT, "staging"):
        cluster.ensure_namespace(ns)
    project = PulumiProject(work, bins, "staging", kubeconfig=cluster.kubeconfig, checkout=clone).init()

    project.run("install", "--no-plugins", stack=False, timeout=1800)
    venv = clone / ".venv"
    assert (venv / "pyvenv.cfg").is_file(), "pulumi install made no .venv"
    assert not (clone / "pyvenv.cfg").exists(), "the venv went into the project root"

    # Every pin of pyproject.toml (dependencies and the policy extra) is what the venv holds.
    meta = tomllib.loads((clone / "pyproject.toml").read_text())["project"]
    pins = {
        _norm(name): version
        for name, version in (r.split("==") for r in [*meta["dependencies"], *meta["optional-dependencies"]["policy"]])
    }
    listed = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    installed = {_norm(p["name"]): p["version"] for p in listed}
    assert {n: installed.get(n) for n in pins} == pins
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "show", "k8s-secrets"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Editable project location: {clone}" in shown, shown

    # The program and the policy pack run from that venv alone (PATH has no other one).
    res = project.run("preview", "--policy-pack", project.policy_pack(), timeout=900)
    assert "k8s-secrets-guardrails@v0.1.0" in res.out, res.out[-3000:]
    assert str(ROOT / ".venv") not in (work / "policy-runner" / "run-policy-pack").read_text()

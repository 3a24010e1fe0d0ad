"""The rotation proof of issue 12 against a real Vault (dev server built by `make e2e-tools`) and
the real PostgreSQL server of tests/jobs/rotate: zero failed logins across 100 dual rotations, and a
SIGKILL at each step leaves working pairs. Figures print with -s.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import hvac
import pytest

from tests.e2e.conftest import require
from tests.e2e.harness import procs
from tests.jobs.rotate import proof
from tests.jobs.rotate.conftest import pg_server  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def vault_dev():
    binary = require("vault")["vault"]
    port, token = procs.free_port(), "e2e-" + secrets.token_hex(12)
    home = Path(tempfile.mkdtemp(prefix="ksecrets-vault-dev-"))  # the dev server writes ~/.vault-token
    proc = procs.Proc(
        "vault-dev",
        [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", f"-dev-root-token-id={token}"],
        home / "vault.log",
        env={**os.environ, "HOME": str(home), "VAULT_ADDR": ""},
    ).start()
    addr = f"http://127.0.0.1:{port}"
    try:
        procs.wait_for("vault dev server", lambda: hvac.Client(url=addr, token=token).sys.is_initialized(), 60, proc)
        yield proof.RealVault(addr, token)
    finally:
        proc.stop()


def test_dual_zero_failed_logins_across_100_rotations_real_vault(pg_server, vault_dev):  # noqa: F811
    figures = proof.run_rotations(
        vault_dev, pg_server, mode="dual", group="e2e_proof", rotations=100, min_interval=0.3, reread=0.02
    )
    print("\nreal Vault\n" + proof.Figures.HEADER + "\n" + figures.line())
    assert figures.rotations == 100 and figures.failed == 0 and figures.logins > 500


def test_dual_a_kill_at_each_step_leaves_working_pairs_real_vault(pg_server, vault_dev):  # noqa: F811
    results = proof.crash_each_step(vault_dev, pg_server, mode="dual", group="e2e_crash")
    print("\nreal Vault\n" + proof.crash_table("dual", results))
    for step, r in results.items():
        assert all(r.values()), (step, r)

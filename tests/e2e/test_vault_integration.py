"""Issue 9, flow 4: the existing `VAULT_ADDR` integration tests (tests/vault/test_integration.py)
run against a real Vault, none skipped.

Real: Vault (tools/vault) in dev mode on 127.0.0.1 (TLS by ``-dev-tls``, so VAULT_CACERT is exercised),
the tests' own hvac calls. Nothing is simulated: the file runs unchanged in a subprocess with
VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT set, and must report every test passed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.vault import DevVault

TARGET = ROOT / "tests" / "vault" / "test_integration.py"


def _test_count() -> int:
    tree = ast.parse(TARGET.read_text())
    return sum(1 for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


def test_vault_integration_tests_pass_against_a_real_vault_none_skipped(e2e_dir):
    vault = DevVault(e2e_dir / "vault-integration", require("vault")["vault"], tls=True)
    vault.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        env.update(vault.env())
        env["HOME"] = str(vault.workdir)
        res = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(TARGET)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        vault.stop()
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    expected = _test_count()
    assert expected >= 3
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert re.fullmatch(rf"{expected} passed in [0-9.]+s( \([0-9:]+\))?", summary.strip("= ")), summary
    assert "skipped" not in res.stdout

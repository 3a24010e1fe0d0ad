"""The real-component harness of the end-to-end suite (see tests/e2e/README.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ROOT / "tools"


@lru_cache(maxsize=1)
def _build_module():
    spec = importlib.util.spec_from_file_location("k8s_secrets_tools_build", TOOLS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def binaries() -> dict[str, Path]:
    """Program name → its binary in the versioned cache that `make e2e-tools` fills."""
    return _build_module().binaries()


def missing_binaries(names: list[str] | tuple[str, ...]) -> list[str]:
    bins = binaries()
    return [n for n in names if n not in bins or not bins[n].is_file()]


def module_dir(folder: str) -> Path:
    """Where Go's module cache holds the upstream module a tools folder pins (for its data files,
    such as the operator's CRDs of exactly the version that is built)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", _upstream(folder)],
        cwd=TOOLS / folder,
        capture_output=True,
        text=True,
        check=True,
        env=_build_module()._go_env(),
    )
    return Path(out.stdout.strip())


def _upstream(folder: str) -> str:
    for p in _build_module().programs():
        if p.folder == folder:
            return p.module
    raise KeyError(folder)

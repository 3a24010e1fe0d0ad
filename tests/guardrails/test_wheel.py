"""The built wheel works on its own: installed (not editable) into a fresh venv, its `ksecrets
export --check` passes on a copy of this repository's stacks. `make` installs the project
editable, which would hide data files the wheel forgets (the vendored CRDs export validates against).

Offline: the wheel is built with the setuptools the test extra pins (--no-build-isolation), and the
fresh venv reaches the already-installed dependencies through a .pth line naming this venv's
site-packages (a path added by .pth is not a site dir, so the editable install's own .pth hook
never runs there and `ksecrets` can only come from the wheel).
"""

from __future__ import annotations

import subprocess
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, fresh_venv_with_wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory, built_wheel) -> tuple[Path, Path]:
    """(the wheel, the fresh venv's bin/) with only the wheel installed in it."""
    env = fresh_venv_with_wheel(tmp_path_factory.mktemp("venv"), built_wheel, sysconfig.get_paths()["purelib"])
    return built_wheel, env / "bin"


def test_installed_wheel_exports_the_stacks(installed, repo_copy):
    wheel, bin_dir = installed
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import ksecrets; print(ksecrets.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo_copy,
    ).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), where  # the wheel's copy, not the source tree
    version = subprocess.run([str(bin_dir / "ksecrets"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == f"ksecrets {tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']}\n"

    proc = subprocess.run(
        [str(bin_dir / "ksecrets"), "export", "--check"], capture_output=True, text=True, cwd=repo_copy
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout
    names = zipfile.ZipFile(wheel).namelist()
    crds = sorted(p.name for p in (ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("ksecrets/schemas/crds/")) == crds
    # and it really checks: a changed file is found
    victim = next((repo_copy / "k8s" / "staging" / "apps").glob("*.yaml"))
    victim.write_text(victim.read_text() + "# drift\n")
    proc = subprocess.run(
        [str(bin_dir / "ksecrets"), "export", "--check"], capture_output=True, text=True, cwd=repo_copy
    )
    assert proc.returncode == 1 and f"changed: k8s/staging/apps/{victim.name}" in proc.stdout + proc.stderr, (
        proc.stdout,
        proc.stderr,
    )

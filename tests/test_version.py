"""The version is written once (pyproject.toml) and read at run time from the package metadata;
the few files that cannot read it repeat it, and this test keeps them equal."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib

import yaml

import ksecrets
from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_reports_pyprojects_version(cli):
    assert ksecrets.__version__ == ksecrets.version() == PYPROJECT
    out = cli("--version")
    assert (out.code, out.out, out.err) == (0, f"ksecrets {PYPROJECT}\n", "")


def test_a_source_tree_that_is_not_installed_reads_pyproject(tmp_path):
    # A copy of the sources (no *.egg-info beside it) run with -S (no site-packages): no metadata.
    shutil.copytree(ROOT / "ksecrets", tmp_path / "ksecrets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    proc = subprocess.run(
        [sys.executable, "-S", "-c", "import ksecrets; print(ksecrets.__version__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == f"{PYPROJECT}\n"
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "from importlib import metadata; metadata.version('k8s-secrets')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "PackageNotFoundError" in probe.stderr  # the fallback was really taken


def test_the_files_that_repeat_the_version_agree():
    policy = yaml.safe_load((ROOT / "policy/PulumiPolicy.yaml").read_text())
    assert str(policy["version"]) == PYPROJECT
    assert f"docker build -t ghcr.io/example/ksecrets-rotator:{PYPROJECT} ." in (ROOT / "Dockerfile").read_text()
    releases = re.findall(r"^## (\d+\.\d+\.\d+\S*)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == PYPROJECT
    assert not re.search(r"__version__\s*=", (ROOT / "ksecrets/__init__.py").read_text())


def test_the_rotators_default_image_is_tagged_with_the_version(monkeypatch):
    """A stack without `rotation.image` runs the image `docker build -t` tags with the package's
    one version (no second literal to bump)."""
    from ksecrets.config import model

    assert model.RotationConfig().image == f"ghcr.io/example/ksecrets-rotator:{PYPROJECT}"
    monkeypatch.setattr(ksecrets, "version", lambda: "9.8.7")
    model.default_rotator_image.cache_clear()
    try:
        assert model.RotationConfig().image == "ghcr.io/example/ksecrets-rotator:9.8.7"
    finally:
        monkeypatch.undo()
        model.default_rotator_image.cache_clear()

"""`pulumi install` reads requirements.txt; pyproject.toml stays the one place the pins are written."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_requirements_txt_installs_the_project_with_no_pin_of_its_own():
    assert _lines(ROOT / "requirements.txt") == ["-e .[policy]"]
    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]
    assert runtime == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    # The pack runs in that same venv.
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())["runtime"]
    assert pack["options"]["virtualenv"] == "../.venv"


def test_the_policy_extra_is_pinned_once_and_the_test_extra_uses_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = extras["policy"]
    name, pinned = pin.split("==")
    assert name == "pulumi-policy"
    assert "k8s-secrets[policy]" in extras["test"]
    assert not [r for r in extras["test"] if r.startswith("pulumi-policy")]
    assert version("pulumi-policy") == pinned  # what `make` installed through the test extra

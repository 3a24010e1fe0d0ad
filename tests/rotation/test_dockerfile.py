"""The rotator image's Dockerfile agrees with the CronJob that runs it (no Docker engine here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ksecrets.manifests import rotation

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_is_pinned_python_slim_by_tag():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert image == "python" and re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag)


def test_runs_as_the_numeric_user_the_cronjob_expects():
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users == [f"{rotation.RUN_AS_USER}:{rotation.RUN_AS_USER}"]
    # USER comes after every RUN: nothing at runtime was installed by (or is writable for) that user.
    words = [w for w, _ in instructions()]
    assert max(i for i, w in enumerate(words) if w == "RUN") < words.index("USER")


def test_entrypoint_is_the_cronjob_command_and_the_rotate_extra_is_installed():
    (entry,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["python", "-m", "ksecrets.rotate"]
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert 'pip install ".[rotate]"' in runs
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem

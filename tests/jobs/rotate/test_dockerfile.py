"""The rotator image's Dockerfile agrees with the CronJobs that run it (no Docker engine here): the
CronJobs the builders write for the committed production stack (what `k8s/production/` holds) run
the image as its USER, start its ENTRYPOINT, and their command and args run the built wheel."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from ksecrets.config.load import load_stack
from ksecrets.usecases.stack_facts import plan_stack
from tests.conftest import ROOT, fresh_venv_with_wheel

DOCKERFILE = Path(__file__).resolve().parents[3] / "Dockerfile"


def rotator_image_cronjobs() -> list[dict]:
    """Every CronJob of the production stack that runs the rotator image (the rotation CronJobs and
    the Vault snapshot job), as the builders write them into k8s/production/."""
    cfg = load_stack("production", ROOT)
    jobs = [
        p.obj
        for p in plan_stack(cfg)
        if p.obj["kind"] == "CronJob"
        and p.obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == cfg.rotation.image
    ]
    assert any(c["command"] == ["python", "-m", "ksecrets.rotate"] for j in jobs for c in pod_spec(j)["containers"]), (
        "the production stack has no rotation CronJob to check"
    )
    return jobs


def pod_spec(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def rotation_container() -> dict:
    """The first rotation CronJob's container (`python -m ksecrets.rotate` and its args)."""
    return next(
        c
        for j in rotator_image_cronjobs()
        for c in pod_spec(j)["containers"]
        if c["command"] == ["python", "-m", "ksecrets.rotate"]
    )


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


def test_runs_as_the_numeric_user_the_cronjobs_run_it_as():
    users = [rest for word, rest in instructions() if word == "USER"]
    # What the kubelet enforces: each CronJob's pod runs as this UID:GID, whatever the image says.
    assert len(users) == 1
    for cronjob in rotator_image_cronjobs():
        sc = pod_spec(cronjob)["securityContext"]
        assert users == [f"{sc['runAsUser']}:{sc['runAsGroup']}"], cronjob["metadata"]["name"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    # USER comes after every RUN: nothing at runtime was installed by (or is writable for) that user.
    words = [w for w, _ in instructions()]
    assert max(i for i, w in enumerate(words) if w == "RUN") < words.index("USER")


def test_entrypoint_is_the_cronjob_command_and_the_rotate_extra_is_installed():
    (entry,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    # The CronJob's command replaces the ENTRYPOINT: the same program either way (`docker run IMAGE`).
    assert json.loads(entry) == rotation_container()["command"]
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    # The package without its dependencies, then only the `rotate` extra's requirements (was
    # `pip install ".[rotate]"`, which also installed the CLI's and the Pulumi program's dependencies).
    assert "pip install --no-deps ." in runs and "pip install -r /tmp/rotate.txt" in runs
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ROTATE = PYPROJECT["optional-dependencies"]["rotate"]


def test_the_images_requirements_are_the_rotate_extra_at_the_projects_pins(tmp_path):
    """Runs the Dockerfile's own requirement step on pyproject.toml: it yields the `rotate` extra,
    each requirement pinned exactly and, where the package also depends on it, at the same pin."""
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    (snippet,) = re.findall(r'python -c "(import tomllib;[^"]*)" > /tmp/rotate\.txt', runs)
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ROTATE
    core = {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in PYPROJECT["dependencies"]}
    for line in ROTATE:
        req = Requirement(line)
        assert str(req.specifier).startswith("==")
        assert core.get(req.name.lower(), str(req.specifier)) == str(req.specifier), line
    assert not any(Requirement(r).name.startswith("pulumi") for r in ROTATE)


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements pull in (extras and markers evaluated)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = metadata.distribution(req.name).metadata["Name"]
        for extra in req.extras:
            for sub in metadata.requires(name) or []:
                sub_req = Requirement(sub)
                if (
                    sub_req.marker is not None
                    and sub_req.marker.evaluate({"extra": extra})
                    and not sub_req.marker.evaluate({"extra": ""})
                ):
                    todo.append(Requirement(str(sub_req).split(";")[0]))
        if name in seen:
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def test_the_rotator_runs_with_the_rotate_extra_alone(tmp_path, built_wheel):
    """The wheel (--no-deps) in a fresh venv that sees only the `rotate` extra's distributions (and
    what they require), as the image has them: every rotator module imports, the command runs and
    reaches Vault over HTTP, run with the production rotation CronJob's command and args; the Pulumi SDK, kubernetes-validate and cryptography are absent."""
    dists = _closure(ROTATE)
    assert {"hvac", "PyYAML", "psycopg", "psycopg-binary", "requests"} <= dists
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in dists:
        dist = metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            src = Path(dist.locate_file(top))
            if src.exists() and not (deps / top).exists():
                (deps / top).symlink_to(src)
    env_dir = fresh_venv_with_wheel(tmp_path, built_wheel, deps)
    py = str(env_dir / "bin" / "python")
    probe = (
        "import importlib, ksecrets.jobs.rotate, ksecrets.jobs.rotate.__main__, ksecrets.jobs.rotate.postgres, psycopg\n"
        "psycopg.pq.version()\n"
        "for name in ('pulumi', 'pulumi_kubernetes', 'kubernetes_validate', 'cryptography', 'ruamel'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        print('absent', name)\n"
    )
    out = subprocess.run([py, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == [
        f"absent {n}" for n in ("pulumi", "pulumi_kubernetes", "kubernetes_validate", "cryptography", "ruamel")
    ]
    with socket.socket() as s:  # a port nothing listens on: the rotator's HTTP call is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The production rotation CronJob's own command and args (its python is the venv's).
    container = rotation_container()
    command = container["command"]
    assert command[0] == "python"
    run = subprocess.run(
        [py, *command[1:], *container["args"]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "VAULT_ADDR": f"http://127.0.0.1:{port}", "VAULT_TOKEN": "t"},
    )
    lines = run.stderr.splitlines()
    assert run.returncode in (1, 2) and len(lines) == 1, run.stderr
    assert lines[0].startswith("ksecrets.rotate: ") and f"127.0.0.1:{port}" in lines[0], lines[0]

"""Edits of one file by several commands at once: every change lands, none is reported falsely.

Each test starts real `ksecrets` processes in parallel (separate interpreters, as users and CI
jobs would) and then reads the file: every key a process reported as sealed must be there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack
from ksecrets.sealing import churn

from tests.conftest import ksecrets_in_process

from .conftest import clean_env

PARALLEL = 10
STACK_FILE = """\
# comments stay
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    certificate: certs/staging.pem
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      secretName: my-app-secrets
"""


@pytest.fixture
def stack(tmp_path, vectors) -> Path:
    (tmp_path / "Pulumi.staging.yaml").write_text(STACK_FILE)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    return tmp_path


def _start(args: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksecrets", *args],
        cwd=cwd,
        env=clean_env(**{churn.ENV_VAR: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def _wait_all(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    try:
        for p in procs:
            err = p.stderr.read().decode()
            p.stdout.read()
            out.append((p.wait(timeout=300), err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def test_parallel_seal_stack_runs_all_land(stack):
    procs = [
        _start(
            ["seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", f"KEY_{i}=value-{i}"], stack
        )
        for i in range(PARALLEL)
    ]
    results = _wait_all(procs)
    assert all(code == 0 for code, _ in results), results
    (entry,) = load_stack("staging", stack).sealed
    assert sorted(entry.keys) == sorted(f"KEY_{i}" for i in range(PARALLEL))
    assert "# comments stay" in (stack / "Pulumi.staging.yaml").read_text()
    # No lock file or temp file is left beside the stack file.
    assert sorted(p.name for p in stack.iterdir()) == ["Pulumi.staging.yaml", "certs"]


def test_parallel_merge_into_runs_all_land(tmp_path, cert_file):
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "ns"},
        "stringData": {"FIRST": "one"},
    }
    first = subprocess.run(
        [sys.executable, "-m", "ksecrets", "seal", "--cert", str(cert_file), "--format", "yaml"],
        input=json.dumps(secret).encode(),
        capture_output=True,
        env=clean_env(),
        check=True,
    )
    target = tmp_path / "sealed.yaml"
    target.write_bytes(first.stdout)
    procs = []
    for i in range(PARALLEL):
        change = {**secret, "stringData": {f"KEY_{i}": f"value-{i}"}}
        procs.append(
            _start(
                ["seal", "--cert", str(cert_file), "--merge-into", str(target)], tmp_path, json.dumps(change).encode()
            )
        )
    results = _wait_all(procs)
    assert all(code == 0 for code, _ in results), results
    data = yaml.safe_load(target.read_text())["spec"]["encryptedData"]
    assert sorted(data) == sorted(["FIRST", *(f"KEY_{i}" for i in range(PARALLEL))])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".sealed")) == []


# --- the stack file as the user keeps it -------------------------------------------------------------


def _seal(stack: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ksecrets",
            "seal",
            "--stack",
            "staging",
            "--name",
            "my-app-secrets",
            "--from-literal",
            "API_KEY=abc",
            *args,
        ],
        cwd=stack,
        capture_output=True,
        text=True,
        env=clean_env(),
    )


def test_a_symlinked_stack_file_is_followed_not_replaced(stack):
    real_dir = stack / "config"
    real_dir.mkdir()
    (stack / "Pulumi.staging.yaml").rename(real_dir / "Pulumi.staging.yaml")
    (stack / "Pulumi.staging.yaml").symlink_to("config/Pulumi.staging.yaml")
    out = _seal(stack)
    assert out.returncode == 0, out.stderr
    assert (stack / "Pulumi.staging.yaml").is_symlink()
    assert "API_KEY" in (real_dir / "Pulumi.staging.yaml").read_text()
    assert sorted(p.name for p in real_dir.iterdir()) == ["Pulumi.staging.yaml"]


def test_a_read_only_stack_file_is_refused(stack):
    path = stack / "Pulumi.staging.yaml"
    path.chmod(0o444)
    before = path.read_bytes()
    out = _seal(stack)
    assert out.returncode == 2
    assert (
        out.stderr
        == "ksecrets: Pulumi.staging.yaml: stack file is read-only; not changed (make it writable to edit it)\n"
    )
    assert path.read_bytes() == before and (path.stat().st_mode & 0o777) == 0o444


@pytest.mark.parametrize("name", ["../staging", "a/b", "..", "x/../../staging", "sta..ging"])
def test_a_stack_name_that_is_a_path_is_refused(stack, name):
    for args in (
        ["seal", "--stack", name, "--name", "my-app-secrets", "--from-literal", "A=b"],
        ["export", "--stack", name],
        ["verify", "--stack", name],
        ["rotate", "--stack", name, "--name", "n", "--key", "k"],
    ):
        out = ksecrets_in_process(*args, cwd=stack / "certs", env=clean_env())  # the checks, not the process
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith(f"ksecrets: --stack {name!r}: not a stack name"), (args, out.stderr)
    assert "k8s-secrets:sealed:" not in (stack / "Pulumi.staging.yaml").read_text()


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_an_edit_keeps_line_endings_and_bom(stack, bom, eol):
    path = stack / "Pulumi.staging.yaml"
    path.write_bytes(bom + STACK_FILE.encode().replace(b"\n", eol))
    out = _seal(stack)
    assert out.returncode == 0, out.stderr
    after = path.read_bytes()
    assert after.startswith(bom + b"# comments stay" + eol)
    body = after[len(bom) :]
    assert body.count(b"\n") == body.count(eol) and b"\xef\xbb\xbf" not in body
    assert "API_KEY" in load_stack("staging", stack).sealed[0].keys

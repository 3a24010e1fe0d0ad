"""Fixtures for the sealing tests: the shared known-answer vectors and the CLI as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CRDS, ROOT, VECTORS  # noqa: F401  (ROOT: the sealing tests import it from here)

CRD = CRDS / "sealedsecret.yaml"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session")
def vectors() -> dict:
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="session")
def vector_key(vectors):
    from ksecrets.sealing.keys import parse_private_key_pem

    return parse_private_key_pem(vectors["private_key_pem"].encode(), "vectors")


@pytest.fixture(scope="session")
def vector_cert(vectors):
    from ksecrets.sealing.certs import parse_certificate

    return parse_certificate(vectors["certificate_pem"].encode(), "vectors")


@pytest.fixture
def cert_file(tmp_path, vectors) -> Path:
    p = tmp_path / "cert.pem"
    p.write_text(vectors["certificate_pem"])
    return p


@pytest.fixture
def key_file(tmp_path, vectors) -> Path:
    p = tmp_path / "key.pem"
    p.write_text(vectors["private_key_pem"])
    return p


@pytest.fixture(scope="session")
def other_pair():
    """A second, freshly generated controller-style key pair (RSA-4096: slow, so once per session)."""
    from ksecrets.sealing.keys import generate_key_and_cert

    return generate_key_and_cert()


@pytest.fixture
def other_cert_file(tmp_path, other_pair) -> Path:
    from ksecrets.sealing.keys import cert_pem

    p = tmp_path / "other-cert.pem"
    p.write_bytes(cert_pem(other_pair[1]))
    return p


@pytest.fixture
def other_key_file(tmp_path, other_pair) -> Path:
    from ksecrets.sealing.keys import private_key_pem

    p = tmp_path / "other-key.pem"
    p.write_bytes(private_key_pem(other_pair[0]))
    return p


@pytest.fixture(scope="session")
def crd_schema() -> dict:
    import yaml

    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    env["KSECRETS_BACKUP_SCRYPT_LOG2N"] = "14"  # fast in tests; the format stores N
    env.update(extra)
    return env


def ksecrets(
    *args: str, input: bytes | str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the command line in this process (`ksecrets.cli.main`), as the process would see it: that
    stdin (never a terminal), that working directory and exactly that environment, stdout and stderr
    captured as bytes. A Python start per call was most of the suite's time; the tests that are about
    the process itself (no terminal to prompt on) use `ksecrets_process`."""
    import getpass
    import io

    from ksecrets.cli import main

    data = input.encode() if isinstance(input, str) else (input if input is not None else b"")
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", newline="", write_through=True)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_std = sys.stdin, sys.stdout, sys.stderr
    saved_getpass = getpass.getpass

    def no_prompt(*_a, **_k):  # a prompt would wait on this terminal: such a test needs the process
        raise AssertionError("ksecrets prompted for a passphrase; use ksecrets_process for this test")

    try:
        os.environ.clear()
        os.environ.update(env if env is not None else clean_env())
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        getpass.getpass = no_prompt
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors and --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        getpass.getpass = saved_getpass
        sys.stdin, sys.stdout, sys.stderr = saved_std
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["ksecrets", *args], code, out.getvalue(), err.getvalue())


def ksecrets_process(
    *args: str, input: bytes | str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real command line as a separate process, in a new session (no controlling terminal)."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(
        [sys.executable, "-m", "ksecrets", *args],
        input=input if input is not None else b"",
        capture_output=True,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        start_new_session=True,
    )


def err_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed run."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def past(days: int) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)

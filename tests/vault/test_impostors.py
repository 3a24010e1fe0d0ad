"""Vault faults the way they happen: a server that is not Vault, one that trickles, a write whose
answer is lost, nothing listening. Real `ksecrets` processes against real sockets on 127.0.0.1
(`tests/vault/impostor.py`), every Vault command: the same fault gives one line and the same
exit code everywhere (README, "Exit codes"), and nothing is reported done that is not.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksecrets.sealing.keys import cert_pem, generate_key_and_cert, private_key_pem
from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack
from tests.vault.impostor import Impostor

ROOT = Path(__file__).resolve().parents[2]
PROD = Path(__file__).parent / "fixtures" / "production" / "Pulumi.production.yaml"
OLD = {"API_KEY": "old-api-key-0123456789", "DATABASE_URL": "postgres://app:old@db/app"}
TIMEOUT = 3  # VAULT_CLIENT_TIMEOUT for these runs, seconds


@pytest.fixture
def server(request):
    started: list[Impostor] = []

    def start(mode: str, **kw) -> Impostor:
        s = Impostor(mode, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def sealing_key():
    return generate_key_and_cert(key_bits=2048)


@pytest.fixture
def repo(tmp_path, sealing_key) -> Path:
    """production (vault) and staging (sealed-secrets, sealed with a key we hold) side by side."""
    root = tmp_path / "repo"
    (root / "certs").mkdir(parents=True)
    shutil.copy2(PROD, root / "Pulumi.production.yaml")
    shutil.copy2(ROOT / "Pulumi.staging.yaml", root / "Pulumi.staging.yaml")
    key, cert = sealing_key
    (root / "certs" / "staging.pem").write_bytes(cert_pem(cert))
    seal_into_stack(root, "staging", SealRequest(name="my-app-secrets", values={k: v.encode() for k, v in OLD.items()}))
    (tmp_path / "key.pem").write_bytes(private_key_pem(key))
    (tmp_path / "app.env").write_text("".join(f"{k}={v}\n" for k, v in OLD.items()))
    return root


def _env(addr: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "KSECRETS_"))}
    env.update(VAULT_ADDR=addr, VAULT_TOKEN="hvs.test-token", HOME=str(tmp), VAULT_CLIENT_TIMEOUT=str(TIMEOUT))
    return env


COMMANDS = {
    "push": [
        "-m",
        "ksecrets",
        "vault",
        "push",
        "--stack",
        "production",
        "--path",
        "my-app",
        "--from-env-file",
        "{tmp}/app.env",
        "--root",
        "{root}",
    ],
    "bootstrap": ["-m", "ksecrets", "vault", "bootstrap", "--stack", "production", "--root", "{root}"],
    "rotate": [
        "-m",
        "ksecrets",
        "rotate",
        "--stack",
        "production",
        "--name",
        "my-app-secrets",
        "--key",
        "API_KEY",
        "--root",
        "{root}",
    ],
    "migrate": [
        "-m",
        "ksecrets",
        "migrate",
        "--stack",
        "staging",
        "--to",
        "vault",
        "--recovery-private-key",
        "{tmp}/key.pem",
        "--root",
        "{root}",
    ],
    "rotator": ["-m", "ksecrets.rotate", "--mount", "secret", "--path", "my-app", "--key", "API_KEY"],
}


def run(command: str, addr: str, repo: Path, limit: float = 60) -> tuple[int, str, float]:
    tmp = repo.parent
    args = [a.format(tmp=tmp, root=repo) for a in COMMANDS[command]]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(addr, tmp), timeout=limit, cwd=tmp
    )
    return done.returncode, done.stderr, time.monotonic() - started


def _one_line(err: str, command: str) -> str:
    prog = "ksecrets.rotate" if command == "rotator" else "ksecrets"
    lines = [line for line in err.splitlines() if not line.startswith(f"{prog}: read ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: "), err
    return lines[0]


def _files(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in repo.glob("Pulumi.*.yaml")}


@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_server_that_is_not_vault_is_an_error(server, repo, mode, command):
    fake = server(mode)
    before = _files(repo)
    code, err, _ = run(command, fake.addr, repo)
    line = _one_line(err, command)
    assert code == 1, err
    assert f"Vault {fake.addr}: " in line and "the answer is not Vault's" in line, line
    assert "changed" not in line and "rotated" not in line
    assert _files(repo) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_trickling_server_cannot_hold_a_command(server, repo, command):
    fake = server("trickle")
    code, err, took = run(command, fake.addr, repo, limit=60)
    line = _one_line(err, command)
    assert code == 1, err
    assert f"Vault {fake.addr}: " in line and f"timed out: no complete answer within {TIMEOUT}s" in line, line
    # One request at most before giving up: the whole command ends within a few timeouts.
    assert took < TIMEOUT * 4, took


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_vault_unreachable_is_exit_1_everywhere(repo, command):
    addr = _closed_port()
    before = _files(repo)
    code, err, _ = run(command, addr, repo)
    line = _one_line(err, command)
    assert code == 1, err
    assert f"Vault {addr}: " in line and "unreachable (connection failed" in line, line
    assert _files(repo) == before


@pytest.mark.parametrize("command", ["push", "rotate", "rotator"])
def test_a_write_whose_answer_is_lost_is_maybe_written(server, repo, command):
    fake = server("lost-write", kv={"my-app": {"API_KEY": "old-api-key-0123456789", "DATABASE_URL": "x"}})
    if command == "push":
        (repo.parent / "app.env").write_text("API_KEY=new-value-0123456789\nDATABASE_URL=x\n")
    code, err, _ = run(command, fake.addr, repo)
    line = _one_line(err, command)
    assert code == 3, err
    assert "maybe written; check with `vault kv get -mount=secret my-app`" in line, line
    assert "old value stays" not in line and "stays current" not in line
    assert ("POST", "/v1/secret/data/my-app") in fake.requests


def test_a_write_whose_answer_is_lost_but_landed_counts(server, repo):
    fake = server("lost-answer", kv={"my-app": {"API_KEY": "old-api-key-0123456789", "DATABASE_URL": "x"}})
    code, err, _ = run("rotator", fake.addr, repo)
    assert code == 0, err
    assert len(fake.kv["my-app"]) == 2 and fake.kv["my-app"][-1]["API_KEY"] != "old-api-key-0123456789"
    assert "new kv-v2 version 2" in err


# --- issue 18: version numbers that are not plain integers ----------------------------------------


@pytest.mark.parametrize("odd", ["3a", "²", [3], True, {"n": 1}, -1], ids=repr)
@pytest.mark.parametrize("command", ["push", "rotate", "rotator"])
def test_a_version_that_is_not_a_whole_number_is_one_line_and_nothing_written(server, repo, command, odd):
    """`"²".isdigit()` is True and `int("²")` raises; `int(True)` is 1: never a traceback, never a
    guess. The rotator reads the version it marked (custom_metadata) and the data's version."""
    fake = server("odd-version", kv={"my-app": {"API_KEY": "old-api-key-0123456789", "DATABASE_URL": "x"}}, odd=odd)
    if command == "push":
        (repo.parent / "app.env").write_text("API_KEY=new-value-0123456789\nDATABASE_URL=x\n")
    before = _files(repo)
    code, err, _ = run(command, fake.addr, repo)
    line = _one_line(err, command)
    assert code != 0 and "Traceback" not in err, err
    assert "not a whole number" in line, line
    assert ("POST", "/v1/secret/data/my-app") not in fake.requests  # nothing written to Vault
    assert len(fake.kv["my-app"]) == 1 and _files(repo) == before

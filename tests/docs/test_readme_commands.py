"""Every command the README and `--help` show works as written.

README: every ```sh block runs, in README order, with bash -euo pipefail, in a temporary git copy
of the repository (in three chains of blocks, each in its own copy, that pytest-xdist runs at once:
CHAINS) (the project's .venv on PATH, a temporary HOME). The only stand-ins are the
inputs a reader brings (env files, a Secret manifest, a value) and the passphrases. A block that
needs what cannot run here (a cluster, the Pulumi CLI, Vault, flux, the e2e build) is preceded in
the README by `<!-- readme-test: skip: <why> -->`; the test checks that each such block really
calls one of those programs, and keeps the list short.

--help: every example line of every subcommand's help (`    ksecrets ...`) parses, with and
without its [optional] parts.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"^<!-- readme-test: skip: (?P<why>.+\S) -->$")
# What a skipped block must use (else it should run).
UNAVAILABLE = re.compile(
    r"(^|[\s|(])(pulumi|flux|vault|kubectl (?!create secret generic)|make test|make e2e)|kubectl apply|kubectl get"
)
MAX_SKIPPED = 12

INPUTS = {
    ".env": "SHARED_TOKEN=shared-0123456789\n",
    ".env.staging": "API_KEY=staging-api-0123456789\nDATABASE_URL=postgres://app@db.staging/app\n",
    ".env.production": "API_KEY=prod-api-0123456789\nDATABASE_URL=postgres://app@db.prod/app\n",
    ".env.qa": "API_KEY=qa-api-0123456789\nDATABASE_URL=postgres://app@db.qa/app\n",
    "password": "a-password-0123456789",
    "secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\n  namespace: my-app\n"
    "stringData:\n  TOKEN: token-0123456789\n",
    "changed-keys.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\n  namespace: default\n"
    "stringData:\n  EXTRA: extra-0123456789\n",
    "deploy/my-app-secrets.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: my-app-secrets\n"
    "  namespace: my-app\nstringData:\n  FROM_MANIFEST: manifest-0123456789\n",
}


def sh_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line, body, skip reason) of every ```sh block."""
    lines = text.split("\n")
    out: list[tuple[int, str, str | None]] = []
    i = 0
    while i < len(lines):
        if lines[i] == "```sh":
            start = i
            body = []
            i += 1
            while lines[i] != "```":
                body.append(lines[i])
                i += 1
            m = SKIP.match(lines[start - 1]) if start else None
            out.append((start + 1, "\n".join(body) + "\n", m.group("why") if m else None))
        i += 1
    return out


def test_skipped_blocks_are_few_and_really_need_what_is_not_here():
    blocks = sh_blocks(README.read_text())
    skipped = [(line, body, why) for line, body, why in blocks if why]
    assert len(blocks) >= 15 and len(skipped) <= MAX_SKIPPED, [line for line, _, _ in skipped]
    for line, body, why in skipped:
        assert UNAVAILABLE.search(body), f"README.md line {line}: skipped ({why}) but needs nothing unavailable"


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)  # mtimes kept: make sees .venv's stamp as current
    # The project's venv, shared by link, entry by entry: the copy gets its own install stamp, newer
    # than its pyproject.toml, so a block's `make` never re-installs into the shared venv (which
    # would point the developer's editable install at this temporary copy).
    venv = repo / ".venv"
    venv.mkdir()
    for entry in (ROOT / ".venv").iterdir():
        if not entry.name.startswith(".") or entry.name == ".gitignore":
            (venv / entry.name).symlink_to(entry)
    for stamp in (".installed", ".lint-installed"):
        (venv / stamp).touch()
    for name, text in INPUTS.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    home = tmp_path / "home"
    (home / "safe").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_", "GIT_"))}
    env |= {
        "HOME": str(home),
        "PATH": f"{ROOT / '.venv' / 'bin'}:{ROOT / '.tools' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        "KSECRETS_BACKUP_PASSPHRASE": "readme backup passphrase",
        "KSECRETS_BACKUP_SCRYPT_LOG2N": "14",
        "KSECRETS_OFFLINE_KEY_PASSPHRASE": "readme offline passphrase",
        "VALUE": "a-value-from-the-shell-0123",
        "GIT_AUTHOR_NAME": "readme",
        "GIT_AUTHOR_EMAIL": "readme@localhost",
        "GIT_COMMITTER_NAME": "readme",
        "GIT_COMMITTER_EMAIL": "readme@localhost",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, env=env)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "the repository"], check=True, env=env)
    return repo, env


# The blocks in three chains, each run in README order in its own copy of the repository, so
# pytest-xdist runs them at once: a block belongs to the first chain whose test its text passes.
# A chain holds every block whose files a later block of it reads (qa's keys for `backup --check`).
CHAINS = {
    "sops": lambda body: "sops-demo" in body,
    "qa-and-backups": lambda body: "--stack qa" in body or "ksecrets backup" in body,
    "main": lambda body: True,
}


def chain_of(body: str) -> str:
    return next(name for name, test in CHAINS.items() if test(body))


def test_every_chain_has_blocks():
    """At least six blocks run (in all chains), and no chain is empty."""
    chains = [chain_of(body) for _, body, why in sh_blocks(README.read_text()) if not why]
    assert len(chains) >= 6 and all(name in chains for name in CHAINS), chains


@pytest.mark.parametrize("chain", list(CHAINS))
def test_every_readme_command_block_runs_as_written(workspace, chain):
    repo, env = workspace
    ran = 0
    for line, body, why in sh_blocks(README.read_text()):
        if why or chain_of(body) != chain:
            continue
        res = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, (
            f"README.md line {line}:\n{body}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
        )
        ran += 1
    assert ran >= 1
    # The shared venv still runs this checkout's code (no block re-installed it elsewhere).
    where = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", "import ksecrets; print(ksecrets.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(ROOT / "ksecrets" / "__init__.py"), where
    # What the blocks left renders, and every stack passes the doctor.
    for argv in (["export"], ["doctor"]):
        res = subprocess.run(["ksecrets", *argv], cwd=repo, env=env, capture_output=True, text=True)
        assert res.returncode == 0, (argv, res.stdout, res.stderr)


# --- --help examples ----------------------------------------------------------------------------------


def help_examples() -> list[tuple[str, str]]:
    """(subcommand, example command line) from every subcommand's --help description."""
    from ksecrets.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    out = []
    for action in parser._actions:
        if not isinstance(action.choices, dict):
            continue
        todo = list(action.choices.items())
        while todo:
            name, sub = todo.pop()
            text = (sub.description or "").replace("\\\n", " ")
            for raw in text.splitlines():
                for segment in raw.split("|"):
                    segment = segment.strip()
                    if segment.startswith("ksecrets "):
                        out.append((name, segment))
            for a in sub._actions:
                if isinstance(a.choices, dict):
                    todo += list(a.choices.items())
    assert {name for name, _ in out} >= {"backup", "keygen"} and len(SUBCOMMANDS) > 10
    return out


def _argv(line: str) -> list[str]:
    words = shlex.split(line, comments=True)[1:]
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w in ("<", ">", ">>"):
            skip = True
            continue
        out.append(w)
    return out


@pytest.mark.parametrize("name,line", help_examples(), ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_every_help_example_parses(name, line):
    from ksecrets.cli import build_parser

    variants = {re.sub(r"\s*\[[^\]]*\]", "", line), line.replace("[", "").replace("]", "")}
    for variant in variants:
        argv = _argv(variant)
        try:
            build_parser(only=argv[0]).parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"--help of {name}: {variant!r} does not parse (exit {exc.code})")

"""Shared fixtures: a copy of the repository to run commands in, and the CLI in-process."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Test data vendored in the repository: the sealed-secrets known-answer vectors, the charts'
# values files, and (shipped with the package, used by `ksecrets export`) the upstream CRDs.
FIXTURES = ROOT / "tests" / "fixtures"
VECTORS = FIXTURES / "vectors" / "sealed-secrets-v1.json"
CHARTS = FIXTURES / "charts"
CRDS = ROOT / "ksecrets" / "schemas" / "crds"
# The project's shared data folder, when it sits beside the checkout (it does in the project's
# own workspace, never in a user's clone): only the tests that compare the vendored copies use it.
SHARED = ROOT.parent / "shared"


@contextlib.contextmanager
def run_lock(tmp_path_factory, name: str) -> Iterator[Path]:
    """An exclusive lock shared by every xdist worker of this run (a file in the parent of the
    workers' base temp dirs, which is the run's own); yields a directory of that run for `name`."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    where = root / f"shared-{name}"
    where.mkdir(exist_ok=True)
    with open(root / f"shared-{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield where
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The stack files, certs, k8s/ and clusters/ of this repository in a temp dir (for writes)."""
    dest = tmp_path / "repo"
    dest.mkdir()
    for p in ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(p, dest / p.name)
    for d in ("certs", "k8s", "clusters"):
        if (ROOT / d).is_dir():
            shutil.copytree(ROOT / d, dest / d)
    return dest


def committed_k8s(stack: str) -> dict[tuple[str, str, str, str], dict]:
    """The committed k8s/<stack>/ objects (the golden files), keyed by (layer, kind, namespace,
    name). A test compares a builder's output with them instead of restating it field by field;
    after a deliberate change to a builder, `make render` rewrites them and the diff is reviewed."""
    import yaml

    out = {}
    for path in sorted((ROOT / "k8s" / stack).glob("*/*.yaml")):
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(obj, dict) and "kind" in obj and "metadata" in obj:
            meta = obj["metadata"]
            out[(path.parent.name, obj["kind"], meta.get("namespace", ""), meta["name"])] = obj
    return out


def assert_committed(stack: str, planned) -> None:
    """Each planned object is, exactly, its committed file under k8s/<stack>/ (`make render`)."""
    golden = committed_k8s(stack)
    assert planned, "nothing to compare"
    for p in planned:
        meta = p.obj["metadata"]
        key = (p.layer, p.obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key in golden, f"{key} is not in k8s/{stack}/: run `make render` and review the diff"
        assert p.obj == golden[key], f"{key} differs from k8s/{stack}/: run `make render` and review the diff"


WHEEL_SOURCES = ("pyproject.toml", "README.md", "ksecrets", "components")


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The project's wheel, built offline from a copy of its sources (the setuptools the test extra
    pins, --no-build-isolation), as `pip wheel .` builds it: once per run, whatever the workers."""
    with run_lock(tmp_path_factory, "wheel") as tmp:
        done = sorted((tmp / "dist").glob("k8s_secrets-*.whl"))
        if done:
            return done[0]
        return _build_wheel(tmp)


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    shutil.rmtree(src, ignore_errors=True)  # a worker's earlier attempt that failed
    src.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp / "dist"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("k8s_secrets-*.whl")
    return wheel


def fresh_venv_with_wheel(where: Path, wheel: Path, deps_dir: str | Path) -> Path:
    """A new venv (no pip) with only `wheel` installed (--no-deps) and `deps_dir` on its path through
    a .pth line. A directory added by a .pth line is not a site dir: its own .pth files (the
    project venv's editable hook) never run there, so `ksecrets` can only come from the wheel."""
    import venv

    env = where / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "deps.pth").write_text(f"{deps_dir}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-compile",  # what the tests run is the same; bytecode for it would be CPU for nothing
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return env


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run `ksecrets ARGS` in-process; returns exit code, stdout, stderr."""
    from ksecrets.cli import main

    def run(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def ksecrets_in_process(
    *args: str, cwd: Path | None = None, stdin: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`ksecrets ARGS` in this process, with run_ksecrets's interface (text stdout/stderr, exit code
    in returncode): for the tests whose subject is a command's behaviour, not the process around it.
    cwd, environment and standard streams are this run's and restored afterwards (a start of Python
    per call was most of those tests' time). The streams are byte streams with a text layer, as a
    process has (`sys.stdin.buffer`); stdin is never a terminal, and a passphrase prompt fails the
    test (a test that needs the prompt runs the process)."""
    import getpass
    import io

    from ksecrets.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    text = lambda raw: io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=True)  # noqa: E731
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_std = sys.stdin, sys.stdout, sys.stderr
    saved_getpass = getpass.getpass

    def no_prompt(*_a, **_k):
        raise AssertionError("ksecrets prompted for a passphrase: run this test's command as a process")

    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        streams = text(io.BytesIO((stdin or "").encode())), text(out), text(err)  # held: closing one closes its bytes
        sys.stdin, sys.stdout, sys.stderr = streams
        getpass.getpass = no_prompt
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors and --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        getpass.getpass = saved_getpass
        sys.stdin, sys.stdout, sys.stderr = saved_std
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(
        ["ksecrets", *args], code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8")
    )


def run_ksecrets(
    *args: str, cwd: Path, stdin: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real `ksecrets` entry point as a user would (a separate process)."""
    return subprocess.run(
        [sys.executable, "-m", "ksecrets", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env
    )


def sealed_shape(tag: int = 0, key_bytes: int = 512) -> str:
    """A value of the kubeseal format's shape (uint16 length, an RSA block of `key_bytes`, an
    AES-GCM tag) that decrypts with no key: for tests that need a well-formed sealed value without
    sealing one. `tag` makes distinct values."""
    import base64

    body = key_bytes.to_bytes(2, "big") + bytes([tag % 256]) * key_bytes + bytes(16)
    return base64.b64encode(body).decode("ascii")


# RSA keys for tests that need several distinct ones (issue 23: a 2048-bit key costs about 0.1 s of
# CPU, the fleet tests made hundreds). Within one test every call returns a key no earlier call of
# that test returned; the keys are generated once per worker and handed out again to later tests,
# which never compare keys with another test's.
_RSA_KEYS: list = []
_rsa_taken = 0


def distinct_rsa_key():
    """A 2048-bit RSA private key (cryptography), distinct from every other this test has had."""
    global _rsa_taken
    if _rsa_taken == len(_RSA_KEYS):
        from cryptography.hazmat.primitives.asymmetric import rsa

        _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _rsa_taken += 1
    return _RSA_KEYS[_rsa_taken - 1]


def pytest_runtest_setup(item) -> None:
    global _rsa_taken
    _rsa_taken = 0


# The modules holding the suite's longest tests (tens of seconds of a core each: the README chains,
# 100 rotations, the merge properties, the wheel, the kubectl corpus), run first: with
# `--dist worksteal` the queue is handed out in order, so none of them starts last and runs alone
# while the other workers are idle. Whole modules move, so module fixtures are still made once.
LONG_FIRST = (
    "tests/docs/test_readme_commands.py",
    "tests/jobs/rotate/test_rotation_proof.py",
    "tests/git/test_merge_properties.py",
    "tests/git/test_sops_merge.py",
    "tests/guardrails/test_wheel.py",
    "tests/sealing/test_envfile_kubectl.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in LONG_FIRST)  # stable: False first


# Per-test CPU (issue 23): KSECRETS_TEST_CPU=FILE appends one line per test, "CPU-seconds
# wall-seconds nodeid", the CPU of this process and of the children it waited for, setup to teardown.
_CPU_LOG = os.environ.get("KSECRETS_TEST_CPU")


if _CPU_LOG:
    import resource
    import time

    def _cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        cpu0, wall0 = _cpu(), time.monotonic()
        yield
        with open(_CPU_LOG, "a") as fh:
            fh.write(f"{_cpu() - cpu0:.3f} {time.monotonic() - wall0:.3f} {item.nodeid}\n")

"""The end-to-end suite: real programs built from their Go modules (`make e2e-tools`).

Every test here is marked ``e2e`` and runs only under `make e2e` (`make test` deselects them).
Processes listen on 127.0.0.1 only and are stopped by PID when the session ends, also when a test
fails; the logs of a failed run are kept and named in the failure report.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness import procs
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.sealed_secrets import (
    SealedSecretsController,
    StackRepo,
    keygen,
    sealed_stacks,
    stack_flags,
)

CRDS = sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))
_FAILED: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _FAILED.append(item.nodeid)
        logs = sorted({str(p.log) for p in procs.running()})
        if logs:
            report.sections.append(("e2e logs (kept)", "\n".join(logs)))


def require(*names: str) -> dict[str, Path]:
    missing = missing_binaries(names)
    if missing:
        pytest.fail(f"not built: {', '.join(missing)}; run `make e2e-tools`", pytrace=False)
    return binaries()


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    """One folder per run for data, certificates and logs; removed unless a test failed."""
    path = Path(tempfile.mkdtemp(prefix="k8s-secrets-e2e-"))
    yield path
    procs.stop_all()
    if _FAILED or os.environ.get("KSECRETS_E2E_KEEP"):
        print(f"\ne2e: logs and data kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(e2e_dir: Path) -> Iterator[Cluster]:
    """etcd + kube-apiserver + kube-controller-manager with the vendored CRDs installed."""
    bins = require("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    c = Cluster(e2e_dir / "cluster", bins)
    try:
        c.start()
        c.install_crds(CRDS)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cluster_factory(e2e_dir: Path):
    """Fresh control planes for tests that need a cluster of their own (one stack each); each is
    stopped by PID when the session ends."""
    made: list[Cluster] = []

    def make(name: str, crds: list[Path] | None = None) -> Cluster:
        bins = require("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        c = Cluster(e2e_dir / f"cluster-{name}", bins)
        made.append(c)
        c.start()
        c.install_crds(CRDS if crds is None else crds)
        return c

    yield make
    for c in made:
        c.stop()


# ---- the sealed-secrets controller (tests/e2e/test_sealed_*.py) ---------------------------------
@dataclass
class SealedEnv:
    """A control plane of its own, the real sealed-secrets controller on it with a key made by
    `ksecrets keygen`, and a copy of the repository whose stack certificate is that key's."""

    cluster: Cluster
    controller: SealedSecretsController
    template: StackRepo  # copy it per test (StackRepo.copy) before changing anything
    stack: str
    key_manifest: str  # the key Secret `keygen --print-secret` printed (plaintext key, kept in memory)
    backup: Path
    env: dict[str, str]
    workdir: Path

    def repo(self, name: str) -> StackRepo:
        return StackRepo.copy(self.template.root, self.workdir / "repos" / name, self.stack, self.env)


def start_sealed_controller(
    cluster: Cluster, workdir: Path, keys_yaml: str | None, stack: str
) -> SealedSecretsController:
    """RBAC, the key Secret(s) (None: already applied), then the controller (as a local process;
    see harness/sealed_secrets.py)."""
    bins = require("sealed-secrets-controller")
    ctl = SealedSecretsController(cluster, workdir, bins["sealed-secrets-controller"], flags=stack_flags(stack))
    ctl.install_rbac()
    if keys_yaml is not None:
        ctl.install_keys(keys_yaml)
    return ctl.start()


@pytest.fixture(scope="session")
def sealed_controller_factory() -> Iterator:
    """Start the real sealed-secrets controller on a cluster with the given key Secrets; every
    controller started is stopped by PID when the session ends."""
    made: list[SealedSecretsController] = []

    def make(cluster: Cluster, workdir: Path, keys_yaml: str | None, stack: str) -> SealedSecretsController:
        ctl = start_sealed_controller(cluster, workdir, keys_yaml, stack)
        made.append(ctl)
        return ctl

    yield make
    for ctl in made:
        ctl.stop()


@pytest.fixture(scope="session")
def sealed_run_env() -> dict[str, str]:
    """Backup passphrase and churn key of this run (random; never written to the repo copies)."""
    return {
        "KSECRETS_BACKUP_PASSPHRASE": secrets.token_urlsafe(24),
        "KSECRETS_BACKUP_SCRYPT_LOG2N": "14",
        "KSECRETS_SEAL_KEY": secrets.token_urlsafe(32),
    }


@pytest.fixture(scope="session")
def sealed_stack() -> str:
    """The repository's (first) stack on the sealed-secrets backend."""
    stacks = sealed_stacks()
    if not stacks:
        pytest.fail("no stack uses the sealed-secrets backend", pytrace=False)
    return stacks[0]


@pytest.fixture(scope="session")
def sealed(cluster_factory, sealed_controller_factory, sealed_run_env, sealed_stack, e2e_dir: Path) -> SealedEnv:
    """A control plane of its own with the real controller on it, keyed by `ksecrets keygen`."""
    cluster = cluster_factory("sealed")
    workdir = e2e_dir / "sealed"
    template = StackRepo.copy(ROOT, workdir / "repos" / "template", sealed_stack, sealed_run_env)
    backup = workdir / "keys" / "keygen.ksbackup"
    backup.parent.mkdir(parents=True, exist_ok=True)
    key_manifest = keygen(template, backup)
    ctl = sealed_controller_factory(cluster, workdir / "controller", key_manifest, sealed_stack)
    return SealedEnv(cluster, ctl, template, sealed_stack, key_manifest, backup, dict(sealed_run_env), workdir)

"""The end-to-end suite: real programs built from their Go modules (`make e2e-tools`).

Every test here is marked ``e2e`` and runs only under `make e2e` (`make test` deselects them).
Processes listen on 127.0.0.1 only and are stopped by PID when the session ends, also when a test
fails; the logs of a failed run are kept and named in the failure report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness import procs
from tests.e2e.harness.kube import Cluster

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

    def make(name: str) -> Cluster:
        bins = require("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        c = Cluster(e2e_dir / f"cluster-{name}", bins)
        made.append(c)
        c.start()
        c.install_crds(CRDS)
        return c

    yield make
    for c in made:
        c.stop()

"""Issue 22 item 6: `ksecrets preview|up` over several stacks at once, through the Pulumi
Automation API (components/automation.py), with the real engine.

Real: the Pulumi CLI and engine driven by the Automation API of the pinned SDK, the Python language
host, the Kubernetes provider, kube-apiserver + kube-controller-manager. Simulated
(tests/e2e/harness/pulumi.py): helm-controller, marking each HelmRelease Ready while `up` waits.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux, external_namespaces
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject

PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
HEADER = re.compile(r"^=== (\S+): pulumi (preview|up) (ok|FAILED \(exit \d+\)) in [\d.]+ s$")


@pytest.fixture(scope="module")
def projects(cluster_factory, e2e_dir):
    bins = require(*PULUMI)
    cluster = cluster_factory("pulumi-many")
    bootstrap_flux(cluster)
    for ns in external_namespaces(ROOT, "staging"):
        cluster.ensure_namespace(ns)
    work = e2e_dir / "pulumi-many"
    text = (ROOT / "Pulumi.staging.yaml").read_text()
    staging = PulumiProject(work, bins, "staging", kubeconfig=cluster.kubeconfig).init()
    # A second stack of the same project (same program, its own state), and a stack file whose
    # stack was never created in the backend.
    PulumiProject(work, bins, "copy", kubeconfig=cluster.kubeconfig, stack_file=text).init()
    (staging.project / "Pulumi.ghost.yaml").write_text(text)
    return cluster, staging


def _ksecrets(project: PulumiProject, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ksecrets", *args, "--root", str(project.project)],
        cwd=project.project,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _blocks(stdout: str) -> dict[str, list[str]]:
    """Each stack's block: the lines from its header to the next header or the table."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        m = HEADER.match(line)
        if m:
            assert m.group(1) not in blocks, f"two blocks for {m.group(1)}"
            current = m.group(1)
            blocks[current] = [line]
        elif line.startswith("stack ") and "operation" in line:
            current = None
        elif current:
            blocks[current].append(line)
    return blocks


def test_preview_of_several_stacks_prints_each_whole_and_exits_with_the_worst(projects):
    cluster, staging = projects
    res = _ksecrets(staging, "preview", "--stack", "staging", "--stack", "copy", "--stack", "ghost", "--parallel", "2")
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr
    blocks = _blocks(res.stdout)
    assert set(blocks) == {"staging", "copy", "ghost"}
    for stack in ("staging", "copy"):
        body = "\n".join(blocks[stack])
        assert "ok in" in blocks[stack][0]
        # The engine's own lines of this stack only: its name, never the other's.
        assert re.search(rf"Previewing update \({stack}\)", body), body[-2000:]
        other = "copy" if stack == "staging" else "staging"
        assert f"({other})" not in body
    assert "FAILED (exit 2)" in blocks["ghost"][0]
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines()[-4:]}
    assert "ok" in rows["staging"] and "create" in rows["staging"], res.stdout[-1500:]
    assert "FAILED (2)" in rows["ghost"] and "pulumi stack init ghost" in rows["ghost"]
    assert "pulumi preview failed for ghost" in res.stderr
    # A preview persists nothing: nothing was created on the server.
    assert not (cluster.get("/apis/bitnami.com/v1alpha1/sealedsecrets") or {}).get("items")


def test_up_then_a_preview_with_no_changes(projects):
    cluster, staging = projects
    with HelmReleaseReady(cluster):
        up = _ksecrets(staging, "up", "--stack", "staging")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr
    assert (cluster.get("/apis/bitnami.com/v1alpha1/sealedsecrets") or {}).get("items")
    again = _ksecrets(staging, "preview", "--stack", "staging")
    assert again.returncode == 0, again.stdout[-2000:]
    row = again.stdout.splitlines()[-1]
    assert row.startswith("staging") and "same" in row and "create" not in row, again.stdout[-1500:]


def test_an_unknown_stack_is_refused_before_pulumi_runs(projects):
    _, staging = projects
    res = _ksecrets(staging, "up", "--stack", "nope")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "Pulumi.nope.yaml" in res.stderr
    assert "===" not in res.stdout

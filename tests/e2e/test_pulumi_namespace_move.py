"""Issue 10: a Namespace that moves between concerns keeps its URN under the real engine.

The README says every Namespace is registered under the one `namespaces` component, whichever
concern asks for it. The move that matters is into (or out of) Vault's hands: a sealed-secrets
stack lists the namespace `vault` in `k8s-secrets:namespaces`; phase `install` of a move to Vault
(`vaultMigration: install`, the vault block added, `vault` no longer listed: the loader refuses a
listed namespace Vault is installed in) makes it Vault's namespace. Without one home, the
Namespace's parent changes, so its URN does, and the engine plans create + delete of a live
namespace (with Vault's volumes in it later on).

Real: the CLI, language host and Kubernetes provider (tools/pulumi*), the API server. The engine's
plan (`preview --json`) holds no replace and no delete, `up` replaces and deletes nothing, and the
Namespace on the server is the same object (uid, creationTimestamp) with a canary ConfigMap still
inside it. Simulated: helm-controller (the harness marks each HelmRelease Ready while `pulumi up`
waits for it: tests/e2e/harness/pulumi.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux, external_namespaces
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject

PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
NS = "vault"
CANARY = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "canary", "namespace": NS},
    "data": {"lives": "here"},
}
# What the engine must never do to a live namespace.
DESTRUCTIVE = {"replace", "create-replacement", "delete-replaced", "delete", "discard", "remove-pending-replace"}
VAULT = {
    "chartVersion": "0.34.1",
    "namespace": NS,
    "operator": {"chartVersion": "1.4.1", "namespace": "vault-secrets-operator-system"},
}


def _type(urn: str) -> str:
    """The resource type of a URN (urn:pulumi:stack::project::parent$...$type::name)."""
    return urn.split("::")[2].split("$")[-1]


def _namespace_urns(project: PulumiProject) -> list[str]:
    return [
        r["urn"]
        for r in project.export()["deployment"]["resources"]
        if r["type"] == "kubernetes:core/v1:Namespace" and r.get("id") == NS and not r.get("external")
    ]


def test_a_listed_namespace_that_becomes_vaults_keeps_its_urn(cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI)
    cluster = cluster_factory("pulumi-nsmove")
    bootstrap_flux(cluster)
    for ns in external_namespaces(ROOT, "staging"):
        cluster.ensure_namespace(ns)
    doc = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())
    doc["config"]["k8s-secrets:namespaces"] = [NS]
    project = PulumiProject(
        e2e_dir / "pulumi-nsmove", bins, "staging", kubeconfig=cluster.kubeconfig, stack_file=yaml.safe_dump(doc)
    ).init()
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", timeout=900)

    before = cluster.get(f"/api/v1/namespaces/{NS}")
    assert before is not None, "the listed namespace was not created"
    urn_before = _namespace_urns(project)
    assert len(urn_before) == 1, urn_before
    cluster.apply([CANARY], field_manager="someone-else")  # an object Pulumi does not own

    # Phase `install` of a move to Vault: `vault` is now where the stack installs Vault.
    stack_file = project.project / "Pulumi.staging.yaml"
    doc = yaml.safe_load(stack_file.read_text())  # with the context `pulumi config set` wrote
    doc["config"]["k8s-secrets:namespaces"] = []
    doc["config"]["k8s-secrets:vault"] = VAULT
    doc["config"]["k8s-secrets:vaultMigration"] = "install"
    stack_file.write_text(yaml.safe_dump(doc))

    plan = project.run("preview", "--json", timeout=600).json()
    steps = plan["steps"]
    ns_steps = [s for s in steps if s["urn"] == urn_before[0]]
    # `--json` leaves unchanged resources out of `steps` (they are counted in changeSummary.same);
    # the labels change (Vault's namespace also warns on `restricted`): an update in place.
    assert [s["op"] for s in ns_steps] in ([], ["same"], ["update"]), json.dumps(ns_steps, indent=1)[:3000]
    destructive = [(s["op"], s["urn"]) for s in steps if s["op"] in DESTRUCTIVE]
    assert destructive == [], destructive
    creates = [s["urn"] for s in steps if s["op"] == "create"]
    assert any(
        _type(u) == "kubernetes:helm.toolkit.fluxcd.io/v2:HelmRelease" and u.endswith("/vault") for u in creates
    ), creates  # the move did happen: Vault is installed now
    assert [u for u in creates if _type(u) == "kubernetes:core/v1:Namespace"] == [
        u for u in creates if u.endswith("::vault-secrets-operator-system")
    ], creates
    summary = plan["changeSummary"]
    assert summary.get("delete", 0) == 0 and summary.get("replace", 0) == 0, summary

    with HelmReleaseReady(cluster):
        up = project.run("up", "--yes", "--skip-preview", timeout=900)
    resources = up.out[up.out.rfind("Resources:") :]
    assert "deleted" not in resources and "replaced" not in resources, resources

    after = cluster.get(f"/api/v1/namespaces/{NS}")
    assert after is not None and after["status"]["phase"] == "Active"
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    assert after["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"  # Vault's labels now
    assert cluster.get(f"/api/v1/namespaces/{NS}/configmaps/canary")["data"] == {"lives": "here"}
    assert _namespace_urns(project) == urn_before
    assert project.run("preview", "--expect-no-changes", timeout=600).ok

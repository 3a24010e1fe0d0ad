"""Issue 9, flow 1: every stack's k8s/ applied as Flux's kustomize-controller applies it.

Real: kube-apiserver 1.33 (schema validation of every kind, CRD validation of the vendored upstream
CRDs, Pod Security admission enforcing `restricted`), kube-controller-manager (Deployments create
ReplicaSets and Pods, which Pod Security admission then accepts or refuses), `kubectl kustomize`
and server-side apply with kustomize-controller's field manager.
Simulated (tests/e2e/harness/gitops.py): kustomize-controller and helm-controller themselves; the
charts' CRDs are the vendored upstream files and HelmReleases are marked Ready. Pods are never
scheduled: there is no scheduler or kubelet.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import apply_stack, diff_layer, live_generations, live_versions

STACKS = sorted(p.name for p in (ROOT / "k8s").iterdir() if (p / "apps").is_dir())


@pytest.fixture(scope="module", params=STACKS)
def applied(request, cluster_factory):
    stack = request.param
    cluster = cluster_factory(f"gitops-{stack}")
    results = apply_stack(cluster, ROOT / "k8s" / stack)
    return stack, cluster, results


def test_every_layer_applies_with_no_warning(applied):
    stack, cluster, results = applied
    for layer, res in results.items():
        assert res.warnings == [], f"{stack}/{layer}: the API server warned: {res.warnings}"
    for layer, res in results.items():
        missing = [k for k, v in live_versions(cluster, res.objects).items() if not v]
        assert missing == [], f"{stack}/{layer}: not on the server: {missing}"


def test_second_apply_changes_nothing(applied):
    """Flux's drift detection (a server-side dry-run apply against the live objects) finds nothing
    to change, and applying again leaves every object's spec where it was."""
    stack, cluster, results = applied
    for layer in ("sync", "infrastructure", "apps"):
        diff = diff_layer(cluster, stack, ROOT / "k8s" / stack / layer)
        assert diff == "", f"{stack}/{layer}: a second apply would change:\n{diff}"
    objects = [o for r in results.values() for o in r.objects]
    generations = live_generations(cluster, objects)
    again = apply_stack(cluster, ROOT / "k8s" / stack)
    assert all(r.warnings == [] for r in again.values())
    assert live_generations(cluster, objects) == generations


def test_pod_security_admits_every_pod(applied):
    """Each Deployment's Pods are created by the real ReplicaSet controller and admitted by the real
    Pod Security admission of the namespace's `restricted` level (a refused Pod shows up as the
    ReplicaSet's ReplicaFailure condition instead)."""
    stack, cluster, results = applied
    deployments = [o for o in results["apps"].objects if o["kind"] == "Deployment"]
    assert deployments, f"{stack}: no Deployment to check"
    for dep in deployments:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        level = cluster.get(f"/api/v1/namespaces/{ns}")["metadata"]["labels"].get("pod-security.kubernetes.io/enforce")
        assert level == "restricted", f"{ns}: enforce level is {level!r}"
        want = dep["spec"].get("replicas", 1)

        def pods_created() -> bool:
            pods = cluster.get(
                f"/api/v1/namespaces/{ns}/pods?labelSelector="
                + ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
            )["items"]
            failures = [
                c
                for rs in cluster.get(f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
                for c in rs.get("status", {}).get("conditions", [])
                if c["type"] == "ReplicaFailure"
            ]
            assert not failures, f"{ns}/{name}: pods refused: {failures[0]['message']}"
            return len(pods) >= want

        cluster.wait(f"{ns}/{name}: {want} pod(s) admitted", pods_created, timeout=90)

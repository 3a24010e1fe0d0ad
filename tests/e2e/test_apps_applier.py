"""Issue 13: the apps layer applies as its own least-privilege ServiceAccount, on the real API server.

Real: kube-apiserver 1.33 and its RBAC authorizer (including the escalation check on Roles),
server-side apply of `k8s/<stack>/apps/` authenticated as `<stack>-apps` in flux-system with a
TokenRequest token (what kustomize-controller's impersonation of spec.serviceAccountName amounts
to for the API server). Simulated as in tests/e2e/harness/gitops.py: kustomize-controller and
helm-controller themselves, and the monitoring namespace of the Prometheus installation.
"""

from __future__ import annotations

import pytest
import yaml

from ksecrets.config.load import load_stack

from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import FLUX_NAMESPACE, _apply_plain, apply_layer, bootstrap_flux, mark_helmreleases_ready
from tests.e2e.harness.kube import sa_user

STACKS = sorted(p.name for p in (ROOT / "k8s").iterdir() if (p / "apps").is_dir())


@pytest.fixture(scope="module", params=STACKS)
def applied(request, cluster_factory, tmp_path_factory):
    stack = request.param
    cluster = cluster_factory(f"applier-{stack}")
    folder = ROOT / "k8s" / stack
    bootstrap_flux(cluster)
    # The monitoring namespace belongs to the Prometheus installation the stack expects (simulated).
    cluster.ensure_namespace(load_stack(stack, ROOT).monitoring.namespace)
    sync = _apply_plain(cluster, stack, folder / "sync")
    infra = apply_layer(cluster, stack, folder / "infrastructure")
    mark_helmreleases_ready(cluster, infra.objects)
    (apps_ks,) = [o for o in sync.objects if o["metadata"]["name"] == f"{stack}-apps"]
    sa = apps_ks["spec"]["serviceAccountName"]
    kubeconfig = cluster.kubeconfig_for(sa, FLUX_NAMESPACE, tmp_path_factory.mktemp(stack) / "kubeconfig")
    apps = apply_layer(cluster, stack, folder / "apps", kubeconfig=kubeconfig)
    return stack, cluster, sa, kubeconfig, apps


def test_the_apps_layer_applies_as_its_service_account(applied):
    stack, cluster, sa, kubeconfig, apps = applied
    assert apps.warnings == []
    for obj in apps.objects:
        md = obj["metadata"]
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        kind = f"{obj['kind']}.{group}" if group else obj["kind"]
        got = cluster.kubectl("get", kind, md["name"], "-n", md["namespace"], "-o", "name", kubeconfig=kubeconfig)
        assert got.stdout.strip(), f"{stack}: {kind} {md['name']} not readable by {sa}"
    # A second apply as the same account (Flux's next reconcile) goes through too.
    assert apply_layer(cluster, stack, ROOT / "k8s" / stack / "apps", kubeconfig=kubeconfig).warnings == []


def test_it_may_do_nothing_else(applied):
    stack, cluster, sa, kubeconfig, apps = applied
    user = sa_user(sa, FLUX_NAMESPACE)
    namespaces = {o["metadata"]["namespace"] for o in apps.objects}
    app_ns = sorted(namespaces)[0]
    for verb, resource, ns in [
        ("create", "configmaps", app_ns),
        ("list", "secrets", app_ns),
        ("create", "secrets", "kube-system"),
        ("create", "deployments", "kube-system"),
        ("get", "secrets", "kube-system"),
        ("create", "namespaces", ""),
        ("create", "clusterrolebindings", ""),
        ("patch", "helmreleases", FLUX_NAMESPACE),
    ]:
        assert not cluster.can_i(verb, resource, ns, user=user), f"{user} may {verb} {resource} in {ns or 'cluster'}"
    # Kubernetes' escalation check: it cannot write a Role granting more than the layer's own Roles.
    greedy = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "greedy", "namespace": app_ns},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    }
    res = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=kustomize-controller",
        "-f",
        "-",
        input=yaml.safe_dump(greedy),
        kubeconfig=kubeconfig,
        check=False,
    )
    assert res.returncode != 0 and "forbidden" in res.stderr.lower(), res.stderr

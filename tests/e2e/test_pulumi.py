"""Issue 10: `pulumi preview` and `pulumi up` for real, per stack, against the harness's API server.

Real: the Pulumi CLI and engine, the Python language host, the Kubernetes provider (built from
their Go modules: tools/pulumi*), the program and its SDKs from .venv, a local file state backend
with the passphrase secrets provider; kube-apiserver + kube-controller-manager (namespace deletion,
garbage collection) answering every read, server-side apply and delete.
Simulated (tests/e2e/harness/pulumi.py, gitops.py): helm-controller. No chart is installed: the
vendored CRDs are applied by the cluster fixture, and each HelmRelease is marked Ready through the
status subresource while `pulumi up` waits for it.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.export import render
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.manifests.plan import object_id
from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux, external_namespaces
from tests.e2e.harness.kube import write_kubeconfig
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject

STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")
PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
# Pulumi-only annotations (components/kube.py); never in k8s/.
PULUMI_ONLY = ("pulumi.com/waitFor", "pulumi.com/skipAwait")


def _path(obj: dict) -> str:
    api, kind, md = obj["apiVersion"], obj["kind"], obj["metadata"]
    # The REST plural of every kind a stack exports: lower case, "y" → "ies", else "+s".
    low = kind.lower()
    plural = low[:-1] + "ies" if low.endswith("y") else low + "s"
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    ns = f"/namespaces/{md['namespace']}" if md.get("namespace") else ""
    return f"{base}{ns}/{plural}/{md['name']}"


def _exported(stack: str) -> list[dict]:
    """What `ksecrets export` writes for the stack, less what is for Flux only (the apps layer's
    applier ServiceAccount and RBAC: `pulumi up` applies as itself)."""
    cfg = load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    flux_only = {object_id(p.obj) for p in plan_stack(cfg) if not p.pulumi}
    rendered = render(cfg)
    return [o for layer in ("infrastructure", "apps") for o in rendered.objects[layer] if object_id(o) not in flux_only]


def _differences(want, live, where: str = "") -> list[str]:
    """Every field of ``want`` must be in ``live`` with the same value (the server adds defaults)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [f"{where}: {live!r} is not a mapping"]
        out = []
        for k, v in want.items():
            if k not in live:
                out.append(f"{where}.{k}: missing on the server")
            else:
                out += _differences(v, live[k], f"{where}.{k}")
        return out
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [f"{where}: {live!r} != {want!r}"]
        return [d for i, (w, l) in enumerate(zip(want, live)) for d in _differences(w, l, f"{where}[{i}]")]
    return [] if want == live else [f"{where}: server has {live!r}, export has {want!r}"]


@pytest.fixture(scope="module", params=STACKS)
def deployed(request, cluster_factory, e2e_dir: Path):
    """One stack on a cluster of its own: preview, then up (helm-controller simulated)."""
    stack = request.param
    bins = require(*PULUMI)
    cluster = cluster_factory(f"pulumi-{stack}")
    bootstrap_flux(cluster)  # flux-system, which `flux bootstrap` creates (HelmReleases live there)
    for ns in external_namespaces(ROOT, stack):  # what runs beside the stack (simulated, as in gitops)
        cluster.ensure_namespace(ns)
    project = PulumiProject(e2e_dir / f"pulumi-{stack}", bins, stack, kubeconfig=cluster.kubeconfig).init()
    preview = project.run("preview", "--diff")
    with HelmReleaseReady(cluster) as hr:
        up = project.run("up", "--yes", "--skip-preview", timeout=900)
    return stack, cluster, project, preview, up, hr


def test_preview_up_then_no_changes(deployed):
    stack, cluster, project, preview, up, hr = deployed
    assert preview.ok and up.ok
    objects = _exported(stack)
    if any(o["kind"] == "HelmRelease" for o in objects):
        # Said plainly: helm-controller did not run; the harness marked these Ready.
        assert hr.marked, f"{stack}: no HelmRelease was marked Ready by the simulated helm-controller"
    again = project.run("preview", "--expect-no-changes")
    assert again.ok, again.out


def test_objects_on_the_server_equal_the_export(deployed):
    stack, cluster, project, *_ = deployed
    problems = []
    for obj in _exported(stack):
        live = cluster.get(_path(obj))
        if live is None:
            problems.append(f"{_path(obj)}: not on the server")
            continue
        live = copy.deepcopy(live)
        annotations = live["metadata"].get("annotations") or {}
        for key in PULUMI_ONLY:
            annotations.pop(key, None)
        problems += [f"{_path(obj)}{d}" for d in _differences(obj, live)]
    assert problems == [], "\n".join(problems)


def test_state_holds_no_plaintext_and_the_cluster_is_read(deployed):
    stack, cluster, project, *_ = deployed
    state = json.dumps(project.export())
    assert "PULUMI_CONFIG_PASSPHRASE" not in state
    resources = project.export()["deployment"]["resources"]
    reads = [r for r in resources if r.get("external") and r["type"] == "kubernetes:core/v1:Namespace"]
    assert [r["id"] for r in reads] == ["kube-system"], "the cluster check read is not in state"
    providers = [r for r in resources if r["type"] == "pulumi:providers:kubernetes" and "default" not in r["urn"]]
    assert len(providers) == 1 and providers[0]["inputs"]["context"] == "e2e"
    defaults = [r["urn"] for r in resources if r["type"] == "pulumi:providers:kubernetes" and "default" in r["urn"]]
    assert defaults == [], f"{stack}: resources registered through the default provider: {defaults}"


def test_destroy_leaves_nothing_the_stack_created(deployed):
    stack, cluster, project, *_ = deployed
    project.run("destroy", "--yes", timeout=900)
    objects = _exported(stack)

    def all_gone() -> bool:
        return all(cluster.get(_path(o)) is None for o in objects)

    cluster.wait(f"{stack}: every object deleted", all_gone, timeout=180)
    assert cluster.get("/api/v1/namespaces/kube-system") is not None, "the read-only check deleted kube-system"


# ---- a preview that cannot reach or read the cluster fails -----------------------------------
@pytest.fixture(scope="module")
def spare_cluster(cluster_factory):
    cluster = cluster_factory("pulumi-reach")
    bootstrap_flux(cluster)
    for stack in STACKS:
        for ns in external_namespaces(ROOT, stack):
            cluster.ensure_namespace(ns)
    return cluster


def test_the_stack_context_is_used_never_the_current_one(spare_cluster, e2e_dir: Path):
    """The kubeconfig's current-context reaches a live cluster; the staging stack names its own
    context (`staging`), which this kubeconfig does not have: the explicit provider refuses
    instead of following the current context."""
    bins = require(*PULUMI)
    project = PulumiProject(e2e_dir / "pulumi-context", bins, "staging", kubeconfig=spare_cluster.kubeconfig,
                            context=None).init()
    res = project.run("preview", check=False, timeout=300)
    assert not res.ok
    assert 'context "staging" does not exist' in res.out, res.out[-3000:]


@pytest.mark.parametrize("how", ["unreachable", "refused"])
def test_preview_fails_when_the_cluster_cannot_be_read(how, spare_cluster, e2e_dir: Path):
    bins = require(*PULUMI)
    work = e2e_dir / f"pulumi-{how}"
    work.mkdir(parents=True, exist_ok=True)
    if how == "unreachable":
        from tests.e2e.harness.procs import free_port

        kubeconfig = write_kubeconfig(work / "kubeconfig", f"https://127.0.0.1:{free_port()}",
                                      spare_cluster.ca.cert_path, cert=spare_cluster.admin_cert)
    else:
        kubeconfig = write_kubeconfig(work / "kubeconfig", spare_cluster.server, spare_cluster.ca.cert_path,
                                      token="not-a-valid-token")
    project = PulumiProject(work, bins, "staging", kubeconfig=kubeconfig).init()
    res = project.run("preview", check=False, timeout=300)
    assert not res.ok, f"preview went green without reading the cluster ({how}):\n{res.out[-3000:]}"
    assert "staging-cluster-check" in res.out, res.out[-3000:]


# ---- manual backend: values are ciphertext in state, plaintext only in the Secret -------------
CANARY = "canary-7f3e9d21-manual-value"


def test_manual_values_stay_ciphertext_in_state(cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI)
    cluster = cluster_factory("pulumi-manual")
    bootstrap_flux(cluster)
    stack_file = yaml.safe_dump({"config": {
        "kubernetes:context": "e2e",
        "k8s-secrets:backend": "manual",
        "k8s-secrets:monitoring": {"enabled": False},
        "k8s-secrets:apps": [{"name": "web", "namespace": "web", "secretName": "web-secrets",
                              "keys": ["PASSWORD"]}],
    }})
    project = PulumiProject(e2e_dir / "pulumi-manual", bins, "manualtest", kubeconfig=cluster.kubeconfig,
                            stack_file=stack_file).init()
    project.run("config", "set", "--secret", "--path", "k8s-secrets:manualValues.web-secrets.PASSWORD", CANARY)
    stack_text = (project.project / "Pulumi.manualtest.yaml").read_text()
    assert CANARY not in stack_text and "secure:" in stack_text
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", timeout=600)
    live = cluster.get("/api/v1/namespaces/web/secrets/web-secrets")
    assert base64.b64decode(live["data"]["PASSWORD"]).decode() == CANARY  # it did reach the cluster
    exported = project.run("stack", "export").out
    forms = {"raw": CANARY, "base64": base64.b64encode(CANARY.encode()).decode(),
             "hex": CANARY.encode().hex()}
    leaks = [name for name, form in forms.items() if form in exported]
    assert leaks == [], f"the canary is in `pulumi stack export` as {leaks}"
    secret = next(r for r in json.loads(exported)["deployment"]["resources"]
                  if r["type"] == "kubernetes:core/v1:Secret")
    assert secret["outputs"]["data"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    log = (project.workdir / "pulumi.log").read_text()
    assert not any(form in log for form in forms.values()), "the canary is in pulumi's output"


# ---- the CrossGuard pack under the real engine ------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_policy_pack_passes_on_every_stack(stack, spare_cluster, e2e_dir: Path):
    bins = require(*PULUMI)
    project = PulumiProject(e2e_dir / f"pulumi-policy-{stack}", bins, stack,
                            kubeconfig=spare_cluster.kubeconfig).init()
    res = project.run("preview", "--policy-pack", project.policy_pack(), timeout=600)
    assert "k8s-secrets-guardrails@v0.1.0" in res.out, res.out[-3000:]


LEAK = '''
import pulumi_kubernetes as _k8s
_k8s.core.v1.Secret("my-app/leaked", metadata={"name": "leaked", "namespace": "my-app"},
                    string_data={"TOKEN": "policy-e2e-value"}, opts=pulumi.ResourceOptions(provider=provider))
'''


def test_a_stack_that_breaks_a_policy_fails_with_its_message(spare_cluster, e2e_dir: Path):
    """A program change that puts a plain Secret in the sealed-secrets stack: preview fails with
    the pack's own message (the engine, the pack and pulumi-policy are the real ones)."""
    bins = require(*PULUMI)
    project = PulumiProject(e2e_dir / "pulumi-policy-broken", bins, "staging",
                            kubeconfig=spare_cluster.kubeconfig).init()
    main = project.project / "__main__.py"
    main.write_text(main.read_text() + LEAK)
    res = project.run("preview", "--policy-pack", project.policy_pack(), check=False, timeout=600)
    assert not res.ok
    # The provider's Check turns stringData into data before the pack sees the inputs.
    assert ("Secret my-app/leaked has data in a sealed-secrets stack: its values would leave the "
            "sealed-secrets backend; seal them (ksecrets seal) or push them to Vault (ksecrets vault push)"
            ) in res.out, res.out[-3000:]
    assert "[mandatory]" in res.out
    assert "no-secret-data-in-gitops-stack" in res.out
    assert "policy-e2e-value" not in res.out

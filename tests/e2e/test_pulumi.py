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
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.usecases.export import render
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.manifests.plan import object_id
from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux, external_namespaces
from tests.e2e.harness.kube import write_kubeconfig
from tests.e2e.harness import procs
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject

STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")
PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
# Pulumi-only annotations (components/kube.py); never in k8s/.
PULUMI_ONLY = ("pulumi.com/waitFor", "pulumi.com/skipAwait", "pulumi.com/patchFieldManager")


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


def _resource_versions(cluster, stack: str) -> dict[str, str]:
    return {
        _path(o): (cluster.get(_path(o)) or {}).get("metadata", {}).get("resourceVersion", "absent")
        for o in _exported(stack)
    }


def test_read_only_credentials_preview_but_cannot_up(deployed, e2e_dir: Path):
    """CI's preview credentials (.ci/preview-readonly.yaml: the built-in `view` role) on the real
    API server: CI's own check (.ci/preview-credentials.sh, the very file ci.yml runs) passes them
    and refuses the admin's; `pulumi preview` of the deployed stack is green with them, also for a
    change; `pulumi up` of that change is forbidden and nothing on the server changes."""
    stack, cluster, project, *_ = deployed
    work = e2e_dir / f"pulumi-readonly-{stack}"
    work.mkdir(parents=True, exist_ok=True)
    cluster.kubectl("apply", "-f", str(ROOT / ".ci" / "preview-readonly.yaml"))
    user = cluster.ca.issue("ci-preview", "k8s-secrets-preview", client=True)
    readonly = write_kubeconfig(work / "readonly.kubeconfig", cluster.server, cluster.ca.cert_path, cert=user)
    secrets = cluster.kubectl("auth", "can-i", "get", "secrets", "--all-namespaces", kubeconfig=readonly, check=False)
    assert secrets.stdout.strip() == "no", "the preview credentials may read Secrets"

    # CI's check, the very script, from a folder whose stack file names the context "e2e".
    ci = project.project / ".ci"
    ci.mkdir(exist_ok=True)
    for name in ("stacks.py", "preview-credentials.sh"):
        shutil.copyfile(ROOT / ".ci" / name, ci / name)
    kubectl_dir = str(cluster.bins["kubectl"].parent)

    def ci_check(kubeconfig: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{kubectl_dir}:{os.environ['PATH']}"}
        return subprocess.run(
            ["bash", str(ci / "preview-credentials.sh"), stack], env=env, capture_output=True, text=True, timeout=60
        )

    ok = ci_check(readonly)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = ci_check(cluster.kubeconfig)
    assert refused.returncode == 1
    assert (
        f"::error::the preview kubeconfig of {stack} may create: give preview read-only credentials" in refused.stdout
    )

    # As in ci.yml, both jobs write their kubeconfig to one path ($RUNNER_TEMP/kubeconfig): the SDK
    # keeps that path in the provider's state, so a different path would be a provider update.
    # The deploy job's `up` (admin) then the preview job (read-only) at that same path.
    shared = work / "kubeconfig"
    shutil.copyfile(cluster.kubeconfig, shared)
    ci_path = {"KUBECONFIG": str(shared)}
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", env=ci_path, timeout=900)
    before = _resource_versions(cluster, stack)
    shutil.copyfile(readonly, shared)
    ro = ci_path
    assert project.run("preview", "--expect-no-changes", env=ro, timeout=600).ok
    # A change: one more listed namespace. Preview shows it; up is refused by the API server.
    stack_file = project.project / f"Pulumi.{stack}.yaml"
    original = stack_file.read_text()
    doc = yaml.safe_load(original)
    doc["config"]["k8s-secrets:namespaces"] = [*doc["config"].get("k8s-secrets:namespaces", []), "ro-probe"]
    stack_file.write_text(yaml.safe_dump(doc))
    try:
        plan = project.run("preview", "--json", env=ro, timeout=600).json()
        creates = [s["urn"] for s in plan["steps"] if s["op"] == "create"]
        assert [u for u in creates if u.endswith("kubernetes:core/v1:Namespace::ro-probe")], plan["changeSummary"]
        up = project.run("up", "--yes", "--skip-preview", env=ro, check=False, timeout=600)
        assert not up.ok, up.out[-3000:]
        # Server-side apply: the authorizer asks for `patch` (the verb of an apply), then `create`.
        assert re.search(
            r'namespaces "ro-probe" is forbidden: User "k8s-secrets-preview" cannot (patch|create) '
            r'resource "namespaces"',
            up.out,
        ), up.out[-3000:]
    finally:
        stack_file.write_text(original)
        shutil.copyfile(cluster.kubeconfig, shared)  # the deploy job's credentials again (destroy, below)
    assert cluster.get("/api/v1/namespaces/ro-probe") is None
    assert _resource_versions(cluster, stack) == before
    assert project.run("preview", "--expect-no-changes", env=ci_path, timeout=600).ok  # the state is as it was


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
    project = PulumiProject(
        e2e_dir / "pulumi-context", bins, "staging", kubeconfig=spare_cluster.kubeconfig, context=None
    ).init()
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

        kubeconfig = write_kubeconfig(
            work / "kubeconfig",
            f"https://127.0.0.1:{free_port()}",
            spare_cluster.ca.cert_path,
            cert=spare_cluster.admin_cert,
        )
    else:
        kubeconfig = write_kubeconfig(
            work / "kubeconfig", spare_cluster.server, spare_cluster.ca.cert_path, token="not-a-valid-token"
        )
    project = PulumiProject(work, bins, "staging", kubeconfig=kubeconfig).init()
    res = project.run("preview", check=False, timeout=300)
    assert not res.ok, f"preview went green without reading the cluster ({how}):\n{res.out[-3000:]}"
    assert "staging-cluster-check" in res.out, res.out[-3000:]


def test_a_run_stopped_midway_leaves_no_plugin_running(spare_cluster, e2e_dir: Path):
    """The harness stops a `pulumi` run that times out or fails by PID, with its language host and
    provider: those run in process groups of their own, so killing the CLI's group would leave them."""
    bins = require(*PULUMI)
    project = PulumiProject(e2e_dir / "pulumi-stopped", bins, "staging", kubeconfig=spare_cluster.kubeconfig).init()
    proc = subprocess.Popen(
        [str(project.bin / "pulumi"), "preview", "--non-interactive", "--stack", "staging"],
        cwd=project.project,
        env=project.env(None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def below() -> dict[int, str]:
        found = {}
        for pid in procs.descendants(proc.pid):
            try:
                found[pid] = Path(f"/proc/{pid}/comm").read_text().strip()  # at most 15 characters
            except OSError:
                pass
        return found

    try:
        procs.wait_for(
            "the language host and the provider",
            lambda: {"pulumi-language", "pulumi-resource"} <= {name[:15] for name in below().values()},
            120,
        )
        running = below()
        plugins = [pid for pid, name in running.items() if name.startswith("pulumi-")]
        assert any(os.getpgid(pid) != os.getpgid(proc.pid) for pid in plugins), "the plugins share the CLI's group"
    finally:
        procs.kill_tree(proc.pid)
        proc.wait(30)
    procs.wait_for(
        f"every process below the CLI stopped ({sorted(running.values())})",
        lambda: all(_state(pid) in ("gone", "Z") for pid in running),
        30,
    )


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# ---- manual backend: values are ciphertext in state, plaintext only in the Secret -------------
CANARY = "canary-7f3e9d21-manual-value"


def test_manual_values_stay_ciphertext_in_state(cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI)
    cluster = cluster_factory("pulumi-manual")
    bootstrap_flux(cluster)
    stack_file = yaml.safe_dump(
        {
            "config": {
                "kubernetes:context": "e2e",
                "k8s-secrets:backend": "manual",
                "k8s-secrets:monitoring": {"enabled": False},
                "k8s-secrets:apps": [
                    {"name": "web", "namespace": "web", "secretName": "web-secrets", "keys": ["PASSWORD"]}
                ],
            }
        }
    )
    project = PulumiProject(
        e2e_dir / "pulumi-manual", bins, "manualtest", kubeconfig=cluster.kubeconfig, stack_file=stack_file
    ).init()
    project.run("config", "set", "--secret", "--path", "k8s-secrets:manualValues.web-secrets.PASSWORD", CANARY)
    stack_text = (project.project / "Pulumi.manualtest.yaml").read_text()
    assert CANARY not in stack_text and "secure:" in stack_text
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", timeout=600)
    live = cluster.get("/api/v1/namespaces/web/secrets/web-secrets")
    assert base64.b64decode(live["data"]["PASSWORD"]).decode() == CANARY  # it did reach the cluster
    exported = project.run("stack", "export").out
    forms = {"raw": CANARY, "base64": base64.b64encode(CANARY.encode()).decode(), "hex": CANARY.encode().hex()}
    leaks = [name for name, form in forms.items() if form in exported]
    assert leaks == [], f"the canary is in `pulumi stack export` as {leaks}"
    secret = next(
        r for r in json.loads(exported)["deployment"]["resources"] if r["type"] == "kubernetes:core/v1:Secret"
    )
    assert secret["outputs"]["data"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    log = (project.workdir / "pulumi.log").read_text()
    assert not any(form in log for form in forms.values()), "the canary is in pulumi's output"


# ---- the CrossGuard pack under the real engine ------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_policy_pack_passes_on_every_stack(stack, spare_cluster, e2e_dir: Path):
    bins = require(*PULUMI)
    project = PulumiProject(e2e_dir / f"pulumi-policy-{stack}", bins, stack, kubeconfig=spare_cluster.kubeconfig).init()
    res = project.run("preview", "--policy-pack", project.policy_pack(), timeout=600)
    assert "k8s-secrets-guardrails@v0.1.0" in res.out, res.out[-3000:]


LEAK = """
import pulumi_kubernetes as _k8s
_k8s.core.v1.Secret("my-app/leaked", metadata={"name": "leaked", "namespace": "my-app"},
                    string_data={"TOKEN": "policy-e2e-value"}, opts=pulumi.ResourceOptions(provider=provider))
"""


def test_a_stack_that_breaks_a_policy_fails_with_its_message(spare_cluster, e2e_dir: Path):
    """A program change that puts a plain Secret in the sealed-secrets stack: preview fails with
    the pack's own message (the engine, the pack and pulumi-policy are the real ones)."""
    bins = require(*PULUMI)
    project = PulumiProject(
        e2e_dir / "pulumi-policy-broken", bins, "staging", kubeconfig=spare_cluster.kubeconfig
    ).init()
    main = project.project / "__main__.py"
    main.write_text(main.read_text() + LEAK)
    res = project.run("preview", "--policy-pack", project.policy_pack(), check=False, timeout=600)
    assert not res.ok
    # The provider's Check turns stringData into data before the pack sees the inputs.
    assert (
        "Secret my-app/leaked has data in a sealed-secrets stack: its values would leave the "
        "sealed-secrets backend; seal them (ksecrets seal) or push them to Vault (ksecrets vault push)"
    ) in res.out, res.out[-3000:]
    assert "[mandatory]" in res.out
    assert "no-secret-data-in-gitops-stack" in res.out
    assert "policy-e2e-value" not in res.out


# ---- the CLI knows its version ------------------------------------------------------------------
def test_pulumi_version_is_the_pinned_one(tmp_path: Path):
    """tools/build.py stamps the CLI as upstream's release build does (-X ...version.Version)."""
    from tests.e2e.harness import _build_module

    (pinned,) = [p.version for p in _build_module().programs() if p.name == "pulumi"]
    bins = require("pulumi")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PULUMI_HOME": str(tmp_path),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    out = subprocess.run([str(bins["pulumi"]), "version"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{pinned}\n" and pinned.startswith("v3."), out.stdout
    gomod = (ROOT / "tools" / "pulumi" / "go.mod").read_text()
    assert f"github.com/pulumi/pulumi/pkg/v3 {pinned}" in gomod

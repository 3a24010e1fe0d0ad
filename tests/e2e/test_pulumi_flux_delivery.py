"""Issue 22 item 4: `delivery: flux`, end to end with the real Pulumi engine and the real Flux controllers.

Real: the Pulumi CLI, engine, Python language host and Kubernetes provider (harness/pulumi.py);
kube-apiserver + kube-controller-manager; source-controller and kustomize-controller v1.9.6
(harness/flux.py) reconciling the project's tree from a Git server on 127.0.0.1
(harness/gitserver.py); `ksecrets export` on that tree; the CrossGuard pack; the Automation API
runner of `ksecrets preview --all-stacks` (components/automation.py).

Simulated, one named place each: helm-controller and the chart repositories (gitops.HelmStandIn
marks the sealed-secrets HelmRelease and HelmRepository Ready), the scheduler and kubelet
(kubelet.PodStandIn), and the `flux-system` GitRepository that `flux bootstrap` creates (applied
once; with `delivery: flux` the stack's sync/ Kustomizations are Pulumi's, not bootstrap's).

The stack is a manual-backend one: its Secret's value lives in Pulumi config only, so it is the
one app-side object Pulumi keeps; everything else of both layers comes from Git through Flux.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.usecases.export import render
from tests.e2e.conftest import CRDS, require
from tests.e2e.harness import ROOT, missing_binaries
from tests.e2e.harness.flux import FluxControllers, crd_names, revision
from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.pulumi import PulumiProject

PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
FLUX = ("source-controller", "kustomize-controller")
STACK = "fluxdev"
VALUE = "flux-delivery-7c2b-manual-value"
FIELD_MANAGER = f"pulumi-k8s-secrets-{STACK}"
STACK_CONFIG = {
    "kubernetes:context": "e2e",
    "k8s-secrets:backend": "manual",
    "k8s-secrets:delivery": "flux",
    "k8s-secrets:monitoring": {"enabled": False},
    "k8s-secrets:apps": [
        {
            "name": "web",
            "namespace": "web",
            "secretName": "web-secrets",
            "keys": ["PASSWORD"],
            "deployments": [{"name": "web", "image": "ghcr.io/stefanprodan/podinfo:6.7.1", "envFrom": True}],
        }
    ],
}


def _managers(obj: dict) -> set[str]:
    return {m["manager"] for m in obj["metadata"].get("managedFields") or []}


def _custom_resources(state: dict) -> dict[str, dict]:
    """The state's Kubernetes objects Pulumi owns (not providers, not components, not reads)."""
    out = {}
    for r in state["deployment"]["resources"]:
        if not r["type"].startswith("kubernetes:") or r.get("external") or not r.get("custom", True):
            continue
        out[r["urn"].rsplit("::", 1)[1] + " " + r["type"]] = r
    return out


def test_flux_delivery_end_to_end(cluster_factory, e2e_dir: Path):
    missing = missing_binaries(FLUX)
    if missing:
        pytest.skip(f"Flux controllers not built: {', '.join(missing)}; run `make e2e-tools`")
    bins = require(*PULUMI, *FLUX)
    workdir = e2e_dir / "flux-delivery"
    flux_crds = crd_names()
    keep = [
        f for f in CRDS if not any(d and d["metadata"]["name"] in flux_crds for d in yaml.safe_load_all(f.read_text()))
    ]
    cluster = cluster_factory("flux-delivery", crds=keep)
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()

    # The project's tree with the flux-delivered stack and its export, pushed to the Git server.
    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    stack_text = yaml.safe_dump({"config": STACK_CONFIG}, sort_keys=False)
    (ws.root / f"Pulumi.{STACK}.yaml").write_text(stack_text)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ksecrets"), "export", "--stack", STACK], cwd=ws.root, check=True, timeout=300
    )
    sha = ws.commit("fluxdev: a flux-delivered stack")
    ws.push()
    cfg = load_stack_file(ws.root / f"Pulumi.{STACK}.yaml")
    assert cfg.delivery == "flux"
    rendered = render(cfg)

    for ns in external_namespaces(ws.root, STACK):
        cluster.ensure_namespace(ns)
    # What `flux bootstrap` creates: the GitRepository only (the sync/ Kustomizations are Pulumi's).
    cluster.apply([flux.git_repository(server.url)], field_manager="flux-bootstrap")
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    flux.start()
    try:
        project = PulumiProject(
            workdir / "pulumi", bins, STACK, kubeconfig=cluster.kubeconfig, stack_file=stack_text
        ).init()
        # the committed export the preview compares: the layers and the cluster's Flux entry point
        (project.project / "k8s").symlink_to(ws.root / "k8s")
        (project.project / "clusters").symlink_to(ws.root / "clusters")
        project.run("config", "set", "--secret", "--path", "k8s-secrets:manualValues.web-secrets.PASSWORD", VALUE)

        # 1. The preview plans exactly the sync/ Kustomizations and the manual Secret, and says
        # what Flux applies from Git.
        preview = project.run("preview", "--diff", timeout=600)
        assert f"delivery flux: k8s/{STACK}/ is up to date with Pulumi.{STACK}.yaml" in preview.out, preview.out
        assert f"{len(rendered.objects['apps'])} in k8s/{STACK}/apps" in preview.out, preview.out
        planned = project.run("preview", "--json", timeout=600).json()
        creates = sorted(
            s["urn"].rsplit("::", 1)[1]
            for s in planned["steps"]
            if s["op"] == "create" and s["urn"].split("::")[2].rsplit("$", 1)[-1].startswith("kubernetes:")
        )
        assert creates == sorted(
            ["flux-system/fluxdev-infrastructure", "flux-system/fluxdev-apps", "web/web-secrets"]
        ), creates

        # 2. `pulumi up` creates the Flux objects (awaiting the infrastructure layer, which creates
        # the Secret's namespace), then the Secret; Flux applies both layers from Git to Ready.
        project.run("up", "--yes", "--skip-preview", timeout=900)
        want = revision(sha)
        flux.wait_ready(f"{STACK}-infrastructure", want, timeout=300)
        apps = flux.wait_ready(f"{STACK}-apps", want, timeout=300)
        inventory = {e["id"] for e in apps["status"]["inventory"]["entries"]}
        assert len(inventory) == len(rendered.objects["apps"]), sorted(inventory)
        live_secret = cluster.get("/api/v1/namespaces/web/secrets/web-secrets")
        assert base64.b64decode(live_secret["data"]["PASSWORD"]).decode() == VALUE
        assert FIELD_MANAGER in _managers(live_secret)
        deployment = cluster.get("/apis/apps/v1/namespaces/web/deployments/web")
        assert _managers(deployment) & {"kustomize-controller"}
        assert FIELD_MANAGER not in _managers(deployment), _managers(deployment)
        assert (deployment.get("status") or {}).get("readyReplicas", 0) >= 1
        ks = flux.kustomization(f"{STACK}-apps")
        assert FIELD_MANAGER in _managers(ks)

        # 3. Pulumi's state holds the two Kustomizations and the manual Secret, no app object.
        owned = _custom_resources(project.export())
        assert sorted(owned) == sorted(
            [
                "flux-system/fluxdev-apps kubernetes:kustomize.toolkit.fluxcd.io/v1:Kustomization",
                "flux-system/fluxdev-infrastructure kubernetes:kustomize.toolkit.fluxcd.io/v1:Kustomization",
                "web/web-secrets kubernetes:core/v1:Secret",
            ]
        ), sorted(owned)
        assert VALUE not in project.run("stack", "export").out
        outputs = project.outputs()
        assert outputs["delivery"] == "flux"

        # 4. No fight: Flux reconciles again (it writes status, finalizers, its labels), and a
        # no-change preview shows no changes; a second `up` changes nothing either.
        stamp = flux.request_reconcile("Kustomization", f"{STACK}-apps")
        flux.wait_condition(
            f"{STACK}-apps",
            lambda k: (
                (k.get("status") or {}).get("lastHandledReconcileAt") == stamp
                and any(c["type"] == "Ready" and c["status"] == "True" for c in k["status"].get("conditions", []))
            ),
            "reconciled again",
        )
        again = project.run("preview", "--expect-no-changes", timeout=600)
        assert again.ok, again.out
        up_again = project.run("up", "--yes", "--skip-preview", "--expect-no-changes", timeout=600)
        assert up_again.ok, up_again.out

        # 5. The CrossGuard pack, and `ksecrets preview` (the Automation API runner), on this stack.
        # (a copy of the pack beside the project's stack file: the pack reads the backend of a stack
        # the repository does not hold from Pulumi.<stack>.yaml next to its own folder)
        pack = project.project / "policy-pack"
        shutil.copytree(ROOT / "policy", pack, ignore=shutil.ignore_patterns("__pycache__"))
        policy = project.run("preview", "--policy-pack", project.policy_pack(pack), timeout=600)
        assert "k8s-secrets-guardrails@v0.1.0" in policy.out, policy.out[-3000:]
        many = subprocess.run(
            [str(project.python), "-m", "components.automation", "preview", STACK, "--root", str(project.project)],
            cwd=project.project,
            env=project.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert many.returncode == 0, many.stdout[-3000:] + many.stderr[-3000:]
        assert f"=== {STACK}: pulumi preview ok" in many.stdout and "delivery flux:" in many.stdout, many.stdout

        # 6. A config change that is not exported yet: the preview names the file Flux would apply
        # differently (the apps' change is visible in review), and plans no Pulumi change for it.
        project.run("config", "set", "--path", "k8s-secrets:apps[0].deployments[0].replicas", "2")
        changed = project.run("preview", "--expect-no-changes", timeout=600)
        assert f"changed: k8s/{STACK}/apps/deployment-web.yaml" in changed.out, changed.out
        assert "differ from what" in changed.out
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        server.stop()

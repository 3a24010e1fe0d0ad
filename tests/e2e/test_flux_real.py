"""Issue 19: the real source-controller and kustomize-controller reconcile k8s/ from a Git server.

Real: kube-apiserver + kube-controller-manager, source-controller v1.9.6 and kustomize-controller
v1.9.6 (built from their modules, CRDs from the same modules, Flux's own RBAC from the flux2
module; harness/flux.py), a Git server on 127.0.0.1 (git's own http-backend over smart HTTP;
harness/gitserver.py) holding a commit of the project's tree, the sealed-secrets controller
v0.36.6 with a key from `ksecrets keygen`, and `ksecrets seal --stack` / `export` on that tree.
Flux evaluates the stack's ``dependsOn``, ``wait``, ``healthCheckExprs``, ``serviceAccountName``
(impersonation), prune and drift correction itself.

Simulated, one named place each: helm-controller and the chart repositories on the internet
(gitops.HelmStandIn marks HelmReleases and HelmRepositories Ready); the scheduler and kubelet
(kubelet.PodStandIn binds Pods and reports them running once their Secrets exist); what `flux
bootstrap` writes (flux.FluxControllers.bootstrap: the GitRepository and the sync/ Kustomizations,
applied once).

The tests of this module run in order on one cluster, each starting from the previous commit.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ksecrets.config.load import load_stack
from tests.e2e.conftest import CRDS
from tests.e2e.harness import ROOT, binaries, missing_binaries
from tests.e2e.harness.flux import FluxControllers, condition, crd_names, revision
from tests.e2e.harness.gitops import HelmStandIn, build, external_namespaces
from tests.e2e.harness.gitserver import GitServer, Workspace
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.kubelet import PodStandIn
from tests.e2e.harness.sealed_secrets import (
    SealedSecretsController,
    StackRepo,
    keygen,
    kubectl_secret_data,
    secret_data,
    synced,
)

FLUX = ("source-controller", "kustomize-controller")


@dataclass
class FluxEnv:
    cluster: Cluster
    flux: FluxControllers
    sealed: SealedSecretsController
    server: GitServer
    ws: Workspace
    repo: StackRepo
    stack: str
    pods: PodStandIn
    helm: HelmStandIn
    workdir: Path
    template: StackRepo

    @property
    def infra(self) -> str:
        return f"{self.stack}-infrastructure"

    @property
    def apps(self) -> str:
        return f"{self.stack}-apps"

    def layer(self, name: str) -> list[dict]:
        return build(self.cluster, self.repo.k8s_dir / name)

    def publish(self, message: str, *, export: bool = True) -> tuple[str, float]:
        """export, commit, push; then what `flux reconcile kustomization --with-source` does."""
        if export:
            self.repo.export()
        sha = self.ws.commit(message)
        pushed = self.ws.push()
        self.flux.request_reconcile("GitRepository", "flux-system")
        return sha, pushed

    def reconcile(self, *names: str) -> None:
        for name in names:
            self.flux.request_reconcile("Kustomization", name)


def _env_file(path: Path, keys: list[str]) -> tuple[Path, dict[str, str]]:
    values = {k: f"{k.lower()}-{secrets.token_urlsafe(18)}" for k in keys}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path, values


@pytest.fixture(scope="module")
def fx(cluster_factory, sealed_controller_factory, sealed_run_env, sealed_stack, e2e_dir: Path):
    missing = missing_binaries(FLUX)
    if missing:
        pytest.skip(
            f"Flux controllers not built: {', '.join(missing)}; run `make e2e-tools` "
            "(or python3 tools/build.py --only source-controller --only kustomize-controller)"
        )
    bins = binaries()
    workdir = e2e_dir / "flux"
    # The vendored copies of Flux's CRDs (ksecrets/schemas/, for offline validation) give way to the
    # modules' own.
    flux_crds = crd_names()
    keep = [
        f for f in CRDS if not any(d and d["metadata"]["name"] in flux_crds for d in yaml.safe_load_all(f.read_text()))
    ]
    cluster = cluster_factory("flux", crds=keep)
    stack = sealed_stack
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()

    template = StackRepo.copy(ROOT, workdir / "template", stack, sealed_run_env)
    backup = workdir / "keys" / "keygen.ksbackup"
    backup.parent.mkdir(parents=True, exist_ok=True)
    key_manifest = keygen(template, backup)
    sealed = sealed_controller_factory(cluster, workdir / "sealed-controller", key_manifest, stack)

    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    shutil.copy2(template.cert_path, ws.root / "certs" / f"{stack}.pem")
    repo = StackRepo(ws.root, stack, dict(sealed_run_env))
    for ns in external_namespaces(ws.root, stack):
        cluster.ensure_namespace(ns)
    pods = PodStandIn(cluster).start()
    helm = HelmStandIn(cluster).start()
    env = FluxEnv(cluster, flux, sealed, server, ws, repo, stack, pods, helm, workdir, template)
    try:
        yield env
    finally:
        pods.stop()
        helm.stop()
        flux.stop()
        server.stop()


def _reseal_all(env: FluxEnv, tag: str) -> dict[tuple[str, str], dict[str, str]]:
    """Fresh values for every sealed Secret of the stack, sealed with this run's key; returns
    (namespace, name) → the data `kubectl create secret --from-env-file` makes of them."""
    cfg = load_stack(env.stack, env.repo.root)
    expected = {}
    for entry in cfg.sealed:
        keys = [k for k, _ in entry.encrypted_data]
        path, _ = _env_file(env.workdir / "env" / f"{tag}-{entry.name}.env", keys)
        env.repo.seal(entry.name, path, namespace=entry.namespace, scope=entry.scope)
        expected[(entry.namespace, entry.name)] = kubectl_secret_data(env.cluster, entry.name, entry.namespace, path)
    return expected


def _ts(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def test_bootstrap_to_ready(fx: FluxEnv):
    """Issue 19, test 1: the GitRepository and the sync/ Kustomizations applied once; source-
    controller fetches the commit over smart HTTP, kustomize-controller applies infrastructure,
    then apps (dependsOn), every object arrives and both Kustomizations are Ready at the commit."""
    expected = _reseal_all(fx, "bootstrap")
    fx.repo.export()
    sha = fx.ws.commit("k8s: the stack sealed for this cluster's key")
    fx.ws.push()
    assert fx.server.head() == sha
    started = time.monotonic()
    fx.flux.start()
    fx.flux.bootstrap(fx.server.url, fx.repo.k8s_dir / "sync")

    want = revision(sha)
    infra = fx.flux.wait_ready(fx.infra, want, timeout=300)
    infra_ready = time.monotonic()
    apps = fx.flux.wait_ready(fx.apps, want, timeout=300)
    apps_ready = time.monotonic()
    src = fx.flux.gitrepository()
    assert (src["status"]["artifact"]["revision"]) == want
    assert condition(src)["status"] == "True"

    # Every object of both layers is on the server, applied by kustomize-controller.
    for layer, ks in (("infrastructure", infra), ("apps", apps)):
        objects = fx.layer(layer)
        inventory = {e["id"] for e in ks["status"]["inventory"]["entries"]}
        assert len(inventory) == len(objects), (layer, sorted(inventory))
        for obj in objects:
            md = obj["metadata"]
            args = [
                "get",
                obj["kind"] + ("." + obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""),
                md["name"],
                "-o",
                "yaml",
            ]
            if md.get("namespace"):
                args += ["-n", md["namespace"]]
            live = yaml.safe_load(fx.cluster.kubectl(*args, "--show-managed-fields").stdout)
            labels = live["metadata"].get("labels") or {}
            assert labels.get("kustomize.toolkit.fluxcd.io/name") == f"{fx.stack}-{layer}", (obj["kind"], md["name"])
            managers = {m["manager"] for m in live["metadata"].get("managedFields") or []}
            assert "kustomize-controller" in managers, (obj["kind"], md["name"], managers)

    # dependsOn: nothing of the apps layer was created before infrastructure was Ready.
    infra_at = _ts(condition(infra)["lastTransitionTime"])
    for obj in fx.layer("apps"):
        md = obj["metadata"]
        path = f"/apis/{obj['apiVersion']}" if "/" in obj["apiVersion"] else "/api/v1"
        plural = {
            "Deployment": "deployments",
            "SealedSecret": "sealedsecrets",
            "ServiceAccount": "serviceaccounts",
            "Role": "roles",
            "RoleBinding": "rolebindings",
            "PrometheusRule": "prometheusrules",
        }.get(obj["kind"])
        if plural is None:
            continue
        live = fx.cluster.get(f"{path}/namespaces/{md['namespace']}/{plural}/{md['name']}")
        assert _ts(live["metadata"]["creationTimestamp"]) >= infra_at, (obj["kind"], md["name"])

    # The sealed values arrived through Flux: the real controller unsealed what Git holds.
    for (ns, name), data in expected.items():
        assert secret_data(fx.cluster, ns, name) == data
        assert synced(fx.cluster, ns, name)["status"] == "True"
    assert fx.pods.started_pods and not fx.pods.errors, fx.pods.errors
    print(
        f"\nfigure: flux bootstrap: {fx.infra} Ready {infra_ready - started:.1f} s after the controllers "
        f"started, {fx.apps} Ready {apps_ready - started:.1f} s (revision {want})"
    )


def test_seal_render_commit_reconcile(fx: FluxEnv):
    """Issue 19, test 2: the guide's flow through Git. A new value sealed with `ksecrets seal
    --stack`, rendered, committed and pushed; `flux reconcile` (the requestedAt annotation): the
    real controller writes the Secret, and the apps Kustomization is Ready at the new commit only
    once the SealedSecret is Synced (healthCheckExprs, evaluated by kustomize-controller)."""
    cfg = load_stack(fx.stack, fx.repo.root)
    app = cfg.apps[0]
    name = f"{app.name}-flux-added"
    path, _ = _env_file(fx.workdir / "env" / "added.env", ["TOKEN", "PASSWORD"])
    fx.repo.seal(name, path, namespace=app.namespace)
    want_data = kubectl_secret_data(fx.cluster, name, app.namespace, path)
    seen: dict[str, float] = {}
    cli = binaries().get("flux")
    if cli is not None and cli.is_file():
        # As a user would: `flux reconcile kustomization <apps> --with-source` (it waits for Ready).
        fx.repo.export()
        sha = fx.ws.commit("seal a new Secret")
        pushed = fx.ws.push()
        res = subprocess.run(
            [
                str(cli),
                f"--kubeconfig={fx.cluster.kubeconfig}",
                "--namespace=flux-system",
                "reconcile",
                "kustomization",
                fx.apps,
                "--with-source",
                "--timeout=5m",
            ],
            capture_output=True,
            text=True,
            timeout=360,
        )
        assert res.returncode == 0, res.stderr
        seen["cli"] = time.monotonic()
        got = subprocess.run(
            [str(cli), f"--kubeconfig={fx.cluster.kubeconfig}", "--namespace=flux-system", "get", "kustomizations"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # `flux get` shortens the SHA to 8 characters
        assert got.returncode == 0 and revision(sha[:8]) in got.stdout, got.stdout + got.stderr
    else:
        sha, pushed = fx.publish("seal a new Secret")
        fx.reconcile(fx.apps)

    def progress(k: dict) -> bool:
        now = time.monotonic()
        if "secret" not in seen and secret_data(fx.cluster, app.namespace, name) == want_data:
            seen["secret"] = now
        c = condition(k)
        if (
            c
            and c["status"] == "True"
            and k["status"].get("lastAppliedRevision") == revision(sha)
            and c.get("observedGeneration") == k["metadata"]["generation"]
        ):
            seen.setdefault("ready", now)
            return True
        return False

    fx.flux.wait_condition(fx.apps, progress, f"Ready at {revision(sha)}", timeout=300)
    assert "secret" in seen, "the apps Kustomization turned Ready before the Secret existed"
    assert seen["secret"] <= seen["ready"]
    # The server's own clocks say the same: the Secret was created no later than apps turned Ready.
    created = fx.cluster.get(f"/api/v1/namespaces/{app.namespace}/secrets/{name}")["metadata"]["creationTimestamp"]
    assert _ts(created) <= _ts(condition(fx.flux.kustomization(fx.apps))["lastTransitionTime"])
    ks = fx.flux.kustomization(fx.apps)
    assert any(
        e["id"] == f"{app.namespace}_{name}_bitnami.com_SealedSecret" for e in ks["status"]["inventory"]["entries"]
    )
    print(
        f"\nfigure: flux: git push → Secret {seen['secret'] - pushed:.1f} s, → {fx.apps} Ready "
        f"{seen['ready'] - pushed:.1f} s"
    )


def test_sealed_for_another_key_is_not_ready_then_recovers(fx: FluxEnv):
    """Issue 19, test 3: a SealedSecret sealed for another key makes the apps Kustomization report
    not Ready (healthCheckExprs ``failed``: kustomize-controller fails early, "HealthCheckFailed ...
    [SealedSecret/<ns>/<name> status: 'Failed']"; the controller's own reason is on the
    SealedSecret's Synced condition, which Flux does not copy); sealing it again for the cluster's
    key in Git recovers."""
    cfg = load_stack(fx.stack, fx.repo.root)
    app = cfg.apps[0]
    name = f"{app.name}-other-key"
    # Another key: `ksecrets keygen` in the work tree replaces the stack's certificate with a key
    # the cluster's controller does not have.
    other = fx.workdir / "keys" / "other.ksbackup"
    fx.repo.ksecrets("keygen", "--stack", fx.stack, "--backup-file", str(other), "--force")
    path, _ = _env_file(fx.workdir / "env" / "other.env", ["TOKEN"])
    fx.repo.seal(name, path, namespace=app.namespace)
    shutil.copy2(fx.template.cert_path, fx.repo.cert_path)  # the cluster's key again, for what follows
    sha, _ = fx.publish("a SealedSecret sealed for another key")
    fx.reconcile(fx.apps)

    def failed(k: dict) -> bool:
        c = condition(k)
        return bool(
            c
            and c["status"] == "False"
            and k["status"].get("lastAttemptedRevision") == revision(sha)
            and "SealedSecret" in c.get("message", "")
        )

    started = time.monotonic()
    ks = fx.flux.wait_condition(fx.apps, failed, "not Ready naming the SealedSecret", timeout=660)
    c = condition(ks)
    reason = synced(fx.cluster, app.namespace, name)
    assert reason is not None and reason["status"] == "False", reason
    assert name in c["message"], c
    assert secret_data(fx.cluster, app.namespace, name) is None
    print(
        f"\nfigure: flux: not Ready {time.monotonic() - started:.1f} s after the reconcile request: "
        f"{c['reason']}: {c['message'][:300]}"
    )

    # Fix in Git: seal again for the cluster's key.
    path2, _ = _env_file(fx.workdir / "env" / "other-fixed.env", ["TOKEN"])
    fx.repo.seal(name, path2, namespace=app.namespace)
    sha2, _ = fx.publish("seal it again for the cluster's key")
    fx.reconcile(fx.apps)
    fx.flux.wait_ready(fx.apps, revision(sha2), timeout=300)
    assert secret_data(fx.cluster, app.namespace, name) == kubectl_secret_data(fx.cluster, name, app.namespace, path2)


def test_impersonation_refuses_what_the_apps_account_may_not_write(fx: FluxEnv):
    """Issue 19, test 4: the apps layer applies as its own ServiceAccount. Objects committed by hand
    into ``apps/`` that the account may not write (a ConfigMap in kube-system, a cluster-scoped
    Namespace) fail the reconcile with the API server's forbidden message through Flux, and none of
    them is created; reverting the commit recovers."""
    apps_dir = fx.repo.k8s_dir / "apps"
    before = (apps_dir / "kustomization.yaml").read_text()
    (apps_dir / "hand-made.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "outside", "namespace": "kube-system"},
                    "data": {"k": "v"},
                },
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps-may-not-create"}},
            ]
        )
    )
    kust = yaml.safe_load(before)
    kust["resources"].append("hand-made.yaml")
    (apps_dir / "kustomization.yaml").write_text(yaml.safe_dump(kust, sort_keys=False))
    sha, _ = fx.publish("hand-made objects outside the apps account's rights", export=False)
    fx.reconcile(fx.apps)
    account = f"system:serviceaccount:flux-system:{fx.stack}-apps"

    def refused(k: dict) -> bool:
        c = condition(k)
        return bool(
            c
            and c["status"] == "False"
            and k["status"].get("lastAttemptedRevision") == revision(sha)
            and "forbidden" in c.get("message", "")
        )

    ks = fx.flux.wait_condition(fx.apps, refused, "not Ready: forbidden", timeout=300)
    c = condition(ks)
    assert account in c["message"], c
    assert fx.cluster.get("/api/v1/namespaces/kube-system/configmaps/outside") is None
    assert fx.cluster.get("/api/v1/namespaces/apps-may-not-create") is None
    print(f"\nfigure: flux: impersonation refused: {c['reason']}: {c['message'][:400]}")

    (apps_dir / "hand-made.yaml").unlink()
    (apps_dir / "kustomization.yaml").write_text(before)
    sha2, _ = fx.publish("revert the hand-made objects")
    fx.reconcile(fx.apps)
    fx.flux.wait_ready(fx.apps, revision(sha2), timeout=300)


def test_drift_is_corrected_and_prune_removes_what_git_dropped(fx: FluxEnv):
    """Issue 19, test 5: an object edited by hand is put back at the next reconcile; a Secret
    removed from the stack and committed disappears (prune), with the Secret the controller made
    from it (owner reference); an object Flux does not own is left alone."""
    cfg = load_stack(fx.stack, fx.repo.root)
    app = cfg.apps[0]
    ns = app.namespace
    # Drift: scale the Deployment and add a label by hand.
    dep = app.deployments[0].name if getattr(app, "deployments", None) else app.name
    fx.cluster.kubectl("scale", "deployment", dep, "-n", ns, "--replicas=5")
    fx.cluster.kubectl("label", "deployment", dep, "-n", ns, "hand-made=yes")
    # Not Flux's: a ConfigMap in the same namespace.
    fx.cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "not-flux", "namespace": ns},
                "data": {"k": "v"},
            }
        ]
    )
    want_replicas = next(o for o in fx.layer("apps") if o["kind"] == "Deployment")["spec"]["replicas"]

    # Prune: drop the Secret added by test 2 from the stack.
    name = f"{app.name}-flux-added"
    stack_file = fx.repo.root / f"Pulumi.{fx.stack}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    sealed = doc["config"]["k8s-secrets:sealed"]
    doc["config"]["k8s-secrets:sealed"] = [e for e in sealed if e["name"] != name]
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    sha, _ = fx.publish("drop a Secret")
    fx.reconcile(fx.apps)
    fx.flux.wait_ready(fx.apps, revision(sha), timeout=300)

    def settled() -> bool:
        live = fx.cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{dep}")
        return (
            live["spec"]["replicas"] == want_replicas
            and fx.cluster.get(f"/apis/bitnami.com/v1alpha1/namespaces/{ns}/sealedsecrets/{name}") is None
            and fx.cluster.get(f"/api/v1/namespaces/{ns}/secrets/{name}") is None
        )

    fx.cluster.wait("drift corrected and the dropped Secret pruned", settled, timeout=120)
    live = fx.cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{dep}")
    assert live["spec"]["replicas"] == want_replicas
    assert fx.cluster.get(f"/api/v1/namespaces/{ns}/configmaps/not-flux") is not None


def test_faults_converge_on_the_last_commit(fx: FluxEnv):
    """Issue 19, test 7: the Git server down for a while (the GitRepository says so while it is),
    then source-controller and kustomize-controller SIGKILLed mid-reconcile and restarted: they
    converge on the last commit with no value lost."""
    cfg = load_stack(fx.stack, fx.repo.root)
    entry = cfg.sealed[0]
    fx.server.proc.kill()  # type: ignore[attr-defined]
    fx.flux.request_reconcile("GitRepository", "flux-system")

    def source_says_so() -> bool:
        c = condition(fx.flux.gitrepository())
        return bool(c and c["status"] == "False" and "127.0.0.1" in c.get("message", ""))

    fx.cluster.wait("the GitRepository not Ready while the Git server is down", source_says_so, timeout=180)
    down = condition(fx.flux.gitrepository())
    # Flux's own objects keep what they last applied meanwhile.
    assert secret_data(fx.cluster, entry.namespace, entry.name)

    keys = [k for k, _ in entry.encrypted_data]
    path, _ = _env_file(fx.workdir / "env" / "faults.env", keys)
    fx.repo.seal(entry.name, path, namespace=entry.namespace, scope=entry.scope)
    expected = kubectl_secret_data(fx.cluster, entry.name, entry.namespace, path)
    fx.repo.export()
    sha = fx.ws.commit("new values while the Git server is down")
    fx.server.start()
    fx.ws.push()
    fx.flux.request_reconcile("GitRepository", "flux-system")
    fx.reconcile(fx.infra, fx.apps)
    time.sleep(1.0)  # mid-reconcile
    assert fx.flux.source is not None and fx.flux.kustomize is not None
    fx.flux.source.kill()
    fx.flux.kustomize.kill()
    fx.flux.start()
    fx.flux.request_reconcile("GitRepository", "flux-system")
    started = time.monotonic()
    fx.flux.wait_ready(fx.apps, revision(sha), timeout=300)
    fx.flux.wait_ready(fx.infra, revision(sha), timeout=300)
    assert secret_data(fx.cluster, entry.namespace, entry.name) == expected
    print(
        f"\nfigure: flux faults: while down: {down['reason']}: {down['message'][:200]}; converged "
        f"{time.monotonic() - started:.1f} s after the restart"
    )

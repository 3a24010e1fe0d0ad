"""Issue 20: `ksecrets migrate` from a manual stack hands its Secret over in place, through the real
programs: `pulumi up` applies the manual Secret, `migrate --prepare` + `pulumi up` make Pulumi's
state retain it (retainOnDelete) and give it the sealed-secrets controller's `managed` annotation,
the switch `--to sealed-secrets` seals the values, the SealedSecret is applied and the controller
takes the Secret over, and the `pulumi up` after the switch forgets the Secret instead of deleting
it. Without `--prepare` the same steps delete the Secret (the gap the phase closes; the test of the
gap shows this test can fail).

Real: kube-apiserver + kube-controller-manager (harness/kube.py), the `pulumi` CLI v3.274 with the
Python language host and the Kubernetes provider (harness/pulumi.py: local file state, passphrase
secrets provider; `manualValues` set with `pulumi config set --secret --path`), the program
(`__main__.py`, components/), the sealed-secrets controller v0.36.6 (harness/sealed_secrets.py) with
the known-answer key pair of tests/fixtures/vectors as its key, and every `ksecrets` command
(`migrate --prepare`, `migrate` reading the values through `pulumi config --show-secrets`, `export`).
The exported SealedSecret is applied with `kubectl apply -f k8s/<stack>/apps/<file>` (what Flux
does from Git under `delivery: flux`); the `pulumi up` after it applies it too (`delivery: pulumi`).

Simulated, one named place: helm-controller (harness/pulumi.py HelmReleaseReady marks the
sealed-secrets HelmRelease Ready while `pulumi up` waits; the controller runs as a local process).
No Deployment: no kubelet is needed; the Secret is what is watched.

Asserted from a sampler reading the Secret every 0.2 s (harness/migrate.py Watcher): with
`--prepare` the Secret is never absent and never holds anything but the values set in Pulumi
config, and at the end it is owned by the SealedSecret, every value in it, the same object (uid),
and out of Pulumi's state.

manual -> sops (test_manual_secret_handed_over_to_sops_in_place) runs the stack under `delivery:
flux` with the real source-controller and kustomize-controller v1.9.6 reconciling the project's tree
from a Git server on 127.0.0.1 (harness/gitserver.py): the decrypted SOPS Secret is applied over the
retained one (server-side apply, force), the same object throughout; without `--prepare` `pulumi up`
deletes it and Flux creates a new one (a new uid; absent while that takes).

manual -> vault (test_manual_secret_handed_over_to_vault_in_place) runs a real Vault dev server and
the real Vault Secrets Operator v1.5.0 (harness/vso.py); the switch pushes the values to Vault and
sets `vaultMigration: handover` (`destination.overwrite: true`), `ksecrets vault bootstrap`
configures the kubernetes auth mount, and the exported vault objects are applied with `kubectl
apply` (standing in for Flux) and by `pulumi up`: the operator takes the retained Secret over (its
ownerReference the VaultStaticSecret), the same uid; without `--prepare` a new uid.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.conftest import VECTORS
from tests.e2e.conftest import require
from tests.e2e.harness.gitops import bootstrap_flux
from tests.e2e.harness.migrate import APP_NS, SECRET, Watcher
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject
from tests.e2e.harness.sealed_secrets import ksecrets_run

STACK = "mig"
APP = "my-app"
# Set with `pulumi config set --secret --path`: `=`, spaces, UTF-8, a newline, an empty value.
VALUES = {
    "DATABASE_URL": "postgres://app:s3cr=t with spaces@db:5432/app?x=1",
    "API_KEY": "ak-ünïcode-0123",
    "MULTI_LINE": "line1\nline2",
    "EMPTY": "",
}
PULUMI = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
FIGURES: list[str] = []


def stack_text() -> str:
    doc = {
        "config": {
            "k8s-secrets:backend": "manual",
            "k8s-secrets:monitoring": {"enabled": False},
            # Not certs/ (the project folder links the repository's): the cert of the controller's key.
            "k8s-secrets:sealedSecrets": {"certificate": f"keys/{STACK}.pem"},
            "k8s-secrets:apps": [{"name": APP, "namespace": APP_NS, "secretName": SECRET}],
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture(scope="module", autouse=True)
def report_figures():
    yield
    if FIGURES:
        print("\nmanual in place:\n  " + "\n  ".join(FIGURES))


def _controller_key_manifest() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization

    from ksecrets.sealing.keys import tls_secret_manifest

    vec = json.loads(VECTORS.read_text())
    key = serialization.load_pem_private_key(vec["private_key_pem"].encode(), password=None)
    cert = x509.load_pem_x509_certificate(vec["certificate_pem"].encode())
    return yaml.safe_dump(tls_secret_manifest(key, cert)), vec["certificate_pem"].encode()  # type: ignore[arg-type]


@pytest.fixture(params=["prepared", "skipped"])
def rig(request, cluster_factory, sealed_controller_factory, e2e_dir: Path):
    variant = request.param
    bins = require(*PULUMI, "sealed-secrets-controller")
    cluster = cluster_factory(f"manual-{variant}")
    bootstrap_flux(cluster)  # flux-system, where the stack's HelmRelease lives
    key_yaml, cert = _controller_key_manifest()
    sealed_controller_factory(cluster, e2e_dir / f"manual-{variant}" / "controller", key_yaml, "staging")
    project = PulumiProject(
        e2e_dir / f"manual-{variant}", bins, STACK, kubeconfig=cluster.kubeconfig, stack_file=stack_text()
    ).init()
    (project.project / "keys").mkdir(exist_ok=True)
    (project.project / "keys" / f"{STACK}.pem").write_bytes(cert)
    for key, value in VALUES.items():
        project.run("config", "set", "--secret", "--path", f"k8s-secrets:manualValues.{SECRET}.{key}", value)
    text = (project.project / f"Pulumi.{STACK}.yaml").read_text()
    assert "s3cr=t" not in text and "ünïcode" not in text  # Pulumi encrypted them
    yield variant, cluster, project


def _secret(cluster) -> dict:
    return cluster.get(f"/api/v1/namespaces/{APP_NS}/secrets/{SECRET}") or {}


def _in_state(project: PulumiProject) -> dict | None:
    """The manual Secret's resource in Pulumi's state (None once forgotten)."""
    state = project.export()
    for r in state["deployment"].get("resources") or []:
        if r["type"] == "kubernetes:core/v1:Secret" and r["urn"].endswith(f"::{APP_NS}/{SECRET}"):
            return r
    return None


def _up(project: PulumiProject, cluster) -> float:
    t = time.monotonic()
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", timeout=900)
    return time.monotonic() - t


def _prepare(project: PulumiProject, to: str, root: str, env: dict, up) -> float:
    """Phase 1 of a prepared run: `migrate --prepare` (phase `release`, `pulumi up` named as the next
    step), then that `pulumi up` (`up()`, returning its seconds), after which Pulumi's state holds
    the manual Secret with retainOnDelete."""
    res = ksecrets_run("migrate", "--stack", STACK, "--to", to, "--prepare", "--root", root, cwd=project.project,
                       env=env)  # fmt: skip
    assert "vaultMigration: release" in res.stdout and f"next: pulumi up --stack {STACK}" in res.stdout, res.stdout
    seconds = up()
    held = _in_state(project)
    assert held is not None and held.get("retainOnDelete") is True, held
    return seconds


def test_manual_secret_handed_over_to_sealed_secrets_in_place(rig):
    variant, cluster, project = rig
    started = time.monotonic()
    root = str(project.project)
    env = {k: v for k, v in project.env().items() if k != "KSECRETS_SEAL_KEY"}  # `pulumi` on PATH, passphrase
    timings: dict[str, float] = {}

    # Phase 0: the manual stack, applied by `pulumi up`.
    timings["up (manual)"] = _up(project, cluster)
    cluster.wait("the manual Secret", lambda: Watcher(cluster).sample().values == VALUES, 60)
    assert not _secret(cluster)["metadata"].get("ownerReferences")
    uid = _secret(cluster)["metadata"]["uid"]  # the same object at the end: handed over, not re-created
    watcher = Watcher(cluster).start()
    load_before = os.getloadavg()
    try:
        time.sleep(1.0)
        assert watcher.last.values == VALUES

        # Phase 1 (the prepared run): --prepare, then `pulumi up`, which the CLI names as the next step.
        if variant == "prepared":
            timings["up (--prepare)"] = _prepare(project, "sealed-secrets", root, env, lambda: _up(project, cluster))
            annotations = _secret(cluster)["metadata"].get("annotations") or {}
            assert annotations.get("sealedsecrets.bitnami.com/managed") == "true", annotations

        # Phase 2: the switch; values read through the real `pulumi config --show-secrets`.
        res = ksecrets_run("migrate", "--stack", STACK, "--to", "sealed-secrets", "--root", root, cwd=project.project,
                           env=env)  # fmt: skip
        assert "4 values moved from manual to sealed-secrets; backend switched to sealed-secrets" in res.stdout
        assert f"then pulumi up --stack {STACK}: it forgets the manual Secrets" in res.stdout, res.stdout
        skipped = "the stack skipped `migrate --prepare`"
        assert (skipped in res.stderr) == (variant == "skipped"), res.stderr
        ksecrets_run("export", "--stack", STACK, "--root", root, cwd=project.project, env=env)
        apps = project.project / "k8s" / STACK / "apps"
        (sealed_file,) = sorted(apps.glob("sealedsecret-*.yaml"))
        assert not [f for f in apps.glob("*.yaml") if "\nkind: Secret\n" in "\n" + f.read_text()]
        switched_at = time.monotonic()
        # What Flux applies from Git under `delivery: flux`.
        cluster.kubectl("apply", "-f", str(sealed_file))
        if variant == "prepared":
            cluster.wait(
                "the SealedSecret owns the Secret",
                lambda: watcher.last.owners == ("SealedSecret",) and watcher.last.values == VALUES,
                60,
            )
        else:
            time.sleep(5.0)  # the controller refuses a Secret it does not manage; the Secret stays Pulumi's
            assert watcher.last.owners == () and watcher.last.values == VALUES, watcher.last
        owned_at = time.monotonic()

        # Phase 3: `pulumi up` after the switch: it applies the SealedSecret too, and drops the manual Secret.
        timings["up (switched)"] = _up(project, cluster)
        assert _in_state(project) is None
        if variant == "prepared":
            time.sleep(3.0)
        else:
            # The gap: the Secret deleted by `pulumi up`; the controller may write it again later.
            cluster.wait("the Secret deleted", lambda: watcher.absent(since=owned_at) > 0, 30)
            time.sleep(5.0)
    finally:
        watcher.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    absent = [s for s in samples if s.values is None]
    other = watcher.other(VALUES)
    load = os.getloadavg()
    figure = (
        f"{variant}: {len(samples)} samples over {samples[-1].at - samples[0].at:.0f} s, absent {len(absent)}, "
        f"other-valued {other}; final owners {list(samples[-1].owners)}; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {time.monotonic() - started:.0f} s; load average {load_before[0]:.2f} -> {load[0]:.2f}"
    )
    FIGURES.append(figure)
    print("\nfigure: manual in place " + figure)
    assert other == 0, f"{other} samples held values other than those set in Pulumi config"
    if variant == "skipped":
        assert absent and all(s.at >= switched_at for s in absent), "without --prepare the Secret should go"
        return
    assert not absent, f"the Secret was absent in {len(absent)} samples"
    final = samples[-1]
    assert final.values == VALUES and final.owners == ("SealedSecret",), final
    assert _secret(cluster)["metadata"]["uid"] == uid
    assert cluster.get(f"/apis/bitnami.com/v1alpha1/namespaces/{APP_NS}/sealedsecrets/{SECRET}") is not None


# ---- manual -> sops, through Git with the real Flux (`delivery: flux`) ---------------------------


@pytest.mark.parametrize("variant", ["prepared", "skipped"])
def test_manual_secret_handed_over_to_sops_in_place(cluster_factory, e2e_dir: Path, variant: str):
    """manual -> sops under `delivery: flux`: Pulumi registers the sync/ Kustomizations and the
    manual Secret, the real kustomize-controller applies both layers from Git. After `--prepare` and
    `pulumi up`, the switch writes the SOPS file; it is committed and pushed, and the `pulumi up`
    after it gives the apps Kustomization its `decryption` and forgets the Secret (retainOnDelete);
    kustomize-controller applies the decrypted Secret over it (server-side apply, force).
    Simulated here besides helm-controller (gitops.HelmStandIn): the scheduler and kubelet
    (kubelet.PodStandIn) and the `flux-system` GitRepository `flux bootstrap` creates. `skipped`:
    the same without `--prepare`, where `pulumi up` deletes the Secret until Flux applies it."""
    import base64
    import subprocess

    from ksecrets.sealing import sops
    from tests.e2e.conftest import CRDS
    from tests.e2e.harness import ROOT, missing_binaries
    from tests.e2e.harness.flux import FluxControllers, crd_names, revision
    from tests.e2e.harness.gitops import HelmStandIn, external_namespaces
    from tests.e2e.harness.gitserver import GitServer, Workspace
    from tests.e2e.harness.kubelet import PodStandIn

    flux_bins = ("source-controller", "kustomize-controller")
    if missing_binaries(flux_bins):
        pytest.skip("Flux controllers not built: run `make e2e-tools`")
    bins = require(*PULUMI, *flux_bins)
    workdir = e2e_dir / f"manual-sops-{variant}"
    keep = [
        f
        for f in CRDS
        if not any(d and d["metadata"]["name"] in crd_names() for d in yaml.safe_load_all(f.read_text()))
    ]
    cluster = cluster_factory(f"manual-sops-{variant}", crds=keep)
    flux = FluxControllers(cluster, workdir / "controllers", bins)
    flux.install()
    server = GitServer(workdir / "git").init().start()
    ws = Workspace.of_project(ROOT, workdir / "tree", server)
    doc = yaml.safe_load(stack_text())
    doc["config"]["kubernetes:context"] = "e2e"
    doc["config"]["k8s-secrets:delivery"] = "flux"
    doc["config"]["k8s-secrets:apps"][0]["deployments"] = [
        {"name": APP, "image": "ghcr.io/stefanprodan/podinfo:6.7.1", "envFrom": True}
    ]
    del doc["config"]["k8s-secrets:sealedSecrets"]
    text = yaml.safe_dump(doc, sort_keys=False)
    (ws.root / f"Pulumi.{STACK}.yaml").write_text(text)
    started = time.monotonic()
    pods = helm = None
    try:
        for ns in external_namespaces(ws.root, STACK):
            cluster.ensure_namespace(ns)
        cluster.apply([flux.git_repository(server.url)], field_manager="flux-bootstrap")
        pods = PodStandIn(cluster).start()
        helm = HelmStandIn(cluster).start()
        flux.start()
        project = PulumiProject(workdir / "pulumi", bins, STACK, kubeconfig=cluster.kubeconfig, stack_file=text).init()
        for name in ("k8s", "clusters", "secrets"):  # what ksecrets writes lands in the work tree
            (ws.root / name).mkdir(exist_ok=True)
            (project.project / name).symlink_to(ws.root / name)
        for key, value in VALUES.items():
            project.run("config", "set", "--secret", "--path", f"k8s-secrets:manualValues.{SECRET}.{key}", value)
        root = str(project.project)
        env = {k: v for k, v in project.env().items() if k != "KSECRETS_SEAL_KEY"}

        def publish(message: str) -> str:
            ksecrets_run("export", "--stack", STACK, "--root", root, cwd=project.project, env=env)
            (ws.root / f"Pulumi.{STACK}.yaml").write_text((project.project / f"Pulumi.{STACK}.yaml").read_text())
            sha = ws.commit(message)
            ws.push()
            flux.request_reconcile("GitRepository", "flux-system")
            return sha

        def converge(sha: str) -> None:
            for layer in ("infrastructure", "apps"):
                flux.request_reconcile("Kustomization", f"{STACK}-{layer}")
                flux.wait_ready(f"{STACK}-{layer}", revision(sha), timeout=300)

        timings: dict[str, float] = {}
        sha = publish("mig: manual, delivery flux")
        t = time.monotonic()
        project.run("up", "--yes", "--skip-preview", timeout=900)
        timings["up (manual)"] = time.monotonic() - t
        converge(sha)
        cluster.wait("the manual Secret", lambda: Watcher(cluster).sample().values == VALUES, 60)
        uid = _secret(cluster)["metadata"]["uid"]
        watcher = Watcher(cluster).start()
        load_before = os.getloadavg()
        try:
            time.sleep(1.0)
            if variant == "prepared":

                def up() -> float:
                    t = time.monotonic()
                    project.run("up", "--yes", "--skip-preview", timeout=900)
                    return time.monotonic() - t

                timings["up (--prepare)"] = _prepare(project, "sops", root, env, up)

            age = sops.generate_age_key()
            key_file = workdir / "keys" / f"{STACK}.agekey"
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(age.key_file())
            key_file.chmod(0o600)
            manifest = cluster.kubectl(
                "-n", "flux-system", "create", "secret", "generic", "sops-age", f"--from-file=age.agekey={key_file}",
                "--dry-run=client", "-o", "yaml",
            ).stdout  # fmt: skip
            cluster.kubectl("apply", "-f", "-", input=manifest)
            res = ksecrets_run("migrate", "--stack", STACK, "--to", "sops", "--age-recipient", age.recipient,
                               "--root", root, cwd=project.project, env=env)  # fmt: skip
            assert "4 values moved from manual to sops; backend switched to sops" in res.stdout, res.stdout
            assert ("the stack skipped `migrate --prepare`" in res.stderr) == (variant == "skipped"), res.stderr
            switched_at = time.monotonic()
            sha = publish("mig: sops backend")
            t = time.monotonic()
            project.run("up", "--yes", "--skip-preview", timeout=900)  # decryption on dev-apps; the Secret forgotten
            timings["up (switched)"] = time.monotonic() - t
            assert _in_state(project) is None
            converge(sha)

            def by_flux() -> bool:
                sec = _secret(cluster)
                labels = (sec.get("metadata") or {}).get("labels") or {}
                return (
                    labels.get("kustomize.toolkit.fluxcd.io/name") == f"{STACK}-apps" and watcher.last.values == VALUES
                )

            cluster.wait("the Secret applied by Flux", by_flux, 120)
            time.sleep(3.0)
        finally:
            watcher.stop()
        samples = watcher.samples
        assert not watcher.errors, watcher.errors[:5]
        absent = sum(1 for s in samples if s.values is None)
        other = watcher.other(VALUES)
        load = os.getloadavg()
        figure = (
            f"manual -> sops (Flux), {variant}: {len(samples)} samples over {samples[-1].at - samples[0].at:.0f} s, absent {absent}, "
            f"other-valued {other}; "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            + f"; total {time.monotonic() - started:.0f} s; load average {load_before[0]:.2f} -> {load[0]:.2f}"
        )
        recreated = _secret(cluster)["metadata"]["uid"] != uid
        figure += f"; {'deleted and re-created' if recreated else 'the same object (uid) throughout'}"
        FIGURES.append(figure)
        print("\nfigure: manual in place " + figure)
        if variant == "skipped":
            # The gap: `pulumi up` deleted the Secret and Flux applied it again (absent for as long as
            # that took: the samples catch it when it lasts 0.2 s or more; the new uid always).
            assert other == 0 and recreated, figure
            assert all(s.at >= switched_at for s in samples if s.values is None), figure
        else:
            assert other == 0 and absent == 0 and not recreated, figure
        final = _secret(cluster)
        assert {k: base64.b64decode(v).decode() for k, v in final["data"].items()} == VALUES
        assert not final["metadata"].get("ownerReferences")
        committed = [f"Pulumi.{STACK}.yaml", "secrets", f"k8s/{STACK}", f"clusters/{STACK}"]
        grep = subprocess.run(["git", "grep", "-q", "-e", "s3cr=t", "-e", "ünïcode", "--", *committed], cwd=ws.root)
        assert grep.returncode == 1, "a value is in what the stack commits"
    finally:
        for proc in (pods, helm):
            if proc is not None:
                proc.stop()
        flux.stop()
        server.stop()


# ---- manual -> vault: the real Vault and Vault Secrets Operator (`delivery: pulumi`) -------------


@pytest.mark.parametrize("variant", ["prepared", "skipped"])
def test_manual_secret_handed_over_to_vault_in_place(cluster_factory, e2e_dir: Path, variant: str):
    """manual -> vault: after `--prepare` and `pulumi up`, the switch pushes the values to a real
    Vault dev server (harness/vault.py) and sets `vaultMigration: handover`; `vault.address` is
    pointed at it (harness/vault_stack.point_at) and `ksecrets vault bootstrap` configures its
    kubernetes auth against the API server. The exported VaultConnection, VaultAuth and
    VaultStaticSecret (`destination.overwrite: true`) are applied with `kubectl apply` (standing in
    for Flux; the `pulumi up` after it applies them too), the real Vault Secrets Operator
    (harness/vso.py) takes the existing Secret over and that `pulumi up` forgets it; then `--finish`.
    `skipped`: without `--prepare` that `pulumi up` deletes the Secret and the operator writes a
    new one (a new uid)."""
    from tests.e2e.harness import module_dir
    from tests.e2e.harness.vault import DevVault
    from tests.e2e.harness.vault_stack import bootstrap, point_at
    from tests.e2e.harness.vso import Operator

    bins = require(*PULUMI, "vault", "vault-secrets-operator")
    workdir = e2e_dir / f"manual-vault-{variant}"
    cluster = cluster_factory(f"manual-vault-{variant}")
    bootstrap_flux(cluster)
    vault = DevVault(workdir / "vault", bins["vault"]).start()
    op = Operator(cluster, bins["vault-secrets-operator"], module_dir("vault-secrets-operator"), workdir / "vso")
    started = time.monotonic()
    try:
        op.install()
        op.start()
        doc = yaml.safe_load(stack_text())
        del doc["config"]["k8s-secrets:sealedSecrets"]
        text = yaml.safe_dump(doc, sort_keys=False)
        project = PulumiProject(workdir / "pulumi", bins, STACK, kubeconfig=cluster.kubeconfig, stack_file=text).init()
        for key, value in VALUES.items():
            project.run("config", "set", "--secret", "--path", f"k8s-secrets:manualValues.{SECRET}.{key}", value)
        root = str(project.project)
        env = {k: v for k, v in project.env().items() if k != "KSECRETS_SEAL_KEY"} | vault.env()
        timings = {"up (manual)": _up(project, cluster)}
        cluster.wait("the manual Secret", lambda: Watcher(cluster).sample().values == VALUES, 60)
        uid = _secret(cluster)["metadata"]["uid"]
        watcher = Watcher(cluster).start()
        load_before = os.getloadavg()
        try:
            time.sleep(1.0)
            if variant == "prepared":
                timings["up (--prepare)"] = _prepare(project, "vault", root, env, lambda: _up(project, cluster))
            res = ksecrets_run("migrate", "--stack", STACK, "--to", "vault", "--root", root, cwd=project.project,
                               env=env)  # fmt: skip
            assert "4 values moved from manual to vault; backend switched to vault" in res.stdout, res.stdout
            assert ("the stack skipped `migrate --prepare`" in res.stderr) == (variant == "skipped"), res.stderr
            assert "vaultMigration: handover" in (project.project / f"Pulumi.{STACK}.yaml").read_text()
            point_at(project.project, STACK, vault)
            bootstrap(cluster, vault, project.project, STACK, workdir / "bootstrap")
            ksecrets_run("export", "--stack", STACK, "--root", root, cwd=project.project, env=env)
            apps = project.project / "k8s" / STACK / "apps"
            switched_at = time.monotonic()
            for f in sorted(apps.glob("*.yaml")):  # what Flux applies from Git under `delivery: flux`
                if f.name != "kustomization.yaml":
                    cluster.kubectl("apply", "-f", str(f))
            timings["up (switched)"] = _up(project, cluster)
            assert _in_state(project) is None
            cluster.wait(
                "the operator owns the Secret",
                lambda: watcher.last.owners == ("VaultStaticSecret",) and watcher.last.values == VALUES,
                120,
            )
            owned = time.monotonic() - switched_at
            res = ksecrets_run("migrate", "--stack", STACK, "--to", "vault", "--finish", "--root", root,
                               cwd=project.project, env=env)  # fmt: skip
            assert "vaultMigration removed" in res.stdout, res.stdout
            timings["up (--finish)"] = _up(project, cluster)
            time.sleep(3.0)
        finally:
            watcher.stop()
    finally:
        op.stop()
        vault.stop()

    samples = watcher.samples
    assert not watcher.errors, watcher.errors[:5]
    absent, other = watcher.absent(), watcher.other(VALUES)
    recreated = _secret(cluster)["metadata"]["uid"] != uid
    load = os.getloadavg()
    figure = (
        f"manual -> vault, {variant}: {len(samples)} samples over {samples[-1].at - samples[0].at:.0f} s, "
        f"absent {absent}, other-valued {other}; the operator owned it {owned:.0f} s after the switch; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {time.monotonic() - started:.0f} s; load average {load_before[0]:.2f} -> {load[0]:.2f}"
        + f"; {'deleted and re-created' if recreated else 'the same object (uid) throughout'}"
    )
    FIGURES.append(figure)
    print("\nfigure: manual in place " + figure)
    assert other == 0, figure
    if variant == "skipped":
        assert recreated and all(s.at >= switched_at for s in samples if s.values is None), figure
        return
    assert absent == 0 and not recreated, figure
    assert samples[-1].values == VALUES and samples[-1].owners == ("VaultStaticSecret",), samples[-1]

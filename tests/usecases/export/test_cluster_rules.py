"""Objects a real cluster refuses, or that break it, are refused at export, preview and seal
(issue 11): kubelet user rules, system namespaces, undeclared namespaces, sizes, names,
the Prometheus Operator prerequisite and placeholders. Every case goes through the real CLI
(exit code, one line, nothing written) or the Pulumi program under mocks.
"""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

import pulumi
import pytest
import yaml

from ksecrets.config import load_stack, load_stack_file
from ksecrets.errors import KsecretsError
from ksecrets.usecases.export import render
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.sealing import crypto
from ksecrets.sealing.certs import load_certificate
from tests.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[3]
P = "k8s-secrets:"


def _stack(root: Path, name: str, config: dict) -> Path:
    path = root / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": {P + k: v for k, v in config.items()}}, sort_keys=False))
    return path


def _app(namespace: str = "web", **deployment) -> dict:
    return {
        "name": "web",
        "namespace": namespace,
        "keys": ["TOKEN"],
        "deployments": [{"name": "web", "image": "ghcr.io/stefanprodan/podinfo:6.7.1", **deployment}],
    }


def _plain(**extra) -> dict:
    """A manual-backend stack with no placeholders and monitoring off: exports cleanly."""
    return {"backend": "manual", "apps": [_app()], "monitoring": {"enabled": False}, **extra}


def _export_fails(cli, root: Path, message: str) -> None:
    r = cli("export", "--root", str(root))
    assert (r.code, r.err, r.out) == (2, f"ksecrets: {message}\n", "")
    assert not (root / "k8s").exists(), "a refused export writes nothing"


def _pod_specs(objs):
    for o in objs:
        if o["kind"] == "Deployment":
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


# --- 1. pods the kubelet starts: numeric runAsUser/runAsGroup ------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "Pulumi.staging.yaml",
        ROOT / "Pulumi.production.yaml",
        ROOT / "tests/jobs/rotate/fixtures/Pulumi.rotating.yaml",
        ROOT / "tests/fixtures/full-vault-stack.yaml",
    ],
    ids=lambda p: p.name,
)
def test_every_generated_container_has_a_numeric_user_and_group(path, tmp_path):
    if path.name == "full-vault-stack.yaml":  # not named Pulumi.<stack>.yaml
        (tmp_path / "Pulumi.full.yaml").write_bytes(path.read_bytes())
        path = tmp_path / "Pulumi.full.yaml"
    objs = [p.obj for p in plan_stack(load_stack_file(path))]
    found = list(_pod_specs(objs))
    assert found
    for obj, spec in found:
        pod = spec["securityContext"]
        for c in spec["containers"]:
            eff = {**pod, **c.get("securityContext", {})}
            assert eff["runAsNonRoot"] is True, obj["metadata"]["name"]
            assert isinstance(eff["runAsUser"], int) and eff["runAsUser"] > 0, obj["metadata"]["name"]
            assert isinstance(eff["runAsGroup"], int) and eff["runAsGroup"] > 0, obj["metadata"]["name"]


def test_run_as_user_is_configurable_per_deployment_and_never_root(tmp_path, cli):
    _stack(tmp_path, "dev", _plain(apps=[_app(runAsUser=1000, runAsGroup=2000)]))
    assert cli("export", "--root", str(tmp_path)).code == 0
    d = yaml.safe_load((tmp_path / "k8s/dev/apps/deployment-web.yaml").read_text())
    assert d["spec"]["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (tmp_path / "k8s").rename(tmp_path / "k8s-ok")
    _stack(tmp_path, "dev", _plain(apps=[_app(runAsUser=0)]))
    _export_fails(
        cli, tmp_path, "Pulumi.dev.yaml: apps[0].deployments[0].runAsUser: 0 is out of range (1 to 2147483647)"
    )


# --- 2. system and shared namespaces ---------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace", ["kube-system", "kube-public", "kube-node-lease", "default", "flux-system", "monitoring"]
)
def test_an_app_in_a_system_namespace_is_refused_unless_external(namespace, tmp_path, cli):
    _stack(tmp_path, "dev", _plain(apps=[_app(namespace)]))
    _export_fails(
        cli,
        tmp_path,
        f'Pulumi.dev.yaml: apps[0].namespace: "{namespace}" is a system or shared namespace; '
        "a stack never creates, labels or prunes it: add it to externalNamespaces to deploy "
        "into it as it is",
    )
    _stack(tmp_path, "dev", _plain(apps=[_app(namespace)], externalNamespaces=[namespace]))
    r = cli("export", "--root", str(tmp_path))
    assert r.code == 0, r.err
    kinds = {yaml.safe_load(p.read_text()).get("kind") for p in (tmp_path / "k8s/dev").rglob("*.yaml")}
    assert "Deployment" in kinds and "Namespace" not in kinds  # used as it is, never created or labelled


@pytest.mark.parametrize("namespace", ["kube-system", "default", "flux-system", "monitoring"])
def test_listing_a_system_namespace_to_create_is_refused(namespace, tmp_path, cli):
    _stack(tmp_path, "dev", _plain(namespaces=[namespace]))
    _export_fails(
        cli,
        tmp_path,
        f'Pulumi.dev.yaml: namespaces[0]: "{namespace}" is a system or shared namespace; '
        "a stack never creates, labels or prunes it (list it under externalNamespaces to "
        "place objects there)",
    )


def test_apps_in_vaults_own_namespaces_are_refused(tmp_path, cli):
    cfg = {
        "backend": "vault",
        "apps": [{**_app("vault-secrets-operator-system"), "vault": {"path": "web"}}],
        "monitoring": {"enabled": False},
    }
    _stack(tmp_path, "dev", cfg)
    _export_fails(
        cli,
        tmp_path,
        'Pulumi.dev.yaml: apps[0].namespace: "vault-secrets-operator-system" is Vault\'s '
        "or its operator's namespace; run apps elsewhere",
    )


# --- 3. objects in a namespace no stack creates ----------------------------------------------------


def test_sealing_into_an_undeclared_namespace_warns_and_export_refuses(repo_copy, cli):
    r = cli(
        "seal",
        "--stack",
        "staging",
        "--root",
        str(repo_copy),
        "--name",
        "extra",
        "--namespace",
        "newns",
        "--from-literal",
        "A=b",
    )
    assert r.code == 0, r.err
    assert (
        'warning: Pulumi.staging.yaml: namespace "newns" is not created by this stack nor listed in '
        "externalNamespaces: `ksecrets export` refuses newns/extra until it is"
    ) in r.err
    before = {p: p.read_bytes() for p in (repo_copy / "k8s").rglob("*") if p.is_file()}
    r = cli("export", "--root", str(repo_copy))
    assert (r.code, r.out) == (2, "")
    assert r.err == (
        'ksecrets: Pulumi.staging.yaml: SealedSecret newns/extra: namespace "newns" is not created by '
        "this stack nor listed in externalNamespaces, so Flux's apply of the whole layer would fail: add "
        "an app in it, list it under namespaces, or under externalNamespaces if it exists outside the "
        "stack\n"
    )
    assert {p: p.read_bytes() for p in (repo_copy / "k8s").rglob("*") if p.is_file()} == before
    # Declared as existing outside the stack: exported, and no Namespace object for it.
    f = repo_copy / "Pulumi.staging.yaml"
    f.write_text(
        f.read_text().replace("  k8s-secrets:flux:", "  k8s-secrets:externalNamespaces: [newns]\n  k8s-secrets:flux:")
    )
    assert cli("export", "--root", str(repo_copy)).code == 0
    assert (repo_copy / "k8s/staging/apps/sealedsecret-extra.yaml").is_file()
    assert not (repo_copy / "k8s/staging/infrastructure/namespace-newns.yaml").exists()


# --- 4. sizes the API server and etcd refuse -------------------------------------------------------


def test_a_secret_growing_over_1_mib_across_seal_runs_is_refused(repo_copy, cli, tmp_path):
    f = repo_copy / "Pulumi.staging.yaml"
    for i in range(2):
        value = tmp_path / f"v{i}"
        value.write_bytes(bytes([65 + i]) * 400_000)
        r = cli(
            "seal",
            "--stack",
            "staging",
            "--root",
            str(repo_copy),
            "--name",
            "my-app-secrets",
            "--from-file",
            f"BLOB{i}={value}",
        )
        assert r.code == 0, r.err  # 400 kB, then 800 kB in all: fine
    before = f.read_bytes()
    value = tmp_path / "v2"
    value.write_bytes(b"C" * 400_000)  # under 1 MiB on its own; 1.2 MB with what is already sealed
    r = cli(
        "seal",
        "--stack",
        "staging",
        "--root",
        str(repo_copy),
        "--name",
        "my-app-secrets",
        "--from-file",
        f"BLOB2={value}",
    )
    assert r.code == 2 and r.err.count("\n") == 1
    assert r.err.startswith(
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed[0]: my-app/my-app-secrets: with 5 keys "
        "its Secret would hold 12"
    )
    assert "over Kubernetes' 1048576-byte (1 MiB) Secret limit" in r.err
    assert f.read_bytes() == before


def _seal_entry_into_file(path: Path, name: str, values: dict[str, bytes]) -> None:
    cert = load_certificate(path.parent / "certs/staging.pem", source="cert")
    label = crypto.label_for("strict", "my-app", name)
    enc = {k: crypto.encrypt_value(cert.public_key, v, label) for k, v in values.items()}
    doc = yaml.safe_load(path.read_text())
    doc["config"][P + "sealed"].append(
        {
            "name": name,
            "namespace": "my-app",
            "scope": "strict",
            "certificateFingerprint": cert.fingerprint,
            "encryptedData": enc,
        }
    )
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1 << 20))


def test_export_refuses_a_sealed_secret_over_1_mib_of_data(repo_copy, cli):
    _seal_entry_into_file(repo_copy / "Pulumi.staging.yaml", "big", {"A": b"a" * 600_000, "B": b"b" * 500_000})
    r = cli("export", "--root", str(repo_copy))
    assert (r.code, r.err) == (
        2,
        "ksecrets: Pulumi.staging.yaml: SealedSecret my-app/big: its Secret would hold "
        "1100000 bytes of data, over Kubernetes' 1048576-byte (1 MiB) Secret limit; split "
        "it into several Secrets\n",
    )


def test_export_refuses_an_object_over_the_request_limit(repo_copy, cli):
    # 2,100 small values: 67 kB of data, but each sealed value is ~750 base64 characters.
    _seal_entry_into_file(repo_copy / "Pulumi.staging.yaml", "many", {f"K{i:04d}": b"x" * 32 for i in range(2100)})
    r = cli("export", "--root", str(repo_copy))
    assert r.code == 2 and r.err.count("\n") == 1
    assert r.err.startswith("ksecrets: Pulumi.staging.yaml: SealedSecret my-app/many: the object is ")
    assert r.err.endswith(
        "bytes, over the 1507328-byte limit (etcd's 1.5 MiB request limit less room for what the "
        "API server adds); split it\n"
    )


# --- 5. stack names Kubernetes cannot use ----------------------------------------------------------


@pytest.mark.parametrize("stack", ["Prod", "prod_eu", "prod.eu"])
def test_stack_names_kubernetes_rejects_are_refused(stack, tmp_path, cli):
    _stack(tmp_path, stack, _plain())
    _export_fails(
        cli,
        tmp_path,
        f'Pulumi.{stack}.yaml: stack name "{stack}" cannot be used in Kubernetes object '
        "names: use lower-case letters, digits and '-' (at most 63 characters); rename it "
        "with `pulumi stack rename`",
    )


def test_export_checks_names_on_crd_kinds():
    cfg = dataclasses.replace(load_stack("staging", ROOT), stack="Staging_EU")  # past the loader
    with pytest.raises(KsecretsError) as err:
        render(cfg)
    assert str(err.value) == (
        "Pulumi.staging.yaml: PrometheusRule monitoring/k8s-secrets-Staging_EU: metadata.name "
        '"k8s-secrets-Staging_EU" is not a DNS-1123 subdomain (lower case, at most 253 '
        "characters)"
    )


# --- 6. the Prometheus Operator is a declared prerequisite -----------------------------------------


def test_monitoring_needs_the_prometheus_operator_declared(tmp_path, cli):
    _stack(tmp_path, "dev", _plain(monitoring={"enabled": True, "runbookBaseUrl": "https://git.acme.io/ops/README.md"}))
    _export_fails(
        cli,
        tmp_path,
        "Pulumi.dev.yaml: monitoring.prometheusOperator: not declared; with "
        "monitoring.enabled the stack emits ServiceMonitors and a PrometheusRule, which need "
        "the Prometheus Operator's CRDs: set it to true if the cluster runs the operator, "
        "false to leave those objects out (or set monitoring.enabled: false)",
    )


@pytest.mark.parametrize("operator", [True, False])
def test_prometheus_operator_objects_follow_the_declaration(operator):
    cfg = load_stack("production", ROOT)
    cfg = dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, prometheus_operator=operator))
    objs = {(o["kind"], o["metadata"]["name"]): o for layer in render(cfg).objects.values() for o in layer}
    values = {name: o["spec"]["values"] for (kind, name), o in objs.items() if kind == "HelmRelease"}
    assert (("PrometheusRule", "k8s-secrets-production") in objs) is operator
    assert ("serviceMonitor" in values["vault"].get("serverTelemetry", {})) is operator
    assert values["vault-secrets-operator"]["telemetry"]["serviceMonitor"]["enabled"] is operator
    assert ("metrics" in values["sealed-secrets"]) is operator


# --- 7. placeholders -------------------------------------------------------------------------------


def test_placeholder_image_is_refused_unless_allowed(tmp_path, cli):
    cfg = _plain(apps=[{**_app(), "deployments": [{"name": "web", "image": "ghcr.io/example/web:1.0.0"}]}])
    _stack(tmp_path, "dev", cfg)
    _export_fails(
        cli,
        tmp_path,
        'Pulumi.dev.yaml: apps[0].deployments[0].image: "ghcr.io/example/web:1.0.0" is a '
        "placeholder (an example name) and would not work in a cluster; set the real value, "
        'or list "apps.deployments.image" under allowPlaceholders to deploy it on purpose',
    )
    _stack(tmp_path, "dev", {**cfg, "allowPlaceholders": ["apps.deployments.image"]})
    assert cli("export", "--root", str(tmp_path)).code == 0


def test_placeholder_runbook_url_is_refused(tmp_path, cli):
    _stack(tmp_path, "dev", _plain(monitoring={"prometheusOperator": True}))  # the default runbookBaseUrl
    _export_fails(
        cli,
        tmp_path,
        "Pulumi.dev.yaml: monitoring.runbookBaseUrl: "
        '"https://github.com/example/k8s-secrets/blob/main/README.md" is a placeholder (an '
        "example name) and would not work in a cluster; set the real value, or list "
        '"monitoring.runbookBaseUrl" under allowPlaceholders to deploy it on purpose',
    )


def test_the_pulumi_program_refuses_a_placeholder_too():
    """`pulumi preview` runs __main__.py: it stops with exit 2 before registering anything."""
    config = {
        P + "backend": "manual",
        P + "monitoring": '{"enabled": false}',
        P + "apps": '[{"name": "web", "namespace": "web", "deployments": '
        '[{"name": "web", "image": "ghcr.io/example/web:1.0.0"}]}]',
    }
    with pytest.raises(SystemExit) as exit_:
        run_program(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"), stack="dev", config=config)
    pulumi.runtime.set_all_config({})
    assert exit_.value.code == 2

"""One source of truth: under Pulumi mocks, the program registers exactly the objects that
`ksecrets export` writes, field by field, plus only Pulumi-only annotations and the manual
Secrets that are never exported."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.kube import FIELD_MANAGER, SKIP_AWAIT, WAIT_FOR, WAIT_READY, resource_name
from components.platform import Platform
from ksecrets.config import load_stack_file, stack_files
from ksecrets.usecases.export import render
from ksecrets.usecases.stack_facts import plan_stack
from tests.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[2]
STACKS = [p for p in stack_files(ROOT)]


def _strip_none(value):
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _registered_objects(mocks):
    """Registered custom resources as Kubernetes objects (type token → apiVersion/kind)."""
    out = {}
    for r in mocks.resources:
        if not r.custom:
            continue
        obj = _strip_none(copy.deepcopy(r.inputs))
        key = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in out, f"registered twice: {key}"
        assert r.name == resource_name(obj)
        out[key] = obj
    return out


def _key(obj) -> tuple:
    return (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_registered_resources_equal_exported_objects(stack_file):
    cfg = load_stack_file(stack_file)
    mocks, _ = run_program(lambda: Platform(cfg.stack, cfg), stack=cfg.stack)
    registered = _registered_objects(mocks)

    exported = {}
    rendered = render(cfg)
    for layer in ("infrastructure", "apps"):
        for obj in rendered.objects[layer]:
            key = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            exported[key] = obj
    # The files on disk are these objects (the export writes them, the drift test checks them).
    for rel, data in rendered.files.items():
        if not rel.endswith("kustomization.yaml") and not rel.startswith("sync/"):
            doc = yaml.safe_load(data)
            assert doc in rendered.objects[rel.split("/")[0]]

    # The one deliberate difference in the object sets: the ServiceAccount the apps Kustomization
    # applies as, and its RBAC, are for Flux only (pulumi up applies as itself).
    flux_only = {
        key
        for key, obj in exported.items()
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "flux-applier"
    }
    assert flux_only == {_key(p.obj) for p in plan_stack(cfg) if not p.pulumi}
    assert {k[1] for k in flux_only} == {"ServiceAccount", "Role", "RoleBinding"}
    assert not flux_only & set(registered)
    exported = {k: v for k, v in exported.items() if k not in flux_only}
    assert set(registered) == set(exported), "registered and exported object sets differ"
    for key, obj in registered.items():
        expected = copy.deepcopy(exported[key])
        # Pulumi-only, on every object: one server-side apply field manager per stack, the same
        # in every run (a killed run's creates and the next run's changes are one owner).
        annotations = obj["metadata"]["annotations"]
        assert annotations.pop(FIELD_MANAGER) == f"pulumi-k8s-secrets-{cfg.stack}", key
        if not annotations:
            del obj["metadata"]["annotations"]
        if obj["kind"] == "HelmRelease":
            # Pulumi-only: pulumi up waits for the chart to be Ready.
            assert obj["metadata"]["annotations"] == {WAIT_FOR: WAIT_READY}
            del obj["metadata"]["annotations"]
        if obj["kind"] == "Deployment" and cfg.backend in ("sealed-secrets", "vault"):
            # Pulumi-only: its Secret comes from a controller, so pulumi up does not await the rollout.
            annotations = obj["metadata"]["annotations"]
            assert annotations.pop(SKIP_AWAIT) == "true"
            if not annotations:
                del obj["metadata"]["annotations"]
        if obj["kind"] == "PersistentVolumeClaim":
            # Pulumi-only: a claim binds when a Pod first uses it (WaitForFirstConsumer), not at up.
            annotations = obj["metadata"]["annotations"]
            assert annotations.pop(SKIP_AWAIT) == "true"
            if not annotations:
                del obj["metadata"]["annotations"]
        assert obj == expected, f"{key} differs between pulumi and export"


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_exported_files_carry_no_pulumi_annotations(stack_file):
    cfg = load_stack_file(stack_file)
    for rel, data in render(cfg).files.items():
        assert b"pulumi.com/" not in data, rel


def test_components_parent_their_children_and_wait_for_crds(tmp_path):
    cfg = load_stack_file(ROOT / "Pulumi.staging.yaml")
    holder = {}
    mocks, _ = run_program(lambda: holder.setdefault("p", Platform(cfg.stack, cfg)), stack=cfg.stack)
    platform = holder["p"]
    types = {r.type for r in mocks.resources if not r.custom}
    assert "k8s-secrets:platform:Platform" in types
    assert "k8s-secrets:sealed-secrets:Controller" in types
    registry = platform.registry
    for planned in platform.planned:
        deps = registry.depends[planned.id]
        for need in planned.needs:
            assert need in deps, f"{planned.id} does not wait for {need}"
        ns = planned.obj["metadata"].get("namespace")
        if ns in registry.namespaces:
            assert registry.namespaces[ns] in deps, f"{planned.id} does not wait for its namespace"


def test_vault_is_configured_by_pulumi_only_when_asked(tmp_path):
    import yaml as _yaml

    doc = _yaml.safe_load((ROOT / "Pulumi.production.yaml").read_text())
    for configure in (False, True):
        doc["config"]["k8s-secrets:vault"]["configure"] = configure
        path = tmp_path / "Pulumi.prod2.yaml"
        path.write_text(_yaml.safe_dump(doc))
        cfg = load_stack_file(path)
        holder = {}
        mocks, _ = run_program(lambda: holder.setdefault("p", Platform(cfg.stack, cfg)), stack=cfg.stack)
        dynamic = [r for r in mocks.resources if r.type == "pulumi-python:dynamic:Resource"]
        assert len(dynamic) == (1 if configure else 0)
        if configure:
            assert dynamic[0].name == "prod2-vault-config"
            # No token or password in what Pulumi records for it.
            assert "VAULT_TOKEN" not in repr(dynamic[0].inputs) and "hvs." not in repr(dynamic[0].inputs)


def test_helmrelease_await_covers_every_attempt_and_manual_deployments_are_awaited():
    """pulumi up waits for a HelmRelease as long as helm-controller may keep trying (each attempt
    bounded by spec.timeout, plus remediation retries), not the provider's default; a Deployment
    whose Secret pulumi itself creates (manual backend) is awaited."""
    from components.kube import helmrelease_await_seconds

    hr = {
        "spec": {
            "timeout": "10m",
            "install": {"remediation": {"retries": 3}},
            "upgrade": {"remediation": {"retries": 1}},
        }
    }
    assert helmrelease_await_seconds(hr) == 4 * 600 + 300
    assert helmrelease_await_seconds({"spec": {}}) == 300 + 300  # Flux's 5m default, no retries
    with pytest.raises(ValueError):
        helmrelease_await_seconds({"spec": {"timeout": "10 minutes"}})
    for stack_file in STACKS:
        cfg = load_stack_file(stack_file)
        for obj in render(cfg).objects["infrastructure"]:
            if obj["kind"] == "HelmRelease":
                assert helmrelease_await_seconds(obj) > 600, obj["metadata"]["name"]

    manual = {
        "k8s-secrets:backend": "manual",
        "k8s-secrets:apps": [
            {
                "name": "web",
                "namespace": "web",
                "secretName": "web-secrets",
                "keys": ["PASSWORD"],
                "deployments": [{"name": "web", "image": "ghcr.io/example/web:1.0.0", "envFrom": True}],
            }
        ],
        "k8s-secrets:manualValues": {"web-secrets": {"PASSWORD": "x"}},
    }
    from components.pulumi_source import load_from_pulumi, manual_value_outputs

    def program():
        cfg, values = load_from_pulumi()
        Platform(cfg.stack, cfg, manual_values=manual_value_outputs(cfg, values))

    mocks, _ = run_program(program, stack="dev", config=manual)
    deployments = [r for r in mocks.resources if r.type == "kubernetes:apps/v1:Deployment"]
    assert deployments and all(SKIP_AWAIT not in (r.inputs["metadata"].get("annotations") or {}) for r in deployments)


def test_a_namespace_keeps_its_urn_when_it_moves_between_concerns(tmp_path):
    """Every Namespace has one home, the `namespaces` component, whichever concern asks for it
    (listed, an app's, Vault's): same parent and name, same URN, so moving one between concerns
    makes the engine update it instead of replacing a live namespace (with Vault's volumes)."""
    doc = yaml.safe_load((ROOT / "Pulumi.production.yaml").read_text())
    cfg = load_stack_file(ROOT / "Pulumi.production.yaml")

    def namespace_homes(d: dict) -> dict[str, str]:
        path = tmp_path / "Pulumi.prod3.yaml"
        path.write_text(yaml.safe_dump(d))
        c = load_stack_file(path)
        holder = {}
        run_program(lambda: holder.setdefault("p", Platform(c.stack, c)), stack=c.stack)
        return {
            pid.rsplit("/", 1)[1]: group_name
            for group_name, group in holder["p"].groups.items()
            for pid in group.resources
            if pid.startswith("v1/Namespace/")
        }

    homes = namespace_homes(doc)
    assert cfg.vault.namespace in homes and cfg.vault.operator.namespace in homes
    assert set(homes.values()) == {"namespaces"}, homes
    # An app's namespace that becomes a listed one (and back) keeps its home.
    app_ns = cfg.apps[0].namespace
    moved = copy.deepcopy(doc)
    moved["config"]["k8s-secrets:namespaces"] = sorted(
        set(moved["config"].get("k8s-secrets:namespaces", [])) | {app_ns}
    )
    assert namespace_homes(moved)[app_ns] == homes[app_ns] == "namespaces"


# --- delivery: flux (issue 22 item 4) --------------------------------------------------------------


def _builders_output(cfg) -> dict:
    """Everything the builders make of a stack: the exported layers and sync/, plus the objects
    that are never exported (`gitops=False`)."""
    rendered = render(cfg)
    out = {_key(o): o for layer in ("infrastructure", "apps", "sync") for o in rendered.objects[layer]}
    out.update({_key(p.obj): p.obj for p in plan_stack(cfg) if not p.gitops})
    return out


def _without_field_manager(obj, stack):
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"]["annotations"]
    assert annotations.pop(FIELD_MANAGER) == f"pulumi-k8s-secrets-{stack}"
    if not annotations:
        del obj["metadata"]["annotations"]
    return obj


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_flux_delivery_registers_exactly_the_sync_kustomizations(stack_file):
    """Under `delivery: flux` Pulumi registers exactly k8s/<stack>/sync/ (the documented subset of
    the builders' output), field by field as exported; every other object is Flux's."""
    import dataclasses

    cfg = dataclasses.replace(load_stack_file(stack_file), delivery="flux")
    mocks, _ = run_program(lambda: Platform(cfg.stack, cfg), stack=cfg.stack)
    registered = _registered_objects(mocks)
    rendered = render(cfg)
    sync = {_key(o): o for o in rendered.objects["sync"]}
    assert set(sync) and set(registered) == set(sync)
    assert set(registered) <= set(_builders_output(cfg))
    for key, obj in registered.items():
        # nothing Pulumi registers needs the infrastructure Kustomization here: none is awaited
        assert _without_field_manager(obj, cfg.stack) == sync[key], key
    # the exported files do not depend on the delivery
    assert rendered.files == render(load_stack_file(stack_file)).files


def test_flux_delivery_keeps_manual_values_as_pulumi_secrets():
    """A manual-backend stack under `delivery: flux`: Pulumi registers sync/ and the manual Secret
    (never exported), which waits for the infrastructure Kustomization (its namespace is Flux's)."""
    from components.pulumi_source import load_from_pulumi, manual_value_outputs
    from ksecrets.config.load import parse

    config = {
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
        "k8s-secrets:manualValues": {"web-secrets": {"PASSWORD": "x"}},
    }
    holder = {}

    def program():
        cfg, values = load_from_pulumi()
        holder["cfg"] = cfg
        holder["p"] = Platform(cfg.stack, cfg, manual_values=manual_value_outputs(cfg, values))

    mocks, _ = run_program(program, stack="dev", config=config)
    cfg, platform = holder["cfg"], holder["p"]
    assert cfg.delivery == "flux"
    registered = _registered_objects(mocks)
    infra, apps = (
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", f"dev-{n}")
        for n in ("infrastructure", "apps")
    )
    secret = ("v1", "Secret", "web", "web-secrets")
    assert set(registered) == {infra, apps, secret}
    assert set(registered) <= set(_builders_output(cfg))
    # The manual Secret waits for the Kustomization that creates its namespace; that one is awaited.
    assert (
        "kustomize.toolkit.fluxcd.io/v1/Kustomization/flux-system/dev-infrastructure"
        in platform.registry.depends["v1/Secret/web/web-secrets"]
    )
    assert registered[infra]["metadata"]["annotations"][WAIT_FOR] == WAIT_READY
    assert WAIT_FOR not in registered[apps]["metadata"]["annotations"]
    # Delivery is read once, by the model: a stack file without it is `pulumi`, anything else refused.
    raw = {k.removeprefix("k8s-secrets:"): v for k, v in config.items()}
    assert (
        parse({**raw, "delivery": "pulumi"}, stack="dev", source="Pulumi.dev.yaml", root=str(ROOT)).delivery == "pulumi"
    )
    assert (
        parse({k: v for k, v in raw.items() if k != "delivery"}, stack="dev", source="x", root=str(ROOT)).delivery
        == "pulumi"
    )
    from ksecrets.errors import KsecretsError

    with pytest.raises(KsecretsError, match="delivery"):
        parse({**raw, "delivery": "argo"}, stack="dev", source="Pulumi.dev.yaml", root=str(ROOT))


def test_flux_delivery_preview_report_names_what_flux_would_apply_differently(tmp_path):
    """The preview's report of a flux-delivered stack: up to date against the committed k8s/, and
    every differing file named once k8s/ lags the config."""
    import dataclasses
    import shutil

    from components.flux_delivery import report

    cfg = dataclasses.replace(load_stack_file(ROOT / "Pulumi.staging.yaml"), delivery="flux")
    ok = report(cfg)
    assert ok.warnings == [] and "delivery flux: k8s/staging/ is up to date with Pulumi.staging.yaml" in ok.info
    shutil.copytree(ROOT / "certs", tmp_path / "certs")
    shutil.copytree(ROOT / "k8s" / "staging", tmp_path / "k8s" / "staging")
    shutil.copytree(ROOT / "clusters" / "staging", tmp_path / "clusters" / "staging")  # the Flux entry point
    (tmp_path / "k8s" / "staging" / "apps" / "deployment-my-app.yaml").write_text(
        "# Generated by `ksecrets export` x\n"
    )
    (tmp_path / "k8s" / "staging" / "apps" / "serviceaccount-my-app.yaml").unlink()
    lagging = report(dataclasses.replace(cfg, root=str(tmp_path)))
    assert (
        "2 file(s) of k8s/staging/ and clusters/staging/ differ from what Pulumi.staging.yaml renders"
        in (lagging.warnings[0])
    )
    assert lagging.warnings[1:] == [
        "  changed: k8s/staging/apps/deployment-my-app.yaml",
        "  missing: k8s/staging/apps/serviceaccount-my-app.yaml",
    ]


def test_flux_delivery_refuses_vault_configure(tmp_path):
    """`vault.configure` is Pulumi configuring the Vault it installed; under flux Pulumi holds no
    Vault release to wait for, so the stack is refused with the key named."""
    import yaml as _yaml

    from ksecrets.errors import KsecretsError

    doc = _yaml.safe_load((ROOT / "Pulumi.production.yaml").read_text())
    doc["config"]["k8s-secrets:delivery"] = "flux"
    doc["config"]["k8s-secrets:vault"]["configure"] = True
    path = tmp_path / "Pulumi.prod2.yaml"
    path.write_text(_yaml.safe_dump(doc))
    with pytest.raises(KsecretsError, match=r"vault\.configure: is true but delivery is flux"):
        load_stack_file(path)
    doc["config"]["k8s-secrets:vault"]["configure"] = False
    path.write_text(_yaml.safe_dump(doc))
    assert load_stack_file(path).delivery == "flux"

"""The Vault builders: every object validates against its schema, both charts' values are real
keys of the pinned charts, and the operator objects point at things that exist.

The exact objects of the `production` stack are its committed files under k8s/production/
(`assert_committed`; after a deliberate builder change `make render` rewrites them and the diff is
reviewed); the tests below state the rules (TLS everywhere or nowhere, one peer per replica, the
config's settings where the charts read them), not the shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ksecrets import validation
from ksecrets.config.load import load_stack, load_stack_file
from ksecrets.manifests import vault as mv
from ksecrets.manifests import workloads
from ksecrets.manifests.plan import object_id
from ksecrets.usecases.stack_facts import plan_stack
from tests.conftest import CHARTS
from tests.conftest import CRDS as CRD_DIR
from tests.conftest import assert_committed

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str):
    return load_stack_file(FIXTURES / name) if name.endswith(".yaml") else load_stack(name, ROOT)


STACKS = ["production", "Pulumi.vaultdb.yaml"]


@pytest.fixture(params=STACKS)
def cfg(request):
    return _load(request.param)


def _crd_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / file).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


CRDS = {
    "VaultConnection": "vso-secrets.hashicorp.com_vaultconnections.yaml",
    "VaultAuth": "vso-secrets.hashicorp.com_vaultauths.yaml",
    "VaultStaticSecret": "vso-secrets.hashicorp.com_vaultstaticsecrets.yaml",
    "VaultDynamicSecret": "vso-secrets.hashicorp.com_vaultdynamicsecrets.yaml",
    "HelmRelease": "flux-helm.toolkit.fluxcd.io_helmreleases.yaml",
    "HelmRepository": "flux-source.toolkit.fluxcd.io_helmrepositories.yaml",
}


def test_production_objects_are_the_committed_k8s_files():
    cfg = _load("production")
    assert_committed("production", mv.infrastructure(cfg) + mv.app_objects(cfg))


def test_every_object_validates_against_the_upstream_schemas(cfg):
    objs = [p.obj for p in mv.infrastructure(cfg) + mv.app_objects(cfg)]
    kinds = {o["kind"] for o in objs}
    assert {"VaultConnection", "VaultAuth", "VaultStaticSecret", "HelmRelease", "HelmRepository"} <= kinds
    for obj in objs:
        if obj["kind"] in CRDS:  # straight against the vendored upstream CRDs
            errors = list(jsonschema.Draft7Validator(_crd_schema(CRDS[obj["kind"]])).iter_errors(obj))
            assert errors == [], (object_id(obj), [e.message for e in errors])
        assert list(validation.errors(obj)) == [], object_id(obj)


def test_vault_values_validate_against_the_charts_schema(cfg):
    schema = json.loads((CHARTS / "vault-helm-0.34.1.values.schema.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(mv.vault_values(cfg)))
    assert errors == [], [e.message for e in errors]


def _unknown_keys(values: Any, defaults: Any, path: str = "") -> list[str]:
    """Keys of `values` that the chart's values.yaml does not have. Below a default that is not a
    non-empty mapping (`{}`, `[]`, null, a template string) the chart takes free-form input."""
    if not isinstance(values, dict) or not isinstance(defaults, dict) or not defaults:
        return []
    out = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults:
            out.append(where)
        else:
            out += _unknown_keys(value, defaults[key], where)
    return out


@pytest.mark.parametrize(
    "chart,builder",
    [
        ("vault-helm-0.34.1.values.yaml", mv.vault_values),
        ("vault-secrets-operator-1.4.1.values.yaml", mv.operator_values),
    ],
)
def test_every_values_key_exists_in_the_charts_values_yaml(cfg, chart, builder):
    defaults = yaml.safe_load((CHARTS / chart).read_text())
    assert _unknown_keys(builder(cfg), defaults) == []


def test_the_key_check_catches_a_misspelt_key():
    defaults = yaml.safe_load((CHARTS / "vault-helm-0.34.1.values.yaml").read_text())
    assert _unknown_keys({"server": {"ha": {"raft": {"setNodeID": True}}}}, defaults) == ["server.ha.raft.setNodeID"]


def test_ha_uses_raft_and_joins_every_peer():
    cfg = _load("Pulumi.vaultdb.yaml")  # 5 replicas, TLS off
    values = mv.vault_values(cfg)
    ha = values["server"]["ha"]
    assert ha["enabled"] is True and ha["replicas"] == 5
    assert ha["raft"]["enabled"] is True and ha["raft"]["setNodeId"] is True
    assert values["server"]["standalone"] == {"enabled": False}
    config = ha["raft"]["config"]
    assert re.findall(r'leader_api_addr = "([^"]+)"', config) == [
        f"http://vault-{n}.vault-internal:8200" for n in range(5)
    ]
    assert 'storage "raft"' in config and "consul" not in config
    assert "tls_disable = 1" in config and "leader_ca_cert_file" not in config
    assert values["global"]["tlsDisable"] is True
    assert values["injector"] == {"enabled": False}
    assert values["ui"]["enabled"] is True
    assert values["server"]["dataStorage"] == {
        "enabled": True,
        "size": "5Gi",
        "mountPath": "/vault/data",
        "accessMode": "ReadWriteOnce",
        "storageClass": "fast-ssd",
    }
    assert values["server"]["auditStorage"]["size"] == "2Gi"
    assert values["server"]["auditStorage"]["enabled"] is True


def test_tls_mounts_the_secret_and_verifies_peers():
    cfg = _load("production")
    values = mv.vault_values(cfg)
    config = values["server"]["ha"]["raft"]["config"]
    assert values["global"]["tlsDisable"] is False
    assert re.findall(r'leader_api_addr = "([^"]+)"', config) == [
        f"https://vault-{n}.vault-internal:8200" for n in range(3)
    ]
    assert config.count('leader_ca_cert_file = "/vault/userconfig/tls/ca.crt"') == 3
    assert 'tls_cert_file = "/vault/userconfig/tls/tls.crt"' in config and "tls_disable = 0" in config
    # The files the config names are where the TLS Secret is mounted (exact values: the golden file).
    (volume,) = values["server"]["volumes"]
    (mount,) = values["server"]["volumeMounts"]
    assert volume["secret"]["secretName"] == cfg.vault.tls.secret_name and mount["name"] == volume["name"]
    assert mount["readOnly"] is True and values["server"]["extraEnvironmentVars"]["VAULT_CACERT"].startswith(
        mount["mountPath"] + "/"
    )
    conn = mv.vault_connection(cfg)
    assert conn["spec"]["address"].startswith("https://") and conn["spec"]["skipTLSVerify"] is False
    assert conn["spec"]["caCertSecretRef"] == cfg.vault.tls.ca_secret_name


def test_releases_are_pinned_and_the_vault_install_does_not_wait_for_a_sealed_vault(cfg):
    releases = {p.obj["metadata"]["name"]: p.obj for p in mv.infrastructure(cfg) if p.obj["kind"] == "HelmRelease"}
    assert set(releases) == {"vault", "vault-secrets-operator"}
    vault, vso = releases["vault"]["spec"], releases["vault-secrets-operator"]["spec"]
    assert vault["chart"]["spec"]["version"] == "0.34.1" and vso["chart"]["spec"]["version"] == "1.4.1"
    assert vault["chart"]["spec"]["sourceRef"] == {
        "kind": "HelmRepository",
        "name": "hashicorp",
        "namespace": "flux-system",
    }
    assert vault["releaseName"] == "vault"  # pod names vault-N and service vault-internal follow from it
    assert vault["targetNamespace"] == cfg.vault.namespace and vso["targetNamespace"] == cfg.vault.operator.namespace
    assert vault["install"]["disableWait"] is True and vault["upgrade"]["disableWait"] is True
    assert "disableWait" not in vso["install"]


def test_static_secret_per_app(cfg):
    deployments = {(p.obj["metadata"]["namespace"], p.obj["metadata"]["name"]) for p in workloads.deployments(cfg)}
    statics = [p.obj for p in mv.app_objects(cfg) if p.obj["kind"] == "VaultStaticSecret"]
    assert len(statics) == len(cfg.apps)
    for app, obj in zip(cfg.apps, statics):
        spec = obj["spec"]
        assert obj["metadata"]["namespace"] == app.namespace
        assert spec["type"] == "kv-v2" and spec["mount"] == cfg.vault.kv_mount and spec["path"] == app.vault.path
        assert spec["hmacSecretData"] is True
        assert spec["refreshAfter"] == app.vault.refresh_after
        assert spec["destination"]["name"] == app.secret_name and spec["destination"]["create"] is True
        targets = spec["rolloutRestartTargets"]
        assert [t["name"] for t in targets] == [d.name for d in app.deployments]
        for t in targets:  # every target is a Deployment the stack really emits
            assert t["kind"] == "Deployment" and (app.namespace, t["name"]) in deployments
        assert spec["vaultAuthRef"] == app.name


def test_vault_auth_per_app_and_one_connection():
    cfg = _load("Pulumi.vaultdb.yaml")
    objs = [p.obj for p in mv.app_objects(cfg)]
    conns = [o for o in objs if o["kind"] == "VaultConnection"]
    assert [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in conns] == [
        ("vault-secrets-operator-system", "vault")
    ]
    assert conns[0]["spec"] == {"address": "http://vault.vault.svc:8200", "skipTLSVerify": False}
    auths = {o["metadata"]["name"]: o for o in objs if o["kind"] == "VaultAuth"}
    assert auths["orders"]["metadata"]["namespace"] == "shop"
    assert auths["orders"]["spec"] == {
        "vaultConnectionRef": "vault-secrets-operator-system/vault",
        "method": "kubernetes",
        "mount": "k8s",
        "kubernetes": {"role": "orders", "serviceAccount": "orders-sa", "audiences": ["vault-test"]},
    }
    dyn = [o for o in objs if o["kind"] == "VaultDynamicSecret"]
    assert len(dyn) == 1
    assert dyn[0]["metadata"]["name"] == "orders-db-creds" and dyn[0]["metadata"]["namespace"] == "shop"
    assert dyn[0]["spec"] == {
        "vaultAuthRef": "orders",
        "mount": "database",
        "path": "creds/orders-rw",
        "renewalPercent": 67,
        "destination": {
            "name": "orders-db-creds",
            "create": True,
            "labels": {"app.kubernetes.io/part-of": "k8s-secrets"},
        },
        "rolloutRestartTargets": [
            {"kind": "Deployment", "name": "orders-api"},
            {"kind": "Deployment", "name": "orders-worker"},
        ],
    }


def test_app_objects_need_the_operator_release_and_it_exists_in_the_stack(cfg):
    planned = plan_stack(cfg)
    ids = {p.id for p in planned}
    vso = mv.vso_release_id(cfg)
    assert vso in ids
    app_objs = [p for p in planned if p.obj["apiVersion"] == mv.VSO_API]
    assert app_objs and all(p.needs == (vso,) and p.layer == "apps" for p in app_objs)
    assert not any(p.obj["kind"] == "SealedSecret" for p in planned)


def test_namespaces_for_vault_and_the_operator_are_created_once(cfg):
    infra = [p.obj for p in mv.infrastructure(cfg) if p.obj["kind"] == "Namespace"]
    labels = {o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for o in infra}
    assert labels == {"vault": "restricted", "vault-secrets-operator-system": "baseline"}
    pod = mv.vault_values(cfg)["server"]["statefulSet"]["securityContext"]
    assert pod["pod"]["seccompProfile"] == {"type": "RuntimeDefault"} and pod["pod"]["runAsNonRoot"] is True
    assert pod["container"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("name", STACKS)
def test_builders_are_deterministic(name):
    def render() -> str:
        cfg = _load(name)  # a fresh load each time: same file, same bytes
        return yaml.safe_dump([p.obj for p in mv.infrastructure(cfg) + mv.app_objects(cfg)], sort_keys=False)

    assert render() == render()


def test_key_order_is_kubernetes_usual(cfg):
    for p in mv.infrastructure(cfg) + mv.app_objects(cfg):
        assert list(p.obj)[:3] == ["apiVersion", "kind", "metadata"]

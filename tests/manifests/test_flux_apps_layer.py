"""The apps Kustomization: healthCheckExprs for the secret kinds it applies, checked against the
vendored CRDs' status schemas and evaluated by a real CEL runtime (cel-expr-python, Google's
cel-cpp) the way Flux's StatusEvaluator does; and the least-privilege ServiceAccount it applies as.

Pending: applying the apps layer as that ServiceAccount against the real API server of the
end-to-end suite (another change owns that harness).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from ksecrets.config import load_stack_file, stack_files
from ksecrets.usecases.export import render
from ksecrets.usecases.stack_facts import crd_plurals, plan_stack
from ksecrets.manifests.flux import (
    APPLY_VERBS,
    HEALTH_CHECK_EXPRS,
    INFRA_HEALTH_CHECK_EXPRS,
    apps_applier,
    guess_resource,
)

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "ksecrets" / "schemas" / "crds"
STACKS = list(stack_files(ROOT))
cel = pytest.importorskip("cel_expr_python.cel")
from cel_expr_python.ext.ext_optional import ExtOptional  # noqa: E402
from cel_expr_python.ext.ext_strings import ExtStrings  # noqa: E402

CRD_FILES = {
    "SealedSecret": "sealedsecret.yaml",
    "VaultStaticSecret": "vso-secrets.hashicorp.com_vaultstaticsecrets.yaml",
    "VaultDynamicSecret": "vso-secrets.hashicorp.com_vaultdynamicsecrets.yaml",
}


def crd_schema(kind: str, version: str) -> dict:
    crd = yaml.safe_load((CRDS / CRD_FILES[kind]).read_text())
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]


# --- a Flux-like evaluator -------------------------------------------------------------------------

ENV = cel.NewEnv(
    variables={k: cel.Type.DYN for k in ("apiVersion", "kind", "metadata", "spec", "status")},
    extensions=[ExtOptional(), ExtStrings()],
)


def evaluate(exprs: dict[str, str], obj: dict) -> str:
    """Flux's StatusEvaluator (fluxcd/pkg runtime/cel): observedGeneration first, then inProgress,
    failed, current; none true is InProgress; an evaluation error leaves the status Unknown."""
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"].get("generation"):
        return "InProgress"
    for field, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if field not in exprs:
            continue
        value = ENV.compile(exprs[field], disable_check=True).eval(data=obj)
        if value.type() == cel.Type.ERROR:
            return "Unknown"
        assert value.type() == cel.Type.BOOL, (field, exprs[field])
        if value.value():
            return result
    return "InProgress"


def sealed_secret(generation=1, status=None) -> dict:
    obj = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "s", "namespace": "ns", "generation": generation},
        "spec": {"encryptedData": {"K": "AgA="}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def synced(status: str, message: str = "") -> dict:
    return {
        "type": "Synced",
        "status": status,
        "message": message,
        "lastTransitionTime": "2026-11-29T10:00:00Z",
        "lastUpdateTime": "2026-11-29T10:00:00Z",
    }


def vso(kind: str, generation: int, conditions: list | None, **status) -> dict:
    obj = {
        "apiVersion": "secrets.hashicorp.com/v1beta1",
        "kind": kind,
        "metadata": {"name": "app", "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if conditions is not None or status:
        required = {"lastGeneration": generation - 1}  # what VSO's CRDs require of a status
        if kind == "VaultDynamicSecret":
            required.update(
                lastRenewalTime=0, secretLease={"duration": 0, "id": "", "renewable": False, "requestID": ""}
            )
        obj["status"] = {**required, **status, **({"conditions": conditions} if conditions is not None else {})}
    return obj


def cond(ctype: str, status: str, gen: int, reason: str = "Synced") -> dict:
    return {
        "type": ctype,
        "status": status,
        "observedGeneration": gen,
        "reason": reason,
        "message": "",
        "lastTransitionTime": "2026-11-29T10:00:00Z",
    }


SEALED = [
    ("synced", sealed_secret(1, {"observedGeneration": 1, "conditions": [synced("True")]}), "Current"),
    (
        "cannot unseal",
        sealed_secret(1, {"observedGeneration": 1, "conditions": [synced("False", "no key could decrypt secret (K)")]}),
        "Failed",
    ),
    (
        "new generation not seen yet",
        sealed_secret(2, {"observedGeneration": 1, "conditions": [synced("True")]}),
        "InProgress",
    ),
    ("status without conditions", sealed_secret(1, {"observedGeneration": 1}), "InProgress"),
    ("no status yet", sealed_secret(1), "Unknown"),
]


def vso_cases(kind: str) -> list:
    healthy = [
        cond("SecretSynced", "True", 3),
        cond("Healthy", "True", 3, "Healthy"),
        cond("Ready", "True", 3, "Ready"),
    ]
    return [
        ("synced", vso(kind, 3, healthy, lastGeneration=3), "Current"),
        (
            "Vault unreadable",
            vso(
                kind,
                3,
                [cond("SecretSynced", "False", 3, "Synced"), cond("Healthy", "False", 3, "Unhealthy")],
                lastGeneration=3,
            ),
            "Failed",
        ),
        ("synced for an older generation", vso(kind, 4, healthy, lastGeneration=3), "InProgress"),
        (
            "failed for an older generation",
            vso(kind, 4, [cond("SecretSynced", "False", 3)], lastGeneration=3),
            "InProgress",
        ),
        ("no conditions yet", vso(kind, 1, None, lastGeneration=0), "InProgress"),
        ("no status yet", vso(kind, 1, None), "Unknown"),
    ]


CASES = [("SealedSecret", "v1alpha1", *c) for c in SEALED] + [
    (k, "v1beta1", *c) for k in ("VaultStaticSecret", "VaultDynamicSecret") for c in vso_cases(k)
]


@pytest.mark.parametrize("kind,version,label,obj,expected", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_health_expressions_on_status_samples(kind, version, label, obj, expected):
    # The sample is a status the CRD allows (validated against the vendored status schema).
    if "status" in obj:
        jsonschema.validate(obj["status"], crd_schema(kind, version)["properties"]["status"])
    exprs = HEALTH_CHECK_EXPRS[(obj["apiVersion"], kind)]
    assert evaluate(exprs, obj) == expected


def test_a_wrong_condition_type_would_be_caught():
    """The evaluator is alive: the same samples with a misspelt condition type are never Current."""
    exprs = {
        k: v.replace("'Synced'", "'Sync'")
        for k, v in HEALTH_CHECK_EXPRS[("bitnami.com/v1alpha1", "SealedSecret")].items()
    }
    assert evaluate(exprs, SEALED[0][1]) == "InProgress"
    assert evaluate(exprs, SEALED[1][1]) == "InProgress"


@pytest.mark.parametrize("key", list(HEALTH_CHECK_EXPRS), ids=lambda k: k[1])
def test_expressions_only_read_fields_the_crd_status_defines(key):
    api, kind = key
    schema = crd_schema(kind, api.split("/")[1])
    status = schema["properties"]["status"]["properties"]
    condition = status["conditions"]["items"]["properties"]
    for field, expr in HEALTH_CHECK_EXPRS[key].items():
        for name in re.findall(r"status\.\??(\w+)", expr):
            assert name in status, (field, name)
        for name in re.findall(r"\bc\.\??(\w+)", expr):
            assert name in condition, (field, name)
        assert set(re.findall(r"\bmetadata\.(\w+)", expr)) <= {"generation"}
        ENV.compile(expr, disable_check=True)  # parses


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_apps_kustomization_checks_exactly_its_secret_kinds(stack_file):
    cfg = load_stack_file(stack_file)
    rendered = render(cfg)
    (apps_ks,) = [o for o in rendered.objects["sync"] if o["metadata"]["name"] == f"{cfg.stack}-apps"]
    kinds = {(o["apiVersion"], o["kind"]) for o in rendered.objects["apps"]}
    want = [k for k in HEALTH_CHECK_EXPRS if k in kinds]
    got = [(e["apiVersion"], e["kind"]) for e in apps_ks["spec"].get("healthCheckExprs", [])]
    assert got == want and want, (got, kinds)
    assert apps_ks["spec"]["wait"] is True  # Flux evaluates the expressions only with wait or healthChecks


# --- the applier ServiceAccount ----------------------------------------------------------------------


def _group(api: str) -> str:
    return api.split("/")[0] if "/" in api else ""


def _allows(rules: list[dict], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_apps_layer_applies_as_its_own_least_privilege_service_account(stack_file):
    cfg = load_stack_file(stack_file)
    rendered = render(cfg)
    infra, apps = rendered.objects["infrastructure"], rendered.objects["apps"]
    (apps_ks,) = [o for o in rendered.objects["sync"] if o["metadata"]["name"] == f"{cfg.stack}-apps"]
    sa_name = apps_ks["spec"]["serviceAccountName"]
    (sa,) = [o for o in infra if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == sa_name]
    assert sa["metadata"]["namespace"] == apps_ks["metadata"]["namespace"]  # Flux impersonates it there
    infra_ks = [o for o in rendered.objects["sync"] if o["metadata"]["name"] == f"{cfg.stack}-infrastructure"][0]
    assert "serviceAccountName" not in infra_ks["spec"]

    roles = {
        o["metadata"]["namespace"]: o
        for o in infra
        if o["kind"] == "Role" and o["metadata"]["name"] == f"{sa_name}-applier"
    }
    bindings = [o for o in infra if o["kind"] == "RoleBinding" and o["metadata"]["name"] == f"{sa_name}-applier"]
    assert not [o for o in infra + apps if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": sa["metadata"]["namespace"]}]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{sa_name}-applier"}
    assert {b["metadata"]["namespace"] for b in bindings} == set(roles)

    # Every object of the apps layer can be applied, read for health and pruned ...
    needed: dict[str, set[tuple[str, str]]] = {}
    plurals = {
        "ServiceAccount": "serviceaccounts",
        "Deployment": "deployments",
        "CronJob": "cronjobs",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "PrometheusRule": "prometheusrules",
        "SealedSecret": "sealedsecrets",
        "VaultAuth": "vaultauths",
        "VaultConnection": "vaultconnections",
        "VaultStaticSecret": "vaultstaticsecrets",
        "VaultDynamicSecret": "vaultdynamicsecrets",
    }
    for o in apps:
        ns = o["metadata"]["namespace"]
        resource = plurals[o["kind"]]
        needed.setdefault(ns, set()).add((_group(o["apiVersion"]), resource))
        for verb in APPLY_VERBS:
            assert _allows(roles[ns]["rules"], _group(o["apiVersion"]), resource, verb), (ns, o["kind"], verb)
    # ... in exactly the namespaces it lives in ...
    assert set(roles) == set(needed)
    # ... and nothing else: each rule is an apply rule for kinds of that namespace, a rule of a
    # Role the layer creates there (Kubernetes lets nobody grant what they do not hold), or `bind`
    # on exactly those Roles (kustomize-controller dry-runs a RoleBinding before its Role exists).
    for ns, role in roles.items():
        app_rules = [r for o in apps if o["kind"] == "Role" and o["metadata"]["namespace"] == ns for r in o["rules"]]
        app_roles = sorted(
            o["metadata"]["name"] for o in apps if o["kind"] == "Role" and o["metadata"]["namespace"] == ns
        )
        bind = [r for r in role["rules"] if r["verbs"] == ["bind"]]
        assert bind == (
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "resourceNames": app_roles,
                    "verbs": ["bind"],
                }
            ]
            if app_roles
            else []
        ), (ns, bind)
        # Reading (only) what kustomize-controller's health check reads for a Deployment.
        reads = [r for r in role["rules"] if r["verbs"] == ["get", "list", "watch"]]
        has_deployment = any(o["kind"] == "Deployment" and o["metadata"]["namespace"] == ns for o in apps)
        assert sorted((r["apiGroups"][0], *r["resources"]) for r in reads) == (
            [("", "pods"), ("apps", "replicasets")] if has_deployment else []
        ), (ns, reads)
        for rule in role["rules"]:
            if rule in app_rules or rule in bind or rule in reads:
                continue
            assert rule["verbs"] == APPLY_VERBS and len(rule["apiGroups"]) == 1
            assert {(rule["apiGroups"][0], r) for r in rule["resources"]} <= needed[ns], (ns, rule)
        for rule in app_rules:  # escalation check: the applier holds every rule it grants
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            assert _allows(role["rules"], group, resource, verb, name)
        assert not _allows(role["rules"], "", "secrets", "list")  # listing Secrets reads them all


def test_resource_name_guess_matches_the_real_plurals():
    assert [
        guess_resource(k)
        for k in (
            "ServiceAccount",
            "Deployment",
            "CronJob",
            "Role",
            "RoleBinding",
            "NetworkPolicy",
            "Ingress",
            "Secret",
            "ConfigMap",
        )
    ] == [
        "serviceaccounts",
        "deployments",
        "cronjobs",
        "roles",
        "rolebindings",
        "networkpolicies",
        "ingresses",
        "secrets",
        "configmaps",
    ]


def test_a_cluster_scoped_object_in_the_apps_layer_is_refused():
    from ksecrets.errors import KsecretsError

    cfg = load_stack_file(STACKS[0])
    with pytest.raises(KsecretsError, match="cluster-scoped ClusterRole x"):
        apps_applier(
            cfg,
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "x"},
                    "rules": [],
                }
            ],
            crd_plurals(),
        )


def test_pulumi_does_not_register_the_flux_applier():
    cfg = load_stack_file(STACKS[0])
    flux_only = [p for p in plan_stack(cfg) if not p.pulumi]
    assert flux_only and {p.group for p in flux_only} == {"flux-applier"}
    assert all(p.layer == "infrastructure" for p in flux_only)


# --- the infrastructure Kustomization: a claim waiting for its first consumer is healthy -------------


def pvc(phase: str | None) -> dict:
    obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "vault-snapshots", "namespace": "vault", "generation": 1},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


@pytest.mark.parametrize("phase,expected", [("Pending", "Current"), ("Bound", "Current"), ("Lost", "Failed")])
def test_pvc_health_expressions(phase, expected):
    """kstatus holds a Pending claim InProgress; on a WaitForFirstConsumer class the snapshot
    volume stays Pending until the daily Job runs, and `wait: true` timed out the infrastructure
    layer (the real kustomize-controller, tests/e2e/test_flux_vault.py)."""
    exprs = INFRA_HEALTH_CHECK_EXPRS[("v1", "PersistentVolumeClaim")]
    assert evaluate(exprs, pvc(phase)) == expected


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_infrastructure_kustomization_checks_its_claims(stack_file):
    cfg = load_stack_file(stack_file)
    rendered = render(cfg)
    (infra,) = [o for o in rendered.objects["sync"] if o["metadata"]["name"] == f"{cfg.stack}-infrastructure"]
    has_pvc = any(o["kind"] == "PersistentVolumeClaim" for o in rendered.objects["infrastructure"])
    got = [(e["apiVersion"], e["kind"]) for e in infra["spec"].get("healthCheckExprs", [])]
    assert got == ([("v1", "PersistentVolumeClaim")] if has_pvc else []), got
    assert infra["spec"]["wait"] is True and "serviceAccountName" not in infra["spec"]


# --- the handover of `ksecrets migrate --to vault`: Flux must still be able to prune SealedSecrets ---


def _applier_rules(cfg) -> dict[str, list[dict]]:
    rendered = render(cfg)
    return {
        o["metadata"]["namespace"]: o["rules"]
        for o in rendered.objects["infrastructure"]
        if o["kind"] == "Role" and o["metadata"]["name"] == f"{cfg.stack}-apps-applier"
    }


def _may_delete_sealed(rules: list[dict]) -> bool:
    return any(
        "bitnami.com" in r["apiGroups"] and "sealedsecrets" in r["resources"] and "delete" in r["verbs"] for r in rules
    )


def test_handover_applier_keeps_rights_to_prune_sealed_secrets():
    """At the switch the apps layer holds VaultStaticSecrets instead of SealedSecrets; Flux prunes the
    SealedSecrets as the apps account, after infrastructure applied its new Roles. Without the rights
    the real kustomize-controller failed "delete failed ... is forbidden" (test_flux_migrate.py)."""
    from ksecrets.usecases.vault_migrate import _as_vault_stack

    path = ROOT / "Pulumi.staging.yaml"
    sealed = load_stack_file(path)
    handover = _as_vault_stack(path, sealed)
    assert handover.vault_migration == "handover" and handover.sealed
    rendered = render(handover)
    assert not [o for o in rendered.objects["apps"] if o["kind"] == "SealedSecret"]
    rules = _applier_rules(handover)
    for entry in handover.sealed:
        assert _may_delete_sealed(rules[entry.namespace]), (entry.namespace, rules[entry.namespace])
    # After --finish (no vaultMigration) the rights go with the SealedSecrets.
    finished = dataclasses.replace(handover, vault_migration=None)
    assert not any(_may_delete_sealed(r) for r in _applier_rules(finished).values())

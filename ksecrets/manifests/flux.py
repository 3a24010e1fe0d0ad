"""Flux sources and releases: HelmRepository (source/v1), HelmRelease (helm/v2), and the
Kustomizations (kustomize/v1) that make the `apps` layer wait for `infrastructure`.

The guide's `helm.toolkit.fluxcd.io/v2beta1` is no longer served by Flux 2.x; v2 is the only
version the current CRD defines.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.errors import KsecretsError
from ksecrets.manifests.plan import Manifest, Planned, metadata
from ksecrets.manifests.sops import decryption as sops_decryption
from ksecrets.sealing.sealedsecret import API_VERSION as SEALED_API_VERSION, KIND as SEALED_KIND

SOURCE_API = "source.toolkit.fluxcd.io/v1"
HELM_API = "helm.toolkit.fluxcd.io/v2"
KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"


def helm_repository(name: str, namespace: str, url: str, interval: str = "1h") -> Manifest:
    return {
        "apiVersion": SOURCE_API,
        "kind": "HelmRepository",
        "metadata": metadata(name, namespace),
        "spec": {"interval": interval, "url": url},
    }


def helm_release(
    name: str,
    namespace: str,
    *,
    chart: str,
    version: str,
    repository: str,
    target_namespace: str,
    values: Mapping[str, Any],
    release_name: str | None = None,
    interval: str = "30m",
    timeout: str = "10m",
    depends_on: tuple[str, ...] = (),
) -> Manifest:
    """A HelmRelease pinned to one chart version, installing CRDs on install and upgrade.

    Remediation retries a failed install or upgrade three times, then rolls back: a broken
    controller upgrade must not leave the cluster without secrets.
    """
    spec: dict[str, Any] = {
        "interval": interval,
        "timeout": timeout,
        "releaseName": release_name or name,
        "targetNamespace": target_namespace,
        "chart": {
            "spec": {
                "chart": chart,
                "version": version,
                "sourceRef": {"kind": "HelmRepository", "name": repository, "namespace": namespace},
                "interval": "1h",
            }
        },
        "install": {"crds": "CreateReplace", "createNamespace": False, "remediation": {"retries": 3}},
        "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3, "strategy": "rollback"}},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": d} for d in depends_on]
    spec["values"] = dict(values)
    return {
        "apiVersion": HELM_API,
        "kind": "HelmRelease",
        "metadata": metadata(name, namespace),
        "spec": spec,
    }


# --- health of the apps layer ---------------------------------------------------------------------
#
# Flux evaluates `inProgress`, then `failed`, then `current` (RFC 0009, fluxcd/pkg runtime/cel),
# after its own check that status.observedGeneration, when present, equals metadata.generation.
# Conditions are read with optional field access (`status.?conditions`), so an object whose
# controller has not written conditions yet is in progress rather than an evaluation error.
#
# SealedSecret (sealed-secrets controller 0.36): status.observedGeneration and one condition of
# type Synced, True once the Secret is written, False with the unseal error otherwise.
# VaultStaticSecret / VaultDynamicSecret (VSO 1.x): no status.observedGeneration (VSO writes
# status.lastGeneration), conditions SecretSynced, Healthy and Ready, each carrying the generation
# it was computed for; SecretSynced is False while Vault cannot be read or the Secret not written.
_CONDITIONS = "status.?conditions.orValue([])"


def _condition(ctype: str, status: str, *, generation: bool = False) -> str:
    gen = " && c.?observedGeneration.orValue(-1) == metadata.generation" if generation else ""
    return f"{_CONDITIONS}.exists(c, c.type == '{ctype}' && c.status == '{status}'{gen})"


HEALTH_CHECK_EXPRS: dict[tuple[str, str], dict[str, str]] = {
    ("bitnami.com/v1alpha1", "SealedSecret"): {
        "failed": _condition("Synced", "False"),
        "current": _condition("Synced", "True"),
    },
    **{
        ("secrets.hashicorp.com/v1beta1", kind): {
            "inProgress": f"!{_CONDITIONS}.exists(c, c.type == 'SecretSynced' && "
            "c.?observedGeneration.orValue(-1) == metadata.generation)",
            "failed": _condition("SecretSynced", "False", generation=True),
            "current": _condition("SecretSynced", "True", generation=True),
        }
        for kind in ("VaultStaticSecret", "VaultDynamicSecret")
    },
}


# --- health of the infrastructure layer ----------------------------------------------------------
#
# kstatus holds a PersistentVolumeClaim InProgress until it is Bound. The snapshot volume is used by
# a daily CronJob only, so on a StorageClass that binds WaitForFirstConsumer (the default of most
# managed clusters) it stays Pending until the first snapshot Job runs, up to a day: under
# `wait: true` the infrastructure Kustomization timed out and, through `dependsOn`, no app was ever
# reconciled (found by the real kustomize-controller, tests/e2e/test_flux_vault.py). A claim
# accepted and waiting for its consumer is healthy; a Lost one (its volume gone) is not.
INFRA_HEALTH_CHECK_EXPRS: dict[tuple[str, str], dict[str, str]] = {
    ("v1", "PersistentVolumeClaim"): {
        "failed": "status.?phase.orValue('') == 'Lost'",
        "current": "status.?phase.orValue('') in ['Bound', 'Pending']",
    },
}


def health_check_exprs(
    objects: Iterable[Manifest], table: Mapping[tuple[str, str], dict[str, str]] = HEALTH_CHECK_EXPRS
) -> list[dict[str, str]]:
    """healthCheckExprs for exactly the kinds among `objects` that have one in `table` (in a stable order)."""
    present = {(o["apiVersion"], o["kind"]) for o in objects}
    out = []
    for (api, kind), exprs in table.items():
        if (api, kind) in present:
            out.append({"apiVersion": api, "kind": kind, **exprs})
    return out


# --- the apps layer's own ServiceAccount -------------------------------------------------------------
#
# As in Flux's multi-tenancy example, the apps Kustomization applies as a ServiceAccount of its own
# (spec.serviceAccountName: kustomize-controller impersonates it), which may manage exactly the
# kinds the apps layer holds, in exactly the namespaces it holds them in. Kubernetes refuses to let
# anyone create a Role granting more than they hold (RBAC escalation check), so each namespace's
# applier Role also carries the rules of the Roles the apps layer puts there, and `bind` on exactly
# those Roles: kustomize-controller dry-runs every object of a stage before applying any, so a
# RoleBinding is checked while its Role does not exist yet; without `bind` the API server resolves
# the Role's rules and the dry-run fails "not found" (found by the real kustomize-controller,
# tests/e2e/test_flux_real.py). `bind` on the named Roles lets it pass without granting anything
# the applier does not already hold. Where the layer puts Deployments, the applier may also read
# (get, list, watch; nothing else) ReplicaSets and Pods: with `wait: true` kustomize-controller's
# health check (kstatus) reads a Deployment's ReplicaSets and their Pods as the impersonated
# account, and without them the Deployment stays Unknown and the layer times out (also found by the
# real controller).
#
# Prune runs as that account too, after the infrastructure layer (dependsOn) has applied the new
# Roles. At the handover of `ksecrets migrate --to vault` the apps layer stops holding SealedSecrets,
# so a Role made only from what the layer now holds no longer lets the account delete them: the real
# kustomize-controller failed the apps layer with "delete failed ... sealedsecrets ... is forbidden"
# and kept them (tests/e2e/test_flux_migrate.py). While the phase is `handover`, the applier keeps
# its rights on SealedSecrets in the namespaces of the stack's sealed entries, so Flux can prune
# them; `--finish` drops them once they are gone. The same for a move from sealed-secrets to sops
# (`handover` too; tests/e2e/test_flux_migrate_sops.py). From sops, Flux reads each dropped Secret
# (its `prune: disabled`) with the `get` on the app's Secret the applier holds anyway (the app's
# secret-reader Role it creates: tests/e2e/test_flux_migrate_sops_vault.py).

# A move away from Vault (`vaultMigration: uninstall`, until `--finish`): the apps layer no longer
# holds the operator's VaultConnection and VaultAuths, and the applier keeps its rights on them (and
# on VaultStaticSecrets, which it reads to see their `prune: disabled`), so Flux can prune them while
# the operator, still installed, removes its finalizers (tests/e2e/test_flux_migrate_pairs.py).

APPLIER_COMPONENT = "flux-applier"
APPLY_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
READ_VERBS = ["get", "list", "watch"]
# kind → what kstatus reads to tell that kind's health (its generated resources)
HEALTH_READS: dict[str, list[tuple[str, str]]] = {"Deployment": [("apps", "replicasets"), ("", "pods")]}


def guess_resource(kind: str) -> str:
    """A kind's resource name as apimachinery's UnsafeGuessKindToResource makes it (right for every
    built-in kind the apps layer uses; CRD kinds take `spec.names.plural` from the vendored CRDs)."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


# An object with this annotation is left in place when Flux drops it from a layer
# (kustomize-controller's `kustomize.toolkit.fluxcd.io/prune: disabled`): `migrate --prepare` puts it
# on the objects that own a Secret the next backend takes over (SOPS files, VaultStaticSecrets).
FLUX_PRUNE_DISABLED = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
VSO_GROUP = "secrets.hashicorp.com"  # the Vault Secrets Operator's API group (manifests/vault.py: VSO_API)
VSO_APP_KINDS = ("VaultAuth", "VaultStaticSecret", "VaultDynamicSecret")  # per app, in its namespace
VSO_CONNECTION_KIND = "VaultConnection"  # one per stack, in the operator's namespace


def _operator_objects(cfg: StackConfig) -> list[tuple[str, str]]:
    """(namespace, kind) of every operator object a vault stack's apps layer held."""
    assert cfg.vault is not None
    out = [(cfg.vault.operator.namespace, VSO_CONNECTION_KIND)]
    for ns in sorted({a.namespace for a in cfg.apps if a.vault is not None}):
        out += [(ns, kind) for kind in VSO_APP_KINDS]
    return out


def applier_name(cfg: StackConfig) -> str:
    return f"{cfg.stack}-apps"


def apps_applier(cfg: StackConfig, apps: list[Manifest], plurals: Mapping[tuple[str, str], str]) -> list[Manifest]:
    """The ServiceAccount the apps Kustomization applies as, and per namespace a Role (and its
    RoleBinding) for exactly the kinds the apps layer puts there. `plurals`: (group, kind) →
    resource of the vendored CRDs (`StackFacts.crd_plurals`); other kinds are guessed."""
    name = applier_name(cfg)
    labels = {"app.kubernetes.io/component": APPLIER_COMPONENT}
    by_ns: dict[str, set[tuple[str, str]]] = {}
    escalation: dict[str, list[dict]] = {}
    roles: dict[str, set[str]] = {}
    reads: dict[str, set[tuple[str, str]]] = {}
    for obj in apps:
        api = obj["apiVersion"]
        group = api.split("/")[0] if "/" in api else ""
        ns = obj["metadata"].get("namespace")
        if not ns:
            raise KsecretsError(
                f"{cfg.source}: the apps layer holds the cluster-scoped {obj['kind']} "
                f"{obj['metadata']['name']}; its ServiceAccount would need cluster-wide rights"
            )
        plural = plurals.get((group, obj["kind"])) or guess_resource(obj["kind"])
        by_ns.setdefault(ns, set()).add((group, plural))
        reads.setdefault(ns, set()).update(HEALTH_READS.get(obj["kind"], []))
        if obj["kind"] == "Role":
            escalation.setdefault(ns, []).extend(obj.get("rules") or [])
            roles.setdefault(ns, set()).add(obj["metadata"]["name"])
    if cfg.vault_migration == "handover":
        group, kind = SEALED_API_VERSION.split("/")[0], SEALED_KIND
        for entry in cfg.sealed:
            by_ns.setdefault(entry.namespace, set()).add((group, plurals.get((group, kind)) or guess_resource(kind)))
    if cfg.vault_migration == "uninstall" and cfg.vault is not None:
        for ns, kind in _operator_objects(cfg):
            by_ns.setdefault(ns, set()).add((VSO_GROUP, plurals.get((VSO_GROUP, kind)) or guess_resource(kind)))
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, cfg.flux.namespace, labels=labels)}
    ]
    for ns in sorted(by_ns):
        groups: dict[str, list[str]] = {}
        for group, plural in sorted(by_ns[ns]):
            groups.setdefault(group, []).append(plural)
        rules = [{"apiGroups": [g], "resources": res, "verbs": list(APPLY_VERBS)} for g, res in groups.items()]
        for group, resource in sorted(reads.get(ns, set()) - by_ns[ns]):
            rules.append({"apiGroups": [group], "resources": [resource], "verbs": list(READ_VERBS)})
        for rule in escalation.get(ns, []):
            if rule not in rules:
                rules.append(rule)
        if roles.get(ns):
            rules.append(
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "resourceNames": sorted(roles[ns]),
                    "verbs": ["bind"],
                }
            )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata(f"{name}-applier", ns, labels=labels),
                "rules": rules,
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata(f"{name}-applier", ns, labels=labels),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{name}-applier"},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": cfg.flux.namespace}],
            }
        )
    return out


def applier_planned(cfg: StackConfig, planned: list[Planned], plurals: Mapping[tuple[str, str], str]) -> list[Planned]:
    """The applier's objects, for the infrastructure layer; Flux-only (pulumi up applies as itself)."""
    apps = [p.obj for p in planned if p.layer == "apps" and p.gitops]
    return [Planned(obj, "infrastructure", pulumi=False) for obj in apps_applier(cfg, apps, plurals)]


def layer_kustomizations(
    cfg: StackConfig, apps: Iterable[Manifest] = (), infrastructure: Iterable[Manifest] = ()
) -> list[Manifest]:
    """The two Flux Kustomizations of a stack: apps depends on infrastructure, both wait; apps
    applies as its own ServiceAccount and checks the health of its secrets' custom resources;
    infrastructure counts a claim waiting for its first consumer as healthy."""
    flux = cfg.flux
    apps = list(apps)
    infrastructure = list(infrastructure)

    def one(layer: str, depends: str | None) -> Manifest:
        spec: dict[str, Any] = {
            "interval": flux.interval,
            "retryInterval": "1m",
            "timeout": "10m",
            "path": f"{cfg.flux_path}/{layer}",
            "prune": True,
            "wait": True,
            "sourceRef": {"kind": "GitRepository", "name": flux.source_name},
        }
        if depends:
            spec["dependsOn"] = [{"name": depends}]
        if layer == "apps":
            spec["serviceAccountName"] = applier_name(cfg)
            decrypt = sops_decryption(cfg)
            if decrypt:
                spec["decryption"] = decrypt
        exprs = (
            health_check_exprs(apps)
            if layer == "apps"
            else health_check_exprs(infrastructure, INFRA_HEALTH_CHECK_EXPRS)
        )
        if exprs:
            spec["healthCheckExprs"] = exprs
        return {
            "apiVersion": KUSTOMIZE_API,
            "kind": "Kustomization",
            "metadata": metadata(f"{cfg.stack}-{layer}", flux.namespace),
            "spec": spec,
        }

    infra = f"{cfg.stack}-infrastructure"
    return [one("infrastructure", None), one("apps", infra)]


# --- the cluster's entry point (clusters/<stack>/) ---------------------------------------------------
#
# Flux's multi-cluster layout: `flux bootstrap --path clusters/<cluster>` reconciles that folder (and
# adds its own `flux-system/` there). Each stack is one cluster; its folder holds one Kustomization
# that reconciles the stack's `sync/` (the two layer Kustomizations above), so the entry point
# references `k8s/<stack>/` and duplicates nothing. A cluster added or removed is one folder here
# and one under k8s/.

ENTRY_DIR = "clusters"


def entry_name(cfg: StackConfig) -> str:
    return f"{cfg.stack}-sync"


def cluster_entry(cfg: StackConfig) -> list[Manifest]:
    """What `clusters/<stack>/` holds: the Kustomization of `k8s/<stack>/sync`, waiting for the two
    layer Kustomizations it applies (Ready only when the cluster's secrets are delivered)."""
    flux = cfg.flux
    return [
        {
            "apiVersion": KUSTOMIZE_API,
            "kind": "Kustomization",
            "metadata": metadata(entry_name(cfg), flux.namespace),
            "spec": {
                "interval": flux.interval,
                "retryInterval": "1m",
                "timeout": "15m",
                "path": f"{cfg.flux_path}/sync",
                "prune": True,
                "wait": True,
                "sourceRef": {"kind": "GitRepository", "name": flux.source_name},
            },
        }
    ]

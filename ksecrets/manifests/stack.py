"""Everything one stack deploys, in a stable order: `build_stack(cfg)` is the single source of
truth that both `components/` (pulumi up) and the exporter (k8s/ for Flux) consume."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.manifests import (
    flux,
    keybackup,
    manual,
    monitoring,
    namespaces,
    rbac,
    rotation,
    sealed_secrets,
    snapshots,
    sops,
    vault,
    workloads,
)
from ksecrets.manifests.facts import StackFacts
from ksecrets.manifests.plan import Planned


@dataclasses.dataclass(frozen=True)
class Concern:
    """One concern of a stack: the group its planned objects carry, and under `pulumi up` the
    component that registers them (`component`: its Pulumi type, part of every child's URN, so
    never renamed; None: objects only Flux applies)."""

    group: str
    role: str
    component: str | None
    about: str


# The one list of concerns. Order matters under `pulumi up`: a concern's objects may only depend
# on concerns above it.
CONCERNS: tuple[Concern, ...] = (
    Concern(
        "flux-sync",
        "flux-sync",
        "k8s-secrets:flux:Sync",
        "the stack's two Flux Kustomizations (k8s/<stack>/sync/): Pulumi's under delivery: flux only",
    ),
    Concern("namespaces", "namespaces", "k8s-secrets:namespaces:Namespaces", "Namespaces (Pod Security restricted)"),
    Concern(
        "sealed-secrets-controller",
        "sealed-secrets",
        "k8s-secrets:sealed-secrets:Controller",
        "the Bitnami controller in kube-system via Flux (HelmRepository + HelmRelease)",
    ),
    Concern("vault", "vault", "k8s-secrets:vault:Platform", "Vault (HA raft) and the Vault Secrets Operator via Flux"),
    Concern("access", "access", "k8s-secrets:rbac:AppAccess", "per app: ServiceAccount, Role on its own Secrets"),
    Concern("sealed-secrets", "sealed", "k8s-secrets:sealed-secrets:SealedSecrets", "one SealedSecret per entry"),
    Concern("vault-secrets", "vault-secrets", "k8s-secrets:vault:Secrets", "the operator's VaultAuth/…Secret objects"),
    Concern("sops-secrets", "sops", None, "the committed SOPS-encrypted Secrets (Flux decrypts them; Flux only)"),
    Concern("manual-secrets", "manual", "k8s-secrets:manual:Secrets", "Secrets from Pulumi config (pulumi up only)"),
    Concern("workloads", "workloads", "k8s-secrets:workloads:Workloads", "the Deployments that read the Secrets"),
    Concern("rotation", "rotation", "k8s-secrets:rotation:Rotation", "rotation CronJobs and their accounts"),
    Concern(
        "disaster-recovery",
        "disaster-recovery",
        "k8s-secrets:disaster-recovery:DisasterRecovery",
        "Vault raft snapshots and the sealing-key backup CronJobs",
    ),
    Concern("monitoring", "monitoring", "k8s-secrets:monitoring:Monitoring", "the PrometheusRule"),
    Concern("flux-applier", "flux-applier", None, "the account the apps Kustomization applies as (Flux only)"),
)
_GROUPS = frozenset(c.group for c in CONCERNS)


def build_stack(
    cfg: StackConfig, manual_values: Mapping[str, Mapping[str, Any]] | None = None, *, facts: StackFacts
) -> list[Planned]:
    """All objects of one stack. `manual_values` (secretName → key → value) only under pulumi up;
    `facts`: what files say (`ksecrets.usecases.stack_facts.read_facts`, or `plan_stack` for both)."""
    planned: list[Planned] = []

    def add(group: str, items: Iterable[Planned]) -> None:
        if group not in _GROUPS:
            raise ValueError(f"concern {group!r} is not in CONCERNS")
        planned.extend(dataclasses.replace(p, group=group) for p in items)

    add("namespaces", namespaces.namespaces(cfg))
    # The sealed-secrets controller runs in every stack: it is how a stack migrates from
    # sealed-secrets to Vault without a window where existing SealedSecrets stop unsealing.
    add("sealed-secrets-controller", sealed_secrets.controller(cfg))
    if cfg.installs_vault:
        # A vault stack, or phase `install` of a move to Vault (the SealedSecrets stay the source).
        add("vault", vault.infrastructure(cfg))
    add("access", rbac.app_rbac(cfg))
    if cfg.spec.seals:
        add("sealed-secrets", sealed_secrets.sealed_secrets(cfg))
    elif cfg.spec.vault:
        add("vault-secrets", vault.app_objects(cfg))
    add("sops-secrets", sops.sops_secrets(cfg, facts))
    add("manual-secrets", manual.manual_secrets(cfg, manual_values))
    add("workloads", workloads.deployments(cfg))
    add("rotation", rotation.cronjobs(cfg))
    add("disaster-recovery", snapshots.objects(cfg))
    add("disaster-recovery", keybackup.objects(cfg, facts))
    add("monitoring", monitoring.rules(cfg, facts))
    # Flux only: the ServiceAccount the apps Kustomization applies as, and its RBAC.
    add("flux-applier", flux.applier_planned(cfg, planned, facts.crd_plurals))
    _check_unique(planned)
    return planned


FLUX_SYNC = "flux-sync"


def pulumi_delivered(cfg: StackConfig, planned: list[Planned]) -> list[Planned]:
    """What `pulumi up` registers of a stack: always a subset of what the builders make.

    - `delivery: pulumi`: every planned object Pulumi may apply (`Planned.pulumi`; not the apps
      layer's applier account, which is Flux's only).
    - `delivery: flux`: the two Kustomizations of `sync/` exactly as exported
      (`flux.layer_kustomizations`, the same call as `ksecrets export`), and the objects that are
      never exported (`gitops=False`: the manual backend's Secrets from Pulumi config). Flux applies
      everything else from `k8s/<stack>/infrastructure` and `apps`. The never-exported objects
      `need` the infrastructure Kustomization, which creates their namespaces.
    """
    if cfg.delivery == "pulumi":
        return [p for p in planned if p.pulumi]
    exported = [p for p in planned if p.gitops]
    layers = {layer: [p.obj for p in exported if p.layer == layer] for layer in ("infrastructure", "apps")}
    sync = [
        Planned(obj, "infrastructure", group=FLUX_SYNC)
        for obj in flux.layer_kustomizations(cfg, layers["apps"], layers["infrastructure"])
    ]
    infra = sync[0].id
    kept = [dataclasses.replace(p, needs=(*p.needs, infra)) for p in planned if not p.gitops and p.pulumi]
    return sync + kept


def _check_unique(planned: list[Planned]) -> None:
    seen: set[str] = set()
    for p in planned:
        if p.id in seen:
            from ksecrets.errors import KsecretsError

            raise KsecretsError(f"two objects would be {p.id}; rename one in the stack config")
        seen.add(p.id)

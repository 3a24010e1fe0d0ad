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
    vault,
    workloads,
)
from ksecrets.manifests.facts import StackFacts
from ksecrets.manifests.plan import Planned


def build_stack(
    cfg: StackConfig, manual_values: Mapping[str, Mapping[str, Any]] | None = None, *, facts: StackFacts
) -> list[Planned]:
    """All objects of one stack. `manual_values` (secretName → key → value) only under pulumi up;
    `facts`: what files say (`ksecrets.usecases.stack_facts.read_facts`, or `plan_stack` for both)."""
    planned: list[Planned] = []

    def add(group: str, items: Iterable[Planned]) -> None:
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


def _check_unique(planned: list[Planned]) -> None:
    seen: set[str] = set()
    for p in planned:
        if p.id in seen:
            from ksecrets.errors import KsecretsError

            raise KsecretsError(f"two objects would be {p.id}; rename one in the stack config")
        seen.add(p.id)

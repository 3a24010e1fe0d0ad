"""One environment: every concern of a stack as its own component, in dependency order.

`Platform` builds the stack with `ksecrets.usecases.stack_facts.plan_stack` (the same call the exporter
makes) and hands each group of objects to the component for that concern.
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi

from components.disaster_recovery import DisasterRecovery
from components.kube import ObjectGroup, Registry
from components.manual import ManualSecrets
from components.monitoring import Monitoring
from components.namespaces import Namespaces
from components.rbac import AppAccess
from components.rotation import Rotation
from components.sealed_secrets import SealedSecrets, SealedSecretsController
from components.vault import VaultPlatform, VaultSecrets
from components.vault_config import VaultBootstrap
from components.workloads import Workloads
from ksecrets.config.model import StackConfig
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.manifests.vault import vault_release_id
from ksecrets.manifests.plan import Planned

# Group (set by build_stack) → (component class, child role). Order matters: a group may only
# depend on groups above it.
GROUPS: tuple[tuple[str, type[ObjectGroup], str], ...] = (
    ("namespaces", Namespaces, "namespaces"),
    ("sealed-secrets-controller", SealedSecretsController, "sealed-secrets"),
    ("vault", VaultPlatform, "vault"),
    ("access", AppAccess, "access"),
    ("sealed-secrets", SealedSecrets, "sealed"),
    ("vault-secrets", VaultSecrets, "vault-secrets"),
    ("manual-secrets", ManualSecrets, "manual"),
    ("workloads", Workloads, "workloads"),
    ("rotation", Rotation, "rotation"),
    ("disaster-recovery", DisasterRecovery, "disaster-recovery"),
    ("monitoring", Monitoring, "monitoring"),
)


def _home(p: Planned) -> str:
    """The component a planned object is registered under. Every Namespace has one home, the
    `namespaces` component, whichever concern asks for it (listed, an app's, Vault's): its URN
    then never changes when it moves between concerns, so `pulumi up` never plans a
    create-then-delete of a live namespace (with Vault's volumes in it)."""
    if p.obj["kind"] == "Namespace" and p.obj["apiVersion"] == "v1":
        return "namespaces"
    return p.group


class Platform(pulumi.ComponentResource):
    """All of one stack's Kubernetes objects, grouped by concern."""

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        *,
        manual_values: Mapping[str, Mapping[str, Any]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-secrets:platform:Platform", name, None, opts)
        # Objects only Flux needs (the apps layer's applier ServiceAccount) are not registered.
        self.planned: list[Planned] = [p for p in plan_stack(cfg, manual_values) if p.pulumi]
        self.registry = Registry()
        self.groups: dict[str, ObjectGroup] = {}
        known = {g for g, _, _ in GROUPS}
        unknown = {p.group for p in self.planned} - known
        if unknown:
            raise ValueError(f"no component for groups {sorted(unknown)}; add them to GROUPS")
        for group, cls, role in GROUPS:
            members = [p for p in self.planned if _home(p) == group]
            if members:
                self.groups[group] = cls(f"{name}-{role}", members, self.registry, pulumi.ResourceOptions(parent=self))
        self.vault_config: VaultBootstrap | None = None
        if cfg.spec.vault and cfg.vault is not None and cfg.vault.configure:
            # Vault itself, configured once its release is Ready (same code as the CLI).
            release = self.registry.by_id[vault_release_id(cfg)]
            self.vault_config = VaultBootstrap(
                f"{name}-vault-config", cfg, opts=pulumi.ResourceOptions(parent=self, depends_on=[release])
            )
        self.backend = cfg.backend
        self.object_count = len(self.planned)
        self.register_outputs({"backend": cfg.backend, "objects": len(self.planned)})

"""One environment: every concern of a stack (`ksecrets.manifests.stack.CONCERNS`, the one list)
as its own component, in dependency order.

`Platform` registers the stack planned by `ksecrets.usecases.stack_facts.plan_stack` (the same call the
exporter makes; `__main__.py` plans once, checks that plan and passes it here) and hands each group
of objects to the component for that concern.
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi

from components.kube import ObjectGroup, Registry
from components.vault_config import VaultBootstrap
from ksecrets.config.model import StackConfig
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.manifests.vault import vault_release_id
from ksecrets.manifests.plan import Planned
from ksecrets.manifests.stack import CONCERNS, pulumi_delivered


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
        planned: list[Planned] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-secrets:platform:Platform", name, None, opts)
        if planned is None:  # tests build a Platform from a config alone
            planned = plan_stack(cfg, manual_values)
        elif manual_values is not None:
            raise ValueError("pass manual_values to plan_stack, not beside a plan")
        # What Pulumi registers of the plan (`delivery`): under `pulumi` every object but those
        # only Flux needs (the apps layer's applier account); under `flux` the sync/ Kustomizations
        # and the never-exported manual Secrets, and Flux applies the rest from Git.
        self.planned: list[Planned] = pulumi_delivered(cfg, planned)
        self.registry = Registry()
        self.registry.awaited = {n for p in self.planned for n in p.needs}
        self.groups: dict[str, ObjectGroup] = {}
        registered = {c.group for c in CONCERNS if c.component}
        unregistered = {p.group for p in self.planned} - registered
        if unregistered:
            raise ValueError(f"concerns {sorted(unregistered)} have Pulumi objects but no component in CONCERNS")
        for concern in CONCERNS:
            members = [p for p in self.planned if _home(p) == concern.group]
            if members and concern.component:
                self.groups[concern.group] = ObjectGroup(
                    concern.component,
                    f"{name}-{concern.role}",
                    members,
                    self.registry,
                    pulumi.ResourceOptions(parent=self),
                )
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

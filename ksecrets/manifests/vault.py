"""Vault in HA and the Vault Secrets Operator (placeholder until the Vault backend lands)."""

from __future__ import annotations

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Planned


def infrastructure(cfg: StackConfig) -> list[Planned]:
    return []


def app_objects(cfg: StackConfig) -> list[Planned]:
    return []

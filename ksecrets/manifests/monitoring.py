"""PrometheusRules (placeholder until monitoring lands)."""

from __future__ import annotations

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Planned


def rules(cfg: StackConfig) -> list[Planned]:
    return []

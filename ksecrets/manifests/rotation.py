"""Rotation CronJobs (placeholder until rotation lands)."""

from __future__ import annotations

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Planned


def cronjobs(cfg: StackConfig) -> list[Planned]:
    return []

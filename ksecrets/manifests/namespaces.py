"""Namespaces of a stack: the listed ones plus every app's, never a system, shared or external
one (`StackConfig.all_namespaces`; the loader refuses system and shared ones)."""

from __future__ import annotations

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Planned, metadata


def namespaces(cfg: StackConfig) -> list[Planned]:
    out = []
    for name in cfg.all_namespaces():
        # Pod Security Admission: the apps we emit run restricted; say so, so a privileged pod
        # slipped into one of these namespaces is refused by the API server.
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        out.append(
            Planned(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(name, labels=labels)}, "infrastructure"
            )
        )
    return out

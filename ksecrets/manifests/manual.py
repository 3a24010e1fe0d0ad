"""The manual backend: plain Secrets that only `pulumi up` applies, from Pulumi config secrets.

They are planned with `gitops=False`: the exporter never writes them, and it refuses any
Secret with data that reaches it anyway.
"""

from __future__ import annotations

from typing import Any, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata


def manual_secret(name: str, namespace: str, values: Mapping[str, Any]) -> Manifest:
    """`values` are plain strings in tests and Pulumi secret Outputs under `pulumi up`."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace),
        "type": "Opaque",
        "stringData": {k: values[k] for k in sorted(values)},
    }


def manual_secrets(cfg: StackConfig, values: Mapping[str, Mapping[str, Any]] | None) -> list[Planned]:
    """One Secret per app whose secretName has manual values. Without `values` (export), the
    Secrets are planned with placeholder-free empty stringData and gitops=False."""
    if not cfg.spec.pulumi_values:
        return []
    known = dict(cfg.manual_keys)
    out = []
    for app in cfg.apps:
        keys = known.get(app.secret_name)
        if keys is None:
            continue
        secret_values = (values or {}).get(app.secret_name, {})
        out.append(
            Planned(
                manual_secret(app.secret_name, app.namespace, {k: secret_values.get(k, "") for k in keys}),
                "apps",
                gitops=False,
            )
        )
    return out

"""The manual backend: plain Secrets that only `pulumi up` applies, from Pulumi config secrets.

They are planned with `gitops=False`: the exporter never writes them, and it refuses any
Secret with data that reaches it anyway.

Phase `release` (`ksecrets migrate --prepare` on a manual stack): the next backend takes the
Secrets over in place. Each is planned with `retain` (Pulumi's `retainOnDelete`: when the switch
drops it from the program, `pulumi up` forgets it instead of deleting it) and the sealed-secrets
controller's `managed` annotation (a SealedSecret then takes over the existing Secret, its
ownerReference added). The phase does not say which backend comes next, and the other two need
nothing on the Secret: kustomize-controller applies a SOPS Secret with server-side apply and force
(it takes the fields over), and the Vault Secrets Operator writes over it in the `handover` phase
the switch to vault sets (`destination.overwrite`); the annotation is inert to both.
"""

from __future__ import annotations

from typing import Any, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.manifests.plan import Manifest, Planned, metadata
from ksecrets.manifests.sealed_secrets import MANAGED_ANNOTATION


def manual_secret(name: str, namespace: str, values: Mapping[str, Any], *, release: bool = False) -> Manifest:
    """`values` are plain strings in tests and Pulumi secret Outputs under `pulumi up`; `release`:
    the sealed-secrets controller may take it over (its `managed` annotation)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace, annotations=dict(MANAGED_ANNOTATION) if release else None),
        "type": "Opaque",
        "stringData": {k: values[k] for k in sorted(values)},
    }


def manual_secrets(cfg: StackConfig, values: Mapping[str, Mapping[str, Any]] | None) -> list[Planned]:
    """One Secret per app whose secretName has manual values. Without `values` (export), the
    Secrets are planned with placeholder-free empty stringData and gitops=False."""
    if not cfg.spec.pulumi_values:
        return []
    known = dict(cfg.manual_keys)
    release = cfg.vault_migration == "release"
    out = []
    for app in cfg.apps:
        keys = known.get(app.secret_name)
        if keys is None:
            continue
        secret_values = (values or {}).get(app.secret_name, {})
        out.append(
            Planned(
                manual_secret(
                    app.secret_name, app.namespace, {k: secret_values.get(k, "") for k in keys}, release=release
                ),
                "apps",
                gitops=False,
                retain=release,
            )
        )
    return out

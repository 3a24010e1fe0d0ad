"""What a builder returns: a manifest plus the facts the two back ends need to place it.

`obj` is the plain Kubernetes object (the single source of truth). The rest is routing:
- `layer`: which Flux layer exports it (`infrastructure` before `apps`, so CRDs come first);
- `needs`: ids of HelmReleases that install the CRD this object's kind comes from, so that
  `pulumi up` waits for them and Flux puts the object in a later layer;
- `gitops`: False for objects that only `pulumi up` may apply (manual-backend Secrets);
- `pulumi`: False for objects only Flux needs (the apps layer's ServiceAccount and its RBAC);
- `raw`: bytes the exporter writes as they are instead of dumping `obj` (a SOPS-encrypted Secret,
  whose MAC binds its values; `obj` is then what was read from it, for the checks);
- `group`: the concern it belongs to; `components/` registers each group under one
  ComponentResource (`build_stack` sets it per builder);
- `retain`: when `pulumi up` stops declaring it, Pulumi drops it from its state and leaves it in
  the cluster (the `retainOnDelete` resource option `components/` sets; recorded in the state by
  the `pulumi up` that registered it so): a manual Secret in phase `release`, which the next
  backend takes over in place (`ksecrets migrate --prepare`, manifests/manual.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Manifest = dict[str, Any]
Layer = Literal["infrastructure", "apps"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "k8s-secrets"}
# What the objects another program writes for us carry: the Vault Secrets Operator sets managed-by
# on its Secrets to its own value (its ownership check reads it), so ours would be overwritten.
PART_OF = {"app.kubernetes.io/part-of": "k8s-secrets"}


@dataclass(frozen=True)
class Planned:
    obj: Manifest
    layer: Layer
    needs: tuple[str, ...] = ()
    gitops: bool = True
    group: str = ""
    pulumi: bool = True
    raw: bytes | None = field(default=None, repr=False)
    retain: bool = False

    @property
    def id(self) -> str:
        return object_id(self.obj)


def object_id(obj: Manifest) -> str:
    """`<apiVersion>/<kind>/<namespace>/<name>`: unique within a stack."""
    meta = obj.get("metadata", {})
    return f"{obj['apiVersion']}/{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def metadata(
    name: str,
    namespace: str | None = None,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """metadata in the usual key order; every object carries the managed-by label."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**MANAGED_BY, **(labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta

"""Backend sops: the stack's committed SOPS-encrypted Secrets (read by the caller into
`StackFacts.sops_secrets`), planned for the apps layer as they are. Flux only: kustomize-controller
decrypts them (the apps Kustomization's `decryption`); `pulumi up` cannot, so it skips them, as it
skips the Flux applier's objects."""

from __future__ import annotations

from ksecrets.config.model import StackConfig
from ksecrets.manifests.facts import StackFacts
from ksecrets.manifests.plan import Planned


def sops_secrets(cfg: StackConfig, facts: StackFacts) -> list[Planned]:
    if not cfg.spec.sops_files:
        return []
    return [Planned(dict(f.obj), "apps", pulumi=False, raw=f.raw) for f in facts.sops_secrets]


def decryption(cfg: StackConfig) -> dict[str, object] | None:
    """The apps Kustomization's `decryption` for a sops stack (None for the others)."""
    if not cfg.spec.sops_files:
        return None
    return {"provider": "sops", "secretRef": {"name": cfg.sops.key_secret}}

"""What the builders need to know beyond the stack config, read from files by the caller
(`ksecrets.usecases.stack_facts.read_facts`) and passed in, so `ksecrets.manifests` stays pure:
no file is read here (tests/test_layering.py)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class CertificateFacts:
    """The committed sealing certificate, for its expiry alerts."""

    path: str  # as the stack file names it (`sealedSecrets.certificate`)
    not_after: _dt.datetime
    fingerprint: str


@dataclass(frozen=True)
class SopsSecretFacts:
    """One committed SOPS-encrypted Secret of a sops stack (`secrets/<stack>/<name>.sops.yaml`):
    `raw` its bytes, exported as they are; `obj` the manifest read from it without the `sops`
    metadata (values still ciphertext), for the checks and the Flux applier's Role."""

    path: str  # relative to the repository root
    obj: Mapping[str, Any]
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class StackFacts:
    # None: no certificate to watch (none configured, nothing sealed yet, or monitoring off).
    certificate: CertificateFacts | None = None
    # The offline public key's PEM (`sealedSecrets.keyBackup.publicKey`), when key backup is on.
    key_backup_public_key: str | None = None
    # (API group, kind) → resource plural, from the vendored CRDs (`ksecrets/schemas/crds`).
    crd_plurals: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # Backend sops: the stack's committed SOPS Secrets, sorted by file name.
    sops_secrets: tuple[SopsSecretFacts, ...] = ()

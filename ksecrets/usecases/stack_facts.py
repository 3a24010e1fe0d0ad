"""The facts the pure builders need from files, read once per stack: the sealing certificate's
expiry (for its alerts), the key-backup public key (for its ConfigMap) and the vendored CRDs'
plurals (for the Flux applier's Role). Errors name the stack file and key, as before.

`plan_stack(cfg)` is `build_stack` with these facts: what `ksecrets export`, `pulumi up` and the
checks use.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.errors import ConfigError, KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.manifests import build_stack, keybackup
from ksecrets.manifests.facts import CertificateFacts, StackFacts
from ksecrets.manifests.plan import Planned

CRD_DIR = Path(__file__).resolve().parents[1] / "schemas" / "crds"


def read_facts(cfg: StackConfig) -> StackFacts:
    # In the order the builders used to read them: the key-backup ConfigMap before the alerts, and
    # the certificate only when the PrometheusRule (its expiry alerts) is built.
    cert = certificate(cfg) if cfg.monitoring.operator_objects else None
    return StackFacts(key_backup_public_key=key_backup_public_key(cfg), certificate=cert, crd_plurals=crd_plurals())


def plan_stack(cfg: StackConfig, manual_values: Mapping[str, Mapping[str, Any]] | None = None) -> list[Planned]:
    return build_stack(cfg, manual_values, facts=read_facts(cfg))


def certificate(cfg: StackConfig) -> CertificateFacts | None:
    """The committed sealing certificate's expiry and fingerprint (None before anything is sealed)."""
    path = cfg.sealed_secrets.certificate
    if not path:
        return None
    full = Path(cfg.root) / path
    if not full.is_file():
        if cfg.sealed:
            raise KsecretsError(
                f"{cfg.source}: sealedSecrets.certificate: {path}: certificate file not found "
                "(values are sealed with it, and its expiry alert needs its NotAfter)"
            )
        # Nothing sealed yet (before `ksecrets keygen`): no certificate, no expiry to watch.
        return None
    from ksecrets.sealing.certs import load_certificate

    cert = load_certificate(full, source=path, allow_expired=True, regular=True)
    return CertificateFacts(path=path, not_after=cert.not_after, fingerprint=cert.fingerprint)


def key_backup_public_key(cfg: StackConfig) -> str | None:
    """The offline public key's PEM text, checked to be an RSA public key."""
    if not keybackup.enabled(cfg):
        return None
    from ksecrets.sealing.keybackup import load_public_key

    kb = cfg.sealed_secrets.key_backup
    assert kb is not None
    path = Path(cfg.root) / kb.public_key
    try:
        data = read_bytes(path, "public key file", source=kb.public_key, regular=True)
        load_public_key(data, kb.public_key)
    except Exception as exc:  # noqa: BLE001 - one config error naming the key
        raise ConfigError(cfg.source, "sealedSecrets.keyBackup.publicKey", str(exc).split(": ", 1)[-1]) from None
    return data.decode("ascii")


@functools.lru_cache(maxsize=1)
def crd_plurals() -> Mapping[tuple[str, str], str]:
    """(group, kind) → `spec.names.plural` of every vendored CRD (package data, read once)."""
    from ksecrets import yamlio

    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yamlio.load(path.read_text(encoding="utf-8"), path.name)
        out[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd["spec"]["names"]["plural"]
    return out

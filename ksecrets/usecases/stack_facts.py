"""The facts the pure builders need from files, read once per stack: the sealing certificate's
expiry (for its alerts), the key-backup public key (for its ConfigMap) and the vendored CRDs'
plurals (for the Flux applier's Role). Errors name the stack file and key, as before.

`plan_stack(cfg)` is `build_stack` with these facts: what `ksecrets export`, `pulumi up` and the
checks use.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

from ksecrets.config.model import StackConfig
from ksecrets.errors import ConfigError, KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.manifests import build_stack, keybackup
from ksecrets.manifests.facts import CertificateFacts, SopsSecretFacts, StackFacts
from ksecrets.manifests.plan import Planned

CRD_DIR = Path(__file__).resolve().parents[1] / "schemas" / "crds"


def read_facts(cfg: StackConfig) -> StackFacts:
    # In the order the builders used to read them: the key-backup ConfigMap before the alerts, and
    # the certificate only when the PrometheusRule (its expiry alerts) is built.
    cert = certificate(cfg) if cfg.monitoring.operator_objects else None
    return StackFacts(
        key_backup_public_key=key_backup_public_key(cfg),
        certificate=cert,
        crd_plurals=crd_plurals(),
        sops_secrets=sops_secrets(cfg),
    )


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

    cert = load_certificate(full, source=path, allow_expired=True, regular=True, allow_not_yet_valid=True)
    return CertificateFacts(path=path, not_after=cert.not_after, fingerprint=cert.fingerprint)


def check_sealed_for_certificate(cfg: StackConfig) -> None:
    """Every value of an entry sealed for the committed certificate holds an RSA block of that
    certificate's size (`crypto.sealed_value_problem`; the model already refused anything that
    is no sealed value at all). The error names the file the entry is in (the stack file or its
    included `sealed` file, with the line), the key path, never the value."""
    path = cfg.sealed_secrets.certificate
    if not cfg.sealed or not path or not (Path(cfg.root) / path).is_file():
        return
    from ksecrets.sealing import crypto
    from ksecrets.sealing.certs import load_certificate

    cert = load_certificate(Path(cfg.root) / path, source=path, allow_expired=True, allow_not_yet_valid=True)
    for i, entry in enumerate(cfg.sealed):
        if entry.certificate_fingerprint != cert.fingerprint:
            continue  # sealed for an earlier certificate: `ksecrets verify` reports it as stale
        for key, value in entry.encrypted_data:
            problem = crypto.sealed_value_problem(value, cert.key_bytes)
            if problem:
                raise ConfigError(
                    _sealed_location(cfg, f"[{i}].encryptedData.{key}"), f"sealed[{i}].encryptedData.{key}", problem
                )


def _sealed_location(cfg: StackConfig, path: str) -> str:
    """Where `sealed<path>` is written: the stack file, or its included file and the line."""
    from ksecrets.config import includes
    from ksecrets.config.load import raw_from_stack_file

    try:
        ref = raw_from_stack_file(Path(cfg.root) / cfg.source).get("sealed")
    except KsecretsError:
        return cfg.source
    if not isinstance(ref, str) or not includes.is_reference("sealed", ref):
        return cfg.source
    shown = os.path.normpath(ref)
    try:
        target = includes.target(ref, key="sealed", source=cfg.source, root=cfg.root)
        line = includes.line_of(target.read_text(encoding="utf-8"), path)
    except (KsecretsError, OSError, UnicodeDecodeError):
        return shown
    return f"{shown}: line {line}" if line else shown


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


def sops_secrets(cfg: StackConfig) -> tuple[SopsSecretFacts, ...]:
    """A sops stack's committed Secrets (`secrets/<stack>/*.sops.yaml`), each checked to be an
    encrypted Secret of that name: SOPS metadata with a MAC, every `data`/`stringData` value
    ciphertext (a file with a value in clear is refused, naming the file and key, never the
    value), in a namespace of the stack. Nothing is decrypted: no key is needed to export."""
    if not cfg.spec.sops_files:
        return ()
    from ksecrets.backends.sops import FILE_SUFFIX, secret_file
    from ksecrets.sealing import sops
    from ksecrets.sopsrules import is_ciphertext

    folder = Path(cfg.root) / Path(secret_file(cfg.stack, "x")).parent
    if not folder.is_dir():
        return ()
    out = []
    for path in sorted(folder.iterdir()):
        if not path.name.endswith(FILE_SUFFIX):
            continue
        rel = secret_file(cfg.stack, path.name[: -len(FILE_SUFFIX)])
        raw = read_bytes(path, "SOPS file", source=rel, regular=True)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KsecretsError(f"{rel}: not UTF-8") from None
        doc = sops.parse(text, rel)  # refuses a file without `sops` metadata and its MAC
        obj = doc.tree
        meta: dict = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
        name = path.name[: -len(FILE_SUFFIX)]
        if obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret":
            raise KsecretsError(f"{rel}: not a v1 Secret")
        if meta.get("name") != name:
            raise KsecretsError(f"{rel}: metadata.name must be {name} (the file's name)")
        if meta.get("namespace") not in cfg.all_namespaces():
            raise KsecretsError(f"{rel}: metadata.namespace: not a namespace of stack {cfg.stack}")
        for field in ("data", "stringData"):
            values = obj.get(field) or {}
            if not isinstance(values, dict):
                raise KsecretsError(f"{rel}: {field}: not a mapping")
            for key, value in values.items():
                if value != "" and not is_ciphertext(value):  # sops leaves an empty value as it is
                    raise KsecretsError(f"{rel}: {field}.{key}: the value is not SOPS-encrypted; refused")
        out.append(SopsSecretFacts(path=rel, obj=obj, raw=raw))
    return tuple(out)

"""`ksecrets keygen`'s workflow: a controller-compatible sealing key pair for a stack, the private key
only in an encrypted backup, the public certificate at the stack's certificate path.

`cli/keygen_cmd.py` (one stack, on request the key Secret on stdout) and `usecases/init.py` (every
sealed-secrets stack `ksecrets init` writes) call it. The backup is written first: a certificate
never exists without its key being safe somewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksecrets.errors import KsecretsError

DEFAULT_CONTROLLER_NAMESPACE = "kube-system"  # the key Secret's namespace when the stack names none


@dataclass(frozen=True)
class Keygen:
    certificate: str  # relative to the root
    fingerprint: str
    expires: str  # YYYY-MM-DD
    backup: Path
    manifest: dict[str, Any]  # the kubernetes.io/tls key Secret (plaintext private key: print, never write)
    backup_inside_root: bool


def check_targets(root: Path, certificate: str, backup: Path, *, force: bool = False) -> None:
    """What `generate` refuses, checked before anything is written (a caller with several stacks
    checks them all first)."""
    if (root / certificate).exists() and not force:
        raise KsecretsError(
            f"{certificate}: already exists; pass --force to replace it (then `ksecrets reseal` the stack)"
        )
    if backup.exists():
        raise KsecretsError(f"{backup}: already exists; choose another file (a backup is never overwritten)")


def generate(
    root: Path,
    certificate: str,
    backup: Path,
    passphrase: str,
    *,
    namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
    force: bool = False,
) -> Keygen:
    """Make the key pair; write the encrypted backup (mode 0600), then the certificate."""
    from ksecrets.fileio import atomic_write_bytes
    from ksecrets.sealing.backup import backup_plaintext, log2_n_from_env, write_backup
    from ksecrets.sealing.certs import public_key_fingerprint
    from ksecrets.sealing.keys import cert_pem, generate_key_and_cert, tls_secret_manifest

    check_targets(root, certificate, backup, force=force)
    key, cert = generate_key_and_cert()
    manifest = tls_secret_manifest(key, cert, namespace=namespace)
    write_backup(backup, backup_plaintext(manifest, str(backup)), passphrase, log2_n=log2_n_from_env())
    cert_path = root / certificate
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cert_path, cert_pem(cert), 0o644)
    try:
        inside = os.path.commonpath([backup.resolve(), root.resolve()]) == str(root.resolve())
    except ValueError:
        inside = False
    return Keygen(
        certificate,
        public_key_fingerprint(key.public_key()),
        f"{cert.not_valid_after_utc:%Y-%m-%d}",
        backup,
        manifest,
        inside,
    )

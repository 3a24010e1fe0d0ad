"""Encrypted backups of the controller's sealing keys (the guide's "back up the key" step), and of
a sops stack's age key Secret (`ksecrets keygen` of a sops stack): the same file, the same restore.

File format (ASCII armour, so it survives copy and paste):

    -----BEGIN KSECRETS SEALING KEY BACKUP-----
    base64( header || AES-256-GCM(key, nonce, plaintext, aad=header) )
    -----END KSECRETS SEALING KEY BACKUP-----

    header = b"KSBK" || version(1)=1 || log2(N)(1) || r(1) || p(1) || salt(16) || nonce(12)
    key    = scrypt(passphrase, salt, N, r, p, 32)

The plaintext is a JSON `v1 List` of the key Secrets (name, namespace, labels, type, data). The
header is authenticated, so tampering with the parameters fails like a wrong passphrase. Files
are written atomically with mode 0600; nothing plaintext touches the disk.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
from pathlib import Path
from typing import Any, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_bytes
from ksecrets.sealing import sops
from ksecrets.sealing.keys import KEY_LABEL, keys_from_secrets, secrets_from_document

ENV_VAR = "KSECRETS_BACKUP_PASSPHRASE"
MIN_PASSPHRASE = 12
MAGIC = b"KSBK"
VERSION = 1
DEFAULT_LOG2_N = 17  # 128 MiB, about 0.4 s here
MAX_LOG2_N = 20  # with r = 8: 1 GiB, the most a backup may ask for
MAX_SCRYPT_MEMORY = 128 * 8 * (1 << MAX_LOG2_N)
MAX_SCRYPT_P = 4
_BEGIN = "-----BEGIN KSECRETS SEALING KEY BACKUP-----"
_END = "-----END KSECRETS SEALING KEY BACKUP-----"
_HEADER_LEN = 4 + 4 + 16 + 12


def _kdf(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase.encode("utf-8"))


def encrypt_backup(plaintext: bytes, passphrase: str, *, log2_n: int = DEFAULT_LOG2_N, r: int = 8, p: int = 1) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    header = MAGIC + bytes([VERSION, log2_n, r, p]) + salt + nonce
    blob = header + AESGCM(_kdf(passphrase, salt, log2_n, r, p)).encrypt(nonce, plaintext, header)
    b64 = base64.b64encode(blob).decode("ascii")
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"{_BEGIN}\n{body}\n{_END}\n".encode("ascii")


def decrypt_backup(data: bytes, passphrase: str, source: str) -> bytes:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KsecretsError(f"{source}: not a ksecrets key backup") from None
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        raise KsecretsError(f"{source}: not a ksecrets key backup (no BEGIN/END lines)")
    try:
        blob = base64.b64decode("".join(text[start + len(_BEGIN) : end].split()), validate=True)
    except binascii.Error:
        raise KsecretsError(f"{source}: damaged backup (invalid base64)") from None
    if len(blob) < _HEADER_LEN + 16 or blob[:4] != MAGIC:
        raise KsecretsError(f"{source}: damaged or truncated backup")
    if blob[4] != VERSION:
        raise KsecretsError(f"{source}: backup format version {blob[4]} is not supported")
    log2_n, r, p = blob[5], blob[6], blob[7]
    if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KsecretsError(f"{source}: damaged backup (implausible scrypt parameters)")
    # The header is authenticated only by the key scrypt derives, so bound its cost first: a forged
    # header must not make us allocate gigabytes (scrypt needs 128 * r * N bytes, p times over).
    memory = 128 * r * (1 << log2_n)
    if memory > MAX_SCRYPT_MEMORY or p > MAX_SCRYPT_P:
        raise KsecretsError(
            f"{source}: backup asks scrypt for {memory >> 20} MiB x {p}; the limit is "
            f"{MAX_SCRYPT_MEMORY >> 20} MiB x {MAX_SCRYPT_P} (damaged or forged header)"
        )
    header = blob[:_HEADER_LEN]
    salt, nonce = header[8:24], header[24:36]
    try:
        return AESGCM(_kdf(passphrase, salt, log2_n, r, p)).decrypt(nonce, blob[_HEADER_LEN:], header)
    except InvalidTag:
        raise KsecretsError(f"{source}: wrong passphrase, or the backup is damaged") from None


def get_passphrase(
    *,
    confirm: bool,
    environ: Mapping[str, str] | None = None,
    env_var: str = ENV_VAR,
    prompt: str = "Backup passphrase: ",
) -> str:
    """From ``env_var``, or a prompt on the terminal (never from stdin, which carries data)."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_var)
    if value is None:
        try:
            with open("/dev/tty"):
                pass
        except OSError:
            raise KsecretsError(f"no passphrase: set {env_var} or run on a terminal") from None
        value = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat passphrase: ") != value:
            raise KsecretsError("the passphrases do not match")
    if not value:
        raise KsecretsError(f"{env_var}: the passphrase is empty")
    if confirm and len(value) < MIN_PASSPHRASE:
        raise KsecretsError(f"{env_var}: use a passphrase of at least {MIN_PASSPHRASE} characters")
    return value


def clean_key_secret(secret: Mapping[str, Any]) -> dict[str, Any]:
    """Only what restoring needs: drop uid, resourceVersion, managedFields, ownerReferences...
    An age key Secret gets no sealing-key label (the controller would take it for its key)."""
    age = sops.is_key_secret(secret)
    meta = secret.get("metadata") or {}
    out_meta: dict[str, Any] = {"name": meta.get("name") or meta.get("generateName") or "sealed-secrets-key"}
    if meta.get("namespace"):
        out_meta["namespace"] = meta["namespace"]
    labels = dict(meta.get("labels") or {})
    if not age:
        labels.setdefault(KEY_LABEL, "active")
    if labels:
        out_meta["labels"] = labels
    data = secret.get("data") or {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": out_meta,
        "type": secret.get("type") or ("Opaque" if age else "kubernetes.io/tls"),
        "data": {k: data[k] for k in sorted(data)},
    }


def describe_key_secrets(secrets_: list[dict[str, Any]], source: str) -> list[str]:
    """Check every key Secret (an RSA `tls.key`, or age identities under `*.agekey`) and name its
    key by a public id: the certificate's fingerprint, or the age recipient(s)."""
    from ksecrets.sealing.keys import fingerprint_of_private

    out: list[str] = []
    sealing = [s for s in secrets_ if not (isinstance(s, dict) and sops.is_key_secret(s))]
    for i, secret in enumerate(secrets_):
        if secret not in sealing:
            meta = secret.get("metadata") if isinstance(secret.get("metadata"), dict) else {}
            where = f"{source}: Secret {(meta or {}).get('name') or f'items[{i}]'}"
            out += [sops.recipient_of(key, where) for key in sops.key_secret_identities(secret, where)]
    # The sealing keys in one call, as before (its errors number the items as given).
    return [fingerprint_of_private(k) for k in keys_from_secrets(sealing, source)] + out


def backup_plaintext(doc: Any, source: str) -> bytes:
    """Validate the key Secrets (each must hold an RSA `tls.key` or age keys) and serialise them."""
    secrets_ = [clean_key_secret(s) for s in secrets_from_document(doc, source)]
    describe_key_secrets(secrets_, source)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": secrets_}, sort_keys=False).encode("utf-8")


def write_backup(
    path: str | os.PathLike[str],
    plaintext: bytes,
    passphrase: str,
    *,
    log2_n: int = DEFAULT_LOG2_N,
    overwrite: bool = False,
) -> None:
    p = Path(path)
    if p.exists() and not overwrite:
        raise KsecretsError(f"{p}: already exists; choose another file (a backup is never overwritten)")
    atomic_write_bytes(p, encrypt_backup(plaintext, passphrase, log2_n=log2_n), 0o600)


def read_backup(path: str | os.PathLike[str], passphrase: str) -> list[dict[str, Any]]:
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KsecretsError(f"{source}: cannot read backup: {exc.strerror}") from None
    plain = decrypt_backup(data, passphrase, source)
    try:
        doc = json.loads(plain)
    except ValueError:
        raise KsecretsError(f"{source}: damaged backup content") from None
    return secrets_from_document(doc, source)


def log2_n_from_env() -> int:
    """Tests lower the scrypt cost with KSECRETS_BACKUP_SCRYPT_LOG2N; never below 14."""
    raw = os.environ.get("KSECRETS_BACKUP_SCRYPT_LOG2N")
    if not raw:
        return DEFAULT_LOG2_N
    try:
        value = int(raw)
    except ValueError:
        raise KsecretsError("KSECRETS_BACKUP_SCRYPT_LOG2N: expected an integer") from None
    return max(14, min(MAX_LOG2_N, value))

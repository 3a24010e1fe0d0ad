"""Sealing-key backups that never go stale, and never can be read where they are kept.

The controller makes a new key every `keyRenewPeriod` (30 days), so a backup taken once soon
lacks keys. The key-backup CronJob (`ksecrets.manifests.keybackup`) lists the controller's key
Secrets and encrypts each one it has not saved yet to an OFFLINE public key committed in `certs/`
(RSA-OAEP-SHA256 + AES-256-GCM, the sealing format, label `ksecrets-sealing-key-backup`): the
pod holds no way to decrypt what it writes, and neither does whoever reads the volume. The
private half stays offline, passphrase-encrypted (`ksecrets backup --new-offline-key`);
`ksecrets backup --import` decrypts the files with it.

One file per key Secret, `<secret name>.kskey`, JSON:

    {"format": "ksecrets-sealing-key/1", "name", "namespace", "created",
     "certificate": <tls.crt PEM, public>, "fingerprint": <public key SHA256:...>,
     "recipient": <offline public key SHA256:...>, "ciphertext": base64(hybrid(Secret JSON))}

The certificate and fingerprint are public, so `ksecrets backup --check` tells which keys a set
of files covers without the offline key.

The CronJob's program is `ksecrets.jobs.key_backup`; its command stays
`python -m ksecrets.sealing.keybackup --namespace kube-system --public-key F --dir D` (this
package's `__main__`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_bytes
from ksecrets.sealing import crypto
from ksecrets.sealing.backup import clean_key_secret
from ksecrets.sealing.certs import public_key_fingerprint
from ksecrets.sealing.keys import KEY_LABEL, keys_from_secrets

FORMAT = "ksecrets-sealing-key/1"
# The least a key Secret's JSON can hold: a 2048-bit RSA private key's PEM alone is about 1.7 KB
# before base64. A ciphertext whose plaintext is shorter cannot be a key.
MIN_KEY_SECRET_BYTES = 1200
LABEL = b"ksecrets-sealing-key-backup"
SUFFIX = ".kskey"
PASSPHRASE_ENV = "KSECRETS_OFFLINE_KEY_PASSPHRASE"
log = logging.getLogger("ksecrets.keybackup")


# --- the offline key pair --------------------------------------------------------------------------


def new_offline_key(bits: int = 4096) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def encrypted_private_pem(key: rsa.RSAPrivateKey, passphrase: str) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode("utf-8")),
    )


def load_public_key(data: bytes, source: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KsecretsError(f"{source}: not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KsecretsError(f"{source}: expected an RSA public key")
    return key


def load_offline_private_key(data: bytes, passphrase: str, source: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8"))
    except TypeError:
        raise KsecretsError(f"{source}: the offline key must be passphrase-encrypted") from None
    except ValueError:
        raise KsecretsError(f"{source}: wrong passphrase, or not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KsecretsError(f"{source}: expected an RSA private key")
    return key


# --- one key Secret <-> one file ------------------------------------------------------------------


def _b64(secret: Mapping[str, Any], key: str, source: str) -> bytes:
    try:
        return base64.b64decode(str((secret.get("data") or {})[key]), validate=True)
    except (KeyError, binascii.Error):
        name = (secret.get("metadata") or {}).get("name", "?")
        raise KsecretsError(f"{source}: Secret {name}: data.{key} missing or not base64") from None


def encrypt_key_secret(secret: Mapping[str, Any], recipient: rsa.RSAPublicKey, source: str = "key Secret") -> bytes:
    clean = clean_key_secret(secret)
    (private,) = keys_from_secrets([clean], source)
    meta = secret.get("metadata") or {}
    doc = {
        "format": FORMAT,
        "name": clean["metadata"]["name"],
        "namespace": clean["metadata"].get("namespace", ""),
        "created": str(meta.get("creationTimestamp") or ""),
        "certificate": _b64(clean, "tls.crt", source).decode("ascii") if "tls.crt" in clean["data"] else "",
        "fingerprint": public_key_fingerprint(private.public_key()),
        "recipient": public_key_fingerprint(recipient),
        "ciphertext": base64.b64encode(
            crypto.hybrid_encrypt(recipient, json.dumps(clean, sort_keys=True).encode("utf-8"), LABEL)
        ).decode("ascii"),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("ascii")


def read_key_file(data: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise KsecretsError(f"{source}: not a ksecrets key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KsecretsError(f"{source}: not a ksecrets key file (format is not {FORMAT})")
    for field in ("name", "fingerprint", "recipient", "ciphertext"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise KsecretsError(f"{source}: {field}: missing")
    # What can be told without the offline key: the ciphertext has the sealing format's layout and
    # is long enough to hold a key Secret, and the public certificate is the key's.
    problem = crypto.sealed_value_problem(doc["ciphertext"])
    if problem:
        raise KsecretsError(f"{source}: ciphertext: {problem.replace('sealed ciphertext', 'an encrypted key')}")
    size = crypto.sealed_plaintext_bytes(doc["ciphertext"]) or 0
    if size < MIN_KEY_SECRET_BYTES:
        raise KsecretsError(
            f"{source}: ciphertext: holds {size} bytes, too few for a key Secret (at least {MIN_KEY_SECRET_BYTES}); "
            "not a key backup"
        )
    if doc.get("certificate"):
        from ksecrets.sealing.certs import parse_certificate

        cert = parse_certificate(
            str(doc["certificate"]).encode("ascii", "replace"),
            f"{source}: certificate",
            allow_expired=True,
            allow_not_yet_valid=True,
        )
        if cert.fingerprint != doc["fingerprint"]:
            raise KsecretsError(f"{source}: the certificate is {cert.fingerprint}, not the file's {doc['fingerprint']}")
    return doc


def decrypt_key_file(data: bytes, offline: rsa.RSAPrivateKey, source: str) -> dict[str, Any]:
    doc = read_key_file(data, source)
    if doc["recipient"] != public_key_fingerprint(offline.public_key()):
        raise KsecretsError(f"{source}: encrypted to {doc['recipient']}, not to this offline key")
    try:
        plain = crypto.hybrid_decrypt(offline, base64.b64decode(doc["ciphertext"], validate=True), LABEL)
    except (binascii.Error, crypto.DecryptError):
        raise KsecretsError(f"{source}: cannot decrypt (damaged file)") from None
    try:
        secret = json.loads(plain)
    except ValueError:  # also bytes that are not UTF-8
        secret = None
    if not isinstance(secret, dict) or not isinstance(secret.get("data"), dict):
        raise KsecretsError(
            f"{source}: the decrypted content is not a key Secret (not a JSON object with data: damaged or forged file)"
        )
    (private,) = keys_from_secrets([secret], source)
    if public_key_fingerprint(private.public_key()) != doc["fingerprint"]:
        raise KsecretsError(f"{source}: the decrypted key does not match the file's fingerprint")
    return secret


def key_files(paths: Iterable[Path]) -> list[Path]:
    """Files given, and the *.kskey files of directories given, sorted."""
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob(f"*{SUFFIX}")) if p.is_dir() else [p]
    return out


# --- the CronJob ---------------------------------------------------------------------------------


def save_new_keys(
    secrets_: Sequence[Mapping[str, Any]], recipient: rsa.RSAPublicKey, directory: Path
) -> tuple[list[str], list[str]]:
    """Write a file for every key Secret that has none yet. (written, already there), by name.
    A file that exists for a name is kept as is: keys never change once made."""
    directory.mkdir(parents=True, exist_ok=True)
    written, present = [], []
    for secret in secrets_:
        name = str((secret.get("metadata") or {}).get("name") or "")
        if not name or "/" in name or name.startswith("."):
            raise KsecretsError(f"key Secret with an unusable name {name!r}")
        target = directory / f"{name}{SUFFIX}"
        if target.exists():
            present.append(name)
            continue
        atomic_write_bytes(target, encrypt_key_secret(secret, recipient, f"Secret {name}"), 0o600)
        written.append(name)
    return written, present


def list_key_secrets(api: str, token: str, ca: str | bool, namespace: str) -> list[dict[str, Any]]:
    """The controller's key Secrets (label `sealedsecrets.bitnami.com/sealed-secrets-key`)."""
    import requests

    url = f"{api.rstrip('/')}/api/v1/namespaces/{namespace}/secrets"
    try:
        r = requests.get(
            url,
            params={"labelSelector": KEY_LABEL},
            headers={"Authorization": f"Bearer {token}"},
            verify=ca,
            timeout=30,
        )
    except requests.RequestException as exc:
        raise KsecretsError(f"{url}: unreachable ({type(exc).__name__})") from None
    if r.status_code != 200:
        raise KsecretsError(f"{url}: HTTP {r.status_code} (the ServiceAccount needs list on secrets here)")
    try:
        body = r.json()
    except ValueError:
        body = None
    items = (body.get("items") or []) if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise KsecretsError(f"{url}: the answer is not a list of Secrets (is this the Kubernetes API?)")
    return [{**i, "kind": "Secret", "apiVersion": "v1"} for i in items]

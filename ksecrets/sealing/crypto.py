"""The sealed-secrets hybrid encryption format, as upstream `pkg/crypto` writes and reads it.

    base64std( uint16_be(len(rsa_ct)) || rsa_ct || aes_gcm_ct )

`rsa_ct` is RSA-OAEP (SHA-256, MGF1-SHA-256) of a fresh 32-byte session key under a label that
binds the value to its scope; `aes_gcm_ct` is AES-256-GCM of the value under that session key
with an all-zero 12-byte nonce (safe: every key encrypts exactly one message), no AAD, tag last.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from typing import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ksecrets.errors import KsecretsError
from ksecrets.sealing.scopes import SCOPES  # the format's scopes (stdlib-only module, for the CLI)

SESSION_KEY_BYTES = 32
_ZERO_NONCE = bytes(12)
_TAG_BYTES = 16


class DecryptError(KsecretsError):
    """A value could not be decrypted: wrong key, wrong scope (label), or damaged ciphertext."""


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise KsecretsError(f"scope {scope!r}: must be one of {', '.join(SCOPES)}")
    return scope


def label_for(scope: str, namespace: str, name: str) -> bytes:
    """The RSA-OAEP label of upstream `EncryptionLabel`: `ns/name`, `ns`, or empty."""
    check_scope(scope)
    if scope == "cluster-wide":
        return b""
    if scope == "namespace-wide":
        return namespace.encode("utf-8")
    return f"{namespace}/{name}".encode("utf-8")


@functools.lru_cache(maxsize=256)
def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label or None)


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """Raw (not base64) ciphertext. Randomised: a new session key every call."""
    session_key = os.urandom(SESSION_KEY_BYTES)
    rsa_ct = public_key.encrypt(session_key, _oaep(label))
    return len(rsa_ct).to_bytes(2, "big") + rsa_ct + AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)


def encrypt_value(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    """The string that goes into `spec.encryptedData` (and what `kubeseal --raw` prints)."""
    return base64.b64encode(hybrid_encrypt(public_key, plaintext, label)).decode("ascii")


def hybrid_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes, label: bytes) -> bytes:
    """Inverse of `hybrid_encrypt`; raises DecryptError (no detail that could leak anything)."""
    if len(ciphertext) < 2:
        raise DecryptError("ciphertext is too short (truncated?)")
    rsa_len = int.from_bytes(ciphertext[:2], "big")
    if len(ciphertext) < 2 + rsa_len + _TAG_BYTES:
        raise DecryptError("ciphertext is too short (truncated?)")
    try:
        session_key = private_key.decrypt(ciphertext[2 : 2 + rsa_len], _oaep(label))
    except ValueError:
        raise DecryptError("cannot decrypt: wrong key, wrong scope, or tampered ciphertext") from None
    if len(session_key) != SESSION_KEY_BYTES:
        raise DecryptError("cannot decrypt: tampered ciphertext")
    try:
        return AESGCM(session_key).decrypt(_ZERO_NONCE, ciphertext[2 + rsa_len :], None)
    except InvalidTag:
        raise DecryptError("cannot decrypt: tampered or truncated ciphertext") from None


def decode_value(value: str) -> bytes:
    """Strict standard base64 (what the controller's `base64.StdEncoding` accepts)."""
    if not isinstance(value, str):
        raise DecryptError("value is not a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecryptError("value is not valid base64 (truncated?)") from None


def decrypt_value(private_keys: Iterable[rsa.RSAPrivateKey], value: str, label: bytes) -> bytes:
    """Decrypt one `encryptedData` value, trying every key (like the controller's key registry)."""
    raw = decode_value(value)
    keys = list(private_keys)
    if not keys:
        raise DecryptError("no private key to decrypt with")
    last: DecryptError | None = None
    for key in keys:
        try:
            return hybrid_decrypt(key, raw, label)
        except DecryptError as exc:
            last = exc
            if "too short" in str(exc):
                break
    assert last is not None
    if len(keys) > 1 and "wrong key" in str(last):
        raise DecryptError(
            f"cannot decrypt with any of the {len(keys)} keys: wrong key, wrong scope, or tampered ciphertext"
        )
    raise last


def is_well_formed(value: object) -> bool:
    """Whether `value` has the shape of a sealed value (strict base64 of `uint16(len(rsa)) || rsa ||
    gcm` with an RSA part of 2048 to 16384 bits and room for the GCM tag). It says nothing about
    which key can open it; it tells ciphertext from a pasted plaintext."""
    if not isinstance(value, str):
        return False
    try:
        raw = decode_value(value)
    except DecryptError:
        return False
    if len(raw) < 2:
        return False
    rsa_len = int.from_bytes(raw[:2], "big")
    return 256 <= rsa_len <= 2048 and len(raw) >= 2 + rsa_len + _TAG_BYTES

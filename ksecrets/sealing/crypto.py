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
from typing import TYPE_CHECKING, Iterable

from ksecrets.errors import KsecretsError
from ksecrets.scopes import SCOPES  # the format's scopes (stdlib-only module, for the CLI)

if TYPE_CHECKING:  # `cryptography` is imported where it is used: the model checks values with
    # `sealed_value_problem` below, which needs nothing but the standard library.
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

SESSION_KEY_BYTES = 32
_ZERO_NONCE = bytes(12)
_TAG_BYTES = 16
# The RSA block is as long as the certificate's modulus: 2048 bits at least (certs.MIN_RSA_BITS;
# the controller makes 4096), and no RSA key in use is over 16384 bits.
MIN_RSA_BYTES = 2048 // 8
MAX_RSA_BYTES = 16384 // 8


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
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label or None)


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """Raw (not base64) ciphertext. Randomised: a new session key every call."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    session_key = os.urandom(SESSION_KEY_BYTES)
    rsa_ct = public_key.encrypt(session_key, _oaep(label))
    return len(rsa_ct).to_bytes(2, "big") + rsa_ct + AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)


def encrypt_value(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    """The string that goes into `spec.encryptedData` (and what `kubeseal --raw` prints)."""
    return base64.b64encode(hybrid_encrypt(public_key, plaintext, label)).decode("ascii")


def hybrid_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes, label: bytes) -> bytes:
    """Inverse of `hybrid_encrypt`; raises DecryptError (no detail that could leak anything)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def sealed_value_problem(value: object, key_bytes: int | None = None) -> str | None:
    """Why `value` cannot be one `encryptedData` value (None when it is well-formed): strict
    standard base64 of uint16_be(len(rsa_ct)) || rsa_ct || aes_gcm_ct, where rsa_ct is exactly
    as long as the certificate's modulus (`key_bytes` when the certificate is known, else a size
    some RSA key of 2048 to 16384 bits would give) and aes_gcm_ct holds at least its 16-byte tag.

    The one check of "is this ciphertext" (the model, export, verify, --merge-into). The problem
    never quotes the value: a value that is not ciphertext may well be a secret in the clear.
    """
    if not isinstance(value, str):
        return "is not a string of sealed ciphertext"
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = None
    # Canonical standard base64 only (what kubeseal and this module write): no extra padding.
    if raw is None or base64.b64encode(raw).decode("ascii") != value:
        return "is not sealed ciphertext (not strict base64); seal the value with `ksecrets seal`"
    if len(raw) < 2:
        return "is not sealed ciphertext (too short); seal the value with `ksecrets seal`"
    rsa_len = int.from_bytes(raw[:2], "big")
    if key_bytes is not None and rsa_len != key_bytes:
        return (
            f"is not sealed ciphertext for this certificate (its RSA block is not {key_bytes} bytes): "
            "another key size, damaged, or not sealed at all"
        )
    if not MIN_RSA_BYTES <= rsa_len <= MAX_RSA_BYTES:
        return (
            "is not sealed ciphertext (no RSA block of a 2048- to 16384-bit key); seal the value with `ksecrets seal`"
        )
    if len(raw) < 2 + rsa_len + _TAG_BYTES:
        return "is not sealed ciphertext (shorter than its RSA block and AES-GCM tag: truncated?)"
    return None


def sealed_plaintext_bytes(value: str) -> int | None:
    """The length of the value a well-formed sealed value decrypts to, from its length alone
    (None when it is not well-formed)."""
    if sealed_value_problem(value) is not None:
        return None
    raw = base64.b64decode(value, validate=True)
    return len(raw) - 2 - int.from_bytes(raw[:2], "big") - _TAG_BYTES


def is_well_formed(value: object) -> bool:
    """Whether `value` has the shape of a sealed value (`sealed_value_problem` finds nothing). It says
    nothing about which key can open it; it tells ciphertext from a pasted plaintext."""
    return sealed_value_problem(value) is None

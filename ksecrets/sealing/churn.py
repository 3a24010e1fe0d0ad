"""Churn-free re-sealing: decide "unchanged" without decrypting and without revealing anything.

Encryption stays randomised, so sealing the same value twice gives two ciphertexts. To keep an
unchanged value's ciphertext byte-identical, the stack file stores, next to it, a keyed digest:

    hmac-sha256:<base64( HMAC-SHA256(K, "ksecrets-churn-v1" || len-prefixed(namespace, name, key,
                                                                       scope, cert fingerprint, value)) )>

K comes from `KSECRETS_SEAL_KEY`, a secret held outside Git (a CI secret, a Pulumi config secret
exported into the environment). Without K the digest is a PRF output: it says nothing about the
value, not even whether two Secrets share a value (the slot is part of the input). Binding the
certificate fingerprint and scope means a new certificate or scope never reuses a ciphertext.

Those digests differ between clusters even for one value (each cluster has its own certificate).
`fleet_digest` is its companion for `ksecrets drift`: the same K over the Secret's namespace, name
and key and the value, without scope or certificate, so one value sealed for several clusters of a
fleet gives one digest there, and drift compares clusters without decrypting anything. What it
tells whoever reads the repository without K: whether two clusters hold the same value in the same
slot (what drift reports), nothing about the value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import Mapping

from ksecrets.errors import KsecretsError

ENV_VAR = "KSECRETS_SEAL_KEY"
PREFIX = "hmac-sha256:"
# The key is key material, not a password: at least 32 bytes (HMAC-SHA256's own size), written as
# base64 (standard or URL-safe, padding optional) or hex, as `openssl rand -base64 32`,
# `openssl rand -hex 32` or `python -c 'import secrets; print(secrets.token_urlsafe(32))'` print it.
# Anything shorter, or not such an encoding (blanks, a word, a passphrase), is refused: a guessable
# key makes the digests a test of guessed values.
MIN_KEY_BYTES = 32
# 32 random bytes hold ~30 distinct byte values; fewer than 16 means a pattern, not randomness
# (the chance that `openssl rand 32` gives fewer is below 10^-9).
MIN_DISTINCT_BYTES = 16
_DOMAIN = b"ksecrets-churn-v1"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2}")


def key_material(value: str) -> bytes | None:
    """The bytes `value` encodes as hex or base64, None when it is neither."""
    if _HEX.fullmatch(value):
        return bytes.fromhex(value)
    if not _B64.fullmatch(value):
        return None
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None


def seal_key_problem(value: str) -> str | None:
    """Why `value` is no seal key (None when it is one). Never quotes the value."""
    hint = f"at least {MIN_KEY_BYTES} random bytes as base64 or hex, e.g. `openssl rand -base64 32`"
    if value != value.strip() or any(ch.isspace() for ch in value):
        return f"contains blanks or a newline; it must be {hint}"
    material = key_material(value)
    if material is None:
        return f"is not base64 or hex key material; it must be {hint}"
    if len(material) < MIN_KEY_BYTES:
        return f"holds {len(material)} bytes of key material; it must be {hint}"
    if len(set(material)) < MIN_DISTINCT_BYTES:
        return f"is a repeated pattern, not random key material; it must be {hint}"
    return None


def seal_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key of the digests, or None when `KSECRETS_SEAL_KEY` is unset or empty. The HMAC key is
    the variable's text as given (digests written before the check still match)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR)
    if not value:
        return None
    problem = seal_key_problem(value)
    if problem:
        raise KsecretsError(f"{ENV_VAR}: {problem}")
    return value.encode("utf-8")


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def value_digest(
    seal_key: bytes, *, namespace: str, name: str, key: str, scope: str, fingerprint: str, value: bytes
) -> str:
    msg = _DOMAIN + b"".join(
        _field(part)
        for part in (namespace.encode(), name.encode(), key.encode(), scope.encode(), fingerprint.encode(), value)
    )
    return PREFIX + base64.b64encode(hmac.new(seal_key, msg, hashlib.sha256).digest()).decode("ascii")


_FLEET_DOMAIN = b"ksecrets-fleet-v1"


def fleet_digest(seal_key: bytes, *, namespace: str, name: str, key: str, value: bytes) -> str:
    """The keyed digest of one value in one slot, the same on every cluster (no certificate)."""
    msg = _FLEET_DOMAIN + b"".join(_field(part) for part in (namespace.encode(), name.encode(), key.encode(), value))
    return PREFIX + base64.b64encode(hmac.new(seal_key, msg, hashlib.sha256).digest()).decode("ascii")


def unchanged(stored: str | None, seal_key: bytes, **slot) -> bool:
    """True when `stored` is the digest of this exact value in this exact slot."""
    if not stored or not isinstance(stored, str) or not stored.startswith(PREFIX):
        return False
    return hmac.compare_digest(stored, value_digest(seal_key, **slot))

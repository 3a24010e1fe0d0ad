"""Churn-free re-sealing: decide "unchanged" without decrypting and without revealing anything.

Encryption stays randomised, so sealing the same value twice gives two ciphertexts. To keep an
unchanged value's ciphertext byte-identical, the stack file stores, next to it, a keyed digest:

    hmac-sha256:<base64( HMAC-SHA256(K, "ksecrets-churn-v1" || len-prefixed(namespace, name, key,
                                                                       scope, cert fingerprint, value)) )>

K comes from `KSECRETS_SEAL_KEY`, a secret held outside Git (a CI secret, a Pulumi config secret
exported into the environment). Without K the digest is a PRF output: it says nothing about the
value, not even whether two Secrets share a value (the slot is part of the input). Binding the
certificate fingerprint and scope means a new certificate or scope never reuses a ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Mapping

from ksecrets.errors import KsecretsError

ENV_VAR = "KSECRETS_SEAL_KEY"
PREFIX = "hmac-sha256:"
MIN_KEY_CHARS = 16
_DOMAIN = b"ksecrets-churn-v1"


def seal_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR)
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise KsecretsError(
            f"{ENV_VAR}: too short (at least {MIN_KEY_CHARS} characters; e.g. `openssl rand -base64 32`)"
        )
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


def unchanged(stored: str | None, seal_key: bytes, **slot) -> bool:
    """True when `stored` is the digest of this exact value in this exact slot."""
    if not stored or not isinstance(stored, str) or not stored.startswith(PREFIX):
        return False
    return hmac.compare_digest(stored, value_digest(seal_key, **slot))

"""Sealing certificates: the public half of the controller's key, as `kubeseal --fetch-cert` prints it.

Loading follows kubeseal's `ParseKey`: PEM, the first certificate counts, its key must be RSA and
it must not have expired. The fingerprint is upstream `PublicKeyFingerprint`: the SSH-style
`SHA256:<unpadded base64>` of the public key in SSH wire format (`ssh-keygen -lf` prints the same).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class SealingCert:
    """A validated sealing certificate."""

    source: str
    public_key: rsa.RSAPublicKey
    fingerprint: str
    not_after: _dt.datetime
    pem: bytes

    @property
    def key_bytes(self) -> int:
        return (self.public_key.key_size + 7) // 8

    def days_left(self, now: _dt.datetime | None = None) -> int:
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return (self.not_after - now).days

    def expires_soon(self, now: _dt.datetime | None = None, days: int = EXPIRY_WARNING_DAYS) -> bool:
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return self.not_after - now <= _dt.timedelta(days=days)


def key_kind(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519

    for cls, name in ((ec.EllipticCurvePublicKey, "ECDSA"), (ec.EllipticCurvePrivateKey, "ECDSA"),
                      (ed25519.Ed25519PublicKey, "Ed25519"), (ed25519.Ed25519PrivateKey, "Ed25519"),
                      (ed448.Ed448PublicKey, "Ed448"), (ed448.Ed448PrivateKey, "Ed448"),
                      (dsa.DSAPublicKey, "DSA"), (dsa.DSAPrivateKey, "DSA")):
        if isinstance(key, cls):
            return name
    return type(key).__name__


def public_key_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """`SHA256:...` exactly as upstream `crypto.PublicKeyFingerprint` (ssh.FingerprintSHA256)."""
    openssh = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(openssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def parse_certificate(data: bytes, source: str, *, now: _dt.datetime | None = None,
                      allow_expired: bool = False) -> SealingCert:
    """Validate PEM bytes; errors are one line naming `source`."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        if b"PRIVATE KEY-----" in data:
            raise KsecretsError(f"{source}: is a private key, not a certificate; never pass a private key as --cert")
        raise KsecretsError(f"{source}: not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KsecretsError(f"{source}: not a valid PEM certificate") from None
    cert = certs[0]
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        raise KsecretsError(f"{source}: unsupported public key in certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KsecretsError(f"{source}: expected an RSA public key, found {key_kind(key)}")
    not_after = cert.not_valid_after_utc
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if not allow_expired and now > not_after:
        raise KsecretsError(f"{source}: certificate expired on {not_after:%Y-%m-%d %H:%M} UTC; fetch the controller's current one")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return SealingCert(source, key, public_key_fingerprint(key), not_after, pem)


def load_certificate(path: str | os.PathLike[str], *, source: str | None = None,
                     now: _dt.datetime | None = None, allow_expired: bool = False) -> SealingCert:
    source = source or str(path)
    data = read_bytes(path, "certificate file", source=source)
    return parse_certificate(data, source, now=now, allow_expired=allow_expired)

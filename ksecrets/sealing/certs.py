"""Sealing certificates: the public half of the controller's key, as `kubeseal --fetch-cert` prints it.

Loading follows kubeseal's `ParseKey`: PEM, the first certificate counts, its key must be RSA and
it must not have expired. The fingerprint is upstream `PublicKeyFingerprint`: the SSH-style
`SHA256:<unpadded base64>` of the public key in SSH wire format (`ssh-keygen -lf` prints the same).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import rsa

from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes

EXPIRY_WARNING_DAYS = 30
# A certificate whose notBefore is in the future is refused for sealing: the controller makes its
# certificate valid from the moment it makes it, so one that is not valid yet is a wrong clock or
# not the controller's. A few minutes of clock skew between machines are tolerated.
NOT_BEFORE_SKEW = _dt.timedelta(minutes=5)


class SealingCert(NamedTuple):
    """A validated sealing certificate. (A NamedTuple, not a dataclass: see secret_input.SecretInput.)"""

    source: str
    public_key: rsa.RSAPublicKey
    fingerprint: str
    not_after: _dt.datetime
    pem: bytes
    not_before: _dt.datetime | None = None

    @property
    def key_bytes(self) -> int:
        return (self.public_key.key_size + 7) // 8

    def days_left(self, now: _dt.datetime | None = None) -> int:
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return (self.not_after - now).days

    def expires_soon(self, now: _dt.datetime | None = None, days: int = EXPIRY_WARNING_DAYS) -> bool:
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return self.not_after - now <= _dt.timedelta(days=days)


MIN_RSA_BITS = 2048


def key_kind(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519

    for cls, name in (
        (ec.EllipticCurvePublicKey, "ECDSA"),
        (ec.EllipticCurvePrivateKey, "ECDSA"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed25519.Ed25519PrivateKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (ed448.Ed448PrivateKey, "Ed448"),
        (dsa.DSAPublicKey, "DSA"),
        (dsa.DSAPrivateKey, "DSA"),
    ):
        if isinstance(key, cls):
            return name
    return type(key).__name__


def _ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _mpint(n: int) -> bytes:
    return _ssh_string(n.to_bytes(n.bit_length() // 8 + 1, "big") if n else b"")


def public_key_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """`SHA256:...` exactly as upstream `crypto.PublicKeyFingerprint` (ssh.FingerprintSHA256): the
    SHA-256 of the key in SSH wire format (string "ssh-rsa", mpint e, mpint n; RFC 4253 6.6)."""
    numbers = public_key.public_numbers()
    blob = _ssh_string(b"ssh-rsa") + _mpint(numbers.e) + _mpint(numbers.n)
    from cryptography.hazmat.primitives import hashes  # already loaded with rsa; hashlib would not be

    digest = hashes.Hash(hashes.SHA256())
    digest.update(blob)
    return "SHA256:" + base64.b64encode(digest.finalize()).decode("ascii").rstrip("=")


# --- a small DER reader for the one common case (an RSA certificate), so that sealing need not
# import cryptography.x509, which costs as much as the rest of `ksecrets seal`'s start-up. Anything
# it does not recognise goes to the full x509 parser below, which also words every error.

_RSA_OID = bytes.fromhex("06092a864886f70d010101")
_PEM_CERT = (b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----")


class _NotSimple(Exception):
    pass


def _tlv(buf: bytes, pos: int, tag: int | None = None) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `pos`."""
    if pos + 2 > len(buf):
        raise _NotSimple
    t, first = buf[pos], buf[pos + 1]
    if tag is not None and t != tag:
        raise _NotSimple
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise _NotSimple
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise _NotSimple
    return t, pos, pos + length


def _der_time(buf: bytes, pos: int) -> tuple[_dt.datetime, int]:
    t, start, end = _tlv(buf, pos)
    text = buf[start:end].decode("ascii", "strict")
    if t == 0x17 and len(text) == 13 and text.endswith("Z"):  # UTCTime YYMMDDHHMMSSZ (RFC 5280 4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (t == 0x18 and len(text) == 15 and text.endswith("Z")):  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise _NotSimple
    if not text[:14].isdigit():
        raise _NotSimple
    y, mo, d, h, mi, sec = (int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)))
    return _dt.datetime(y, mo, d, h, mi, sec, tzinfo=_dt.timezone.utc), end


def _fast_parse(data: bytes) -> tuple[rsa.RSAPublicKey, _dt.datetime, _dt.datetime, bytes]:
    """(public key, notBefore, notAfter, the first certificate's PEM) of a PEM with an RSA certificate."""
    begin = data.find(_PEM_CERT[0])
    end = data.find(_PEM_CERT[1], begin)
    if begin < 0 or end < 0:
        raise _NotSimple
    body = b"".join(data[begin + len(_PEM_CERT[0]) : end].split())
    der = base64.b64decode(body, validate=True)
    _, cstart, cend = _tlv(der, 0, 0x30)
    if cend != len(der):
        raise _NotSimple
    _, tstart, tend = _tlv(der, cstart, 0x30)  # tbsCertificate
    pos = tstart
    if der[pos] == 0xA0:  # [0] EXPLICIT version
        pos = _tlv(der, pos)[2]
    for tag in (0x02, 0x30, 0x30):  # serialNumber, signature, issuer
        pos = _tlv(der, pos, tag)[2]
    _, vstart, vend = _tlv(der, pos, 0x30)  # validity
    not_before, after = _der_time(der, vstart)
    not_after, vpos = _der_time(der, after)
    if vpos != vend:
        raise _NotSimple
    pos = _tlv(der, vend, 0x30)[2]  # subject
    _, sstart, send = _tlv(der, pos, 0x30)  # subjectPublicKeyInfo
    _, astart, aend = _tlv(der, sstart, 0x30)
    if not der[astart:aend].startswith(_RSA_OID):
        raise _NotSimple
    _, bstart, bend = _tlv(der, aend, 0x03)
    if der[bstart] != 0:
        raise _NotSimple
    _, kstart, kend = _tlv(der, bstart + 1, 0x30)
    _, nstart, nend = _tlv(der, kstart, 0x02)
    _, estart, eend = _tlv(der, nend, 0x02)
    if eend != kend or kend != bend or bend != send:
        raise _NotSimple
    n = int.from_bytes(der[nstart:nend], "big")
    e = int.from_bytes(der[estart:eend], "big")
    key = rsa.RSAPublicNumbers(e, n).public_key()
    lines = [base64.b64encode(der[i : i + 48]) for i in range(0, len(der), 48)]
    pem = _PEM_CERT[0] + b"\n" + b"\n".join(lines) + b"\n" + _PEM_CERT[1] + b"\n"
    return key, not_before, not_after, pem


def _check_key_size(key: rsa.RSAPublicKey, source: str) -> None:
    if key.key_size < MIN_RSA_BITS:
        # Under 2048 bits RSA is breakable, and under 594 it cannot even hold an OAEP-SHA256 session key.
        raise KsecretsError(
            f"{source}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required "
            "(the controller makes 4096)"
        )


def not_yet_valid(cert: SealingCert, now: _dt.datetime | None = None) -> bool:
    """Its notBefore is later than `now` plus the tolerated clock skew."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return cert.not_before is not None and cert.not_before > now + NOT_BEFORE_SKEW


def not_yet_valid_problem(cert: SealingCert) -> str:
    assert cert.not_before is not None
    return (
        f"certificate is not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC: this machine's clock is wrong, "
        "or it is not the controller's certificate (the controller's is valid from when it was made)"
    )


def _check_not_before(cert: SealingCert, now: _dt.datetime, allow_not_yet_valid: bool) -> SealingCert:
    if not allow_not_yet_valid and not_yet_valid(cert, now):
        raise KsecretsError(
            f"{cert.source}: {not_yet_valid_problem(cert)}; check it (pass --allow-future-cert to seal with it anyway)"
        )
    return cert


def parse_certificate(
    data: bytes,
    source: str,
    *,
    now: _dt.datetime | None = None,
    allow_expired: bool = False,
    allow_not_yet_valid: bool = False,
) -> SealingCert:
    """Validate PEM bytes; errors are one line naming `source`. A certificate that is not valid yet
    (notBefore more than NOT_BEFORE_SKEW ahead) is refused unless `allow_not_yet_valid`."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if b"PRIVATE KEY-----" not in data:
        try:
            key, not_before, not_after, pem = _fast_parse(data)
        except (_NotSimple, ValueError, IndexError, UnicodeDecodeError):
            pass
        else:
            _check_key_size(key, source)
            if not allow_expired and now > not_after:
                raise KsecretsError(
                    f"{source}: certificate expired on {not_after:%Y-%m-%d %H:%M} UTC; "
                    "fetch the controller's current one"
                )
            cert = SealingCert(source, key, public_key_fingerprint(key), not_after, pem, not_before)
            return _check_not_before(cert, now, allow_not_yet_valid)
    cert = _full_parse(data, source, now=now, allow_expired=allow_expired)
    return _check_not_before(cert, now, allow_not_yet_valid)


def _full_parse(data: bytes, source: str, *, now: _dt.datetime, allow_expired: bool) -> SealingCert:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

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
    _check_key_size(key, source)
    not_after = cert.not_valid_after_utc
    if not allow_expired and now > not_after:
        raise KsecretsError(
            f"{source}: certificate expired on {not_after:%Y-%m-%d %H:%M} UTC; fetch the controller's current one"
        )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return SealingCert(source, key, public_key_fingerprint(key), not_after, pem, cert.not_valid_before_utc)


def load_certificate(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    now: _dt.datetime | None = None,
    allow_expired: bool = False,
    regular: bool = False,
    allow_not_yet_valid: bool = False,
) -> SealingCert:
    """`regular=True` for a path a stack file names (never a FIFO or a device: `fileio.read_regular`)."""
    source = source or str(path)
    data = read_bytes(path, "certificate file", source=source, regular=regular)
    return parse_certificate(
        data, source, now=now, allow_expired=allow_expired, allow_not_yet_valid=allow_not_yet_valid
    )

"""Certificates: fingerprint like upstream, rejection of expired / non-RSA / non-PEM, controller-style keygen."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ksecrets.errors import KsecretsError
from ksecrets.sealing.certs import load_certificate, parse_certificate, public_key_fingerprint
from ksecrets.sealing.keys import cert_pem, self_signed_cert

from .conftest import past


def test_fingerprint_matches_upstream_vector(vectors, vector_cert):
    assert vector_cert.fingerprint == vectors["public_key_fingerprint"]


def test_fingerprint_matches_ssh_keygen(tmp_path, vector_cert):
    pub = vector_cert.public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (tmp_path / "k.pub").write_bytes(pub + b" test\n")
    try:
        out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("ssh-keygen not installed")
    assert out.stdout.split()[1] == vector_cert.fingerprint


def test_not_after_is_read(vector_cert):
    assert vector_cert.not_after.year >= 2035
    assert not vector_cert.expires_soon()


def test_expired_certificate_is_rejected(tmp_path, vector_key):
    old = self_signed_cert(vector_key, dt.timedelta(days=30), now=past(60))
    path = tmp_path / "old.pem"
    path.write_bytes(cert_pem(old))
    with pytest.raises(KsecretsError) as exc:
        load_certificate(path, source="old.pem")
    when = old.not_valid_after_utc
    assert str(exc.value) == (
        f"old.pem: certificate expired on {when:%Y-%m-%d %H:%M} UTC; fetch the controller's current one"
    )
    assert load_certificate(path, allow_expired=True).fingerprint == public_key_fingerprint(vector_key.public_key())


def test_expiring_soon_is_flagged(vector_key):
    cert = self_signed_cert(vector_key, dt.timedelta(days=40), now=past(20))
    loaded = parse_certificate(cert_pem(cert), "soon.pem")
    assert loaded.expires_soon() and 19 <= loaded.days_left() <= 20


def test_non_rsa_certificate_is_rejected():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(KsecretsError) as exc:
        parse_certificate(cert.public_bytes(serialization.Encoding.PEM), "ec.pem")
    assert str(exc.value) == "ec.pem: expected an RSA public key, found ECDSA"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "der.pem: not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)"),
        (b"hello", "der.pem: not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)"),
        (
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "der.pem: not a valid PEM certificate",
        ),
    ],
)
def test_non_pem_is_rejected(data, message):
    with pytest.raises(KsecretsError) as exc:
        parse_certificate(data, "der.pem")
    assert str(exc.value) == message


def test_der_certificate_is_rejected(vectors):
    der = x509.load_pem_x509_certificate(vectors["certificate_pem"].encode()).public_bytes(serialization.Encoding.DER)
    with pytest.raises(KsecretsError, match="not a PEM certificate"):
        parse_certificate(der, "der.pem")


def test_private_key_given_as_certificate_is_rejected_without_echo(vectors):
    with pytest.raises(KsecretsError) as exc:
        parse_certificate(vectors["private_key_pem"].encode(), "key.pem")
    assert str(exc.value) == "key.pem: is a private key, not a certificate; never pass a private key as --cert"


def test_missing_certificate_file(tmp_path):
    with pytest.raises(KsecretsError) as exc:
        load_certificate(tmp_path / "nope.pem", source="certs/nope.pem")
    assert str(exc.value) == "certs/nope.pem: certificate file not found"


def test_generated_cert_is_shaped_like_the_controllers(vectors, vector_key):
    """Same subject/issuer, key usage, basic constraints, SKI method, signature and validity as upstream."""
    ours = x509.load_pem_x509_certificate(cert_pem(self_signed_cert(vector_key)))
    theirs = x509.load_pem_x509_certificate(vectors["certificate_pem"].encode())
    assert ours.subject == theirs.subject == x509.Name([])
    assert ours.issuer == theirs.issuer == x509.Name([])
    assert ours.version == theirs.version
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid
    assert ours.not_valid_after_utc - ours.not_valid_before_utc == dt.timedelta(hours=87600)
    assert ours.serial_number.bit_length() <= 128
    # Identical extension bytes: same key, so the SKI must match too.
    tail = lambda c: c.tbs_certificate_bytes[c.tbs_certificate_bytes.index(bytes.fromhex("300e0603551d0f")) :]  # noqa: E731
    assert tail(ours) == tail(theirs)
    ours.verify_directly_issued_by(ours)


def test_generated_cert_key_is_rsa_4096(other_pair):
    key, cert = other_pair
    assert key.key_size == 4096 and cert.public_key().key_size == 4096
    loaded = parse_certificate(cert_pem(cert), "new.pem")
    assert loaded.fingerprint == public_key_fingerprint(key.public_key())

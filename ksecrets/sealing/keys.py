"""Controller-compatible key pairs and the key Secret the controller reads.

`generate_key_and_cert` mirrors upstream `crypto.GeneratePrivateKeyAndCert(4096, 87600h, "")`:
RSA-4096, a self-signed v3 certificate with an empty subject and issuer, a random 128-bit serial,
KeyUsage encipherOnly (critical), BasicConstraints CA:TRUE (critical) and a SHA-1 subject key id,
signed with SHA256-RSA. `cryptography` refuses encipherOnly without keyAgreement, so that one
extension is written as the exact DER bytes Go's `x509.CreateCertificate` emits.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import secrets
from typing import Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.sealing.certs import key_kind, public_key_fingerprint

KEY_BITS = 4096
VALID_FOR = _dt.timedelta(hours=87600)
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
DEFAULT_KEY_PREFIX = "sealed-secrets-key"
# KeyUsage ::= BIT STRING with only encipherOnly (bit 7) set, as Go marshals x509.KeyUsageEncipherOnly.
_KEY_USAGE_ENCIPHER_ONLY_DER = bytes.fromhex("03020001")


def generate_key_and_cert(
    key_bits: int = KEY_BITS, valid_for: _dt.timedelta = VALID_FOR, now: _dt.datetime | None = None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    return key, self_signed_cert(key, valid_for, now)


def self_signed_cert(
    key: rsa.RSAPrivateKey, valid_for: _dt.timedelta = VALID_FOR, now: _dt.datetime | None = None
) -> x509.Certificate:
    """Upstream `crypto.SignKey` with an empty CN."""
    not_before = (now or _dt.datetime.now(_dt.timezone.utc)).replace(microsecond=0)
    empty = x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(empty)
        .issuer_name(empty)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(128) or 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + valid_for)
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, _KEY_USAGE_ENCIPHER_ONLY_DER), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 `RSA PRIVATE KEY`, the encoding the controller writes into `tls.key`."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_secret_name(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """A stable name for a key Secret (the controller uses generateName; `kubectl apply` needs a name)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return f"{prefix}-{hashlib.sha256(der).hexdigest()[:10]}"


def tls_secret_manifest(
    key: rsa.RSAPrivateKey, cert: x509.Certificate, *, namespace: str = "kube-system", name: str | None = None
) -> dict[str, Any]:
    """The `kubernetes.io/tls` Secret the controller picks up as an active sealing key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name or key_secret_name(key),
            "namespace": namespace,
            "labels": {KEY_LABEL: "active"},
        },
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert_pem(cert)).decode("ascii"),
            "tls.key": base64.b64encode(private_key_pem(key)).decode("ascii"),
        },
    }


def parse_private_key_pem(data: bytes, source: str, *, validate: bool = True) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA key (PKCS#1 or PKCS#8), like client-go `keyutil.ParsePrivateKeyPEM`.
    `validate=False` defers the RSA consistency check (about 0.25 s of CPU for a 4096-bit key) to
    `check_private_keys`, which runs it for many keys on every core; nothing may use the key before."""
    try:
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=not validate)
    except TypeError:
        raise KsecretsError(f"{source}: the private key is passphrase-protected; decrypt it first") from None
    except (ValueError, Exception):  # noqa: BLE001 - any parse failure is the same bad input
        raise KsecretsError(f"{source}: not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KsecretsError(f"{source}: expected an RSA private key, found {key_kind(key)}")
    return key


def keys_from_secrets(
    secrets_: Iterable[dict[str, Any]], source: str, *, validate: bool = True
) -> list[rsa.RSAPrivateKey]:
    """`tls.key` of each key Secret (as kubeseal's `readPrivKeysFromFile` does)."""
    keys = []
    for i, secret in enumerate(secrets_):
        if not isinstance(secret, dict):
            raise KsecretsError(f"{source}: items[{i}]: expected a Secret (a JSON/YAML object)")
        data = secret.get("data") or {}
        meta = secret.get("metadata") or {}
        name = (meta.get("name") if isinstance(meta, dict) else None) or f"items[{i}]"
        if not isinstance(name, str) or not isinstance(data, dict) or not isinstance(meta, dict):
            raise KsecretsError(f"{source}: items[{i}]: metadata and data must be objects, metadata.name a string")
        if "tls.key" not in data:
            raise KsecretsError(f"{source}: Secret {name}: has no data.tls.key")
        try:
            pem = base64.b64decode(str(data["tls.key"]), validate=True)
        except ValueError:
            raise KsecretsError(f"{source}: Secret {name}: data.tls.key is not valid base64") from None
        keys.append(parse_private_key_pem(pem, f"{source}: Secret {name}: data.tls.key", validate=validate))
    return keys


def secrets_from_document(doc: Any, source: str) -> list[dict[str, Any]]:
    """A v1 Secret or a v1 List of Secrets (the output of `kubectl get secret ... -o yaml`)."""
    if not isinstance(doc, dict):
        raise KsecretsError(f"{source}: expected a Secret or a List of Secrets")
    if doc.get("kind") == "List" or (doc.get("kind") is None and "items" in doc):
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise KsecretsError(f"{source}: items: expected a list")
    else:
        items = [doc]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kind", "Secret") != "Secret":
            raise KsecretsError(f"{source}: items[{i}]: expected a Secret")
    if not items:
        raise KsecretsError(f"{source}: no Secrets found (is the label selector right?)")
    return items


def load_recovery_keys(data: bytes, source: str, *, validate: bool = True) -> list[rsa.RSAPrivateKey]:
    """A PEM private key, or a Secret / List of key Secrets in YAML or JSON."""
    if b"PRIVATE KEY-----" in data and b"-----BEGIN" in data.lstrip()[:64]:
        return [parse_private_key_pem(data, source, validate=validate)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KsecretsError(f"{source}: not a PEM private key or a key Secret") from None
    doc = yamlio.load(text, source)
    return keys_from_secrets(secrets_from_document(doc, source), source, validate=validate)


# The keys `check_private_keys` checks, as DER, set in the parent before its workers fork (so no
# private key is in a task message: a task is an index).
_TO_CHECK: list[bytes] = []


def _key_is_valid(index: int) -> bool:
    try:
        serialization.load_der_private_key(_TO_CHECK[index], password=None)  # validates, as by default
    except ValueError:
        return False
    return True


def check_private_keys(keys: list[tuple[rsa.RSAPrivateKey, str]], jobs: int) -> None:
    """The RSA consistency check `parse_private_key_pem` skipped with `validate=False`, of each
    (key, source), in `jobs` processes (a fleet's reseal gets one old key per cluster: 50 keys are
    13 s of one core). The first key that fails is the error, in the order given, with the words
    `parse_private_key_pem` uses."""
    if not keys:
        return
    ders = [
        k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for k, _ in keys
    ]
    _TO_CHECK[:] = ders
    try:
        if jobs <= 1 or len(ders) <= 1:
            valid = [_key_is_valid(i) for i in range(len(ders))]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the workers inherit _TO_CHECK; the keys never cross a pipe
            with ProcessPoolExecutor(min(jobs, len(ders)), mp_context=multiprocessing.get_context("fork")) as pool:
                valid = list(pool.map(_key_is_valid, range(len(ders))))
    finally:
        _TO_CHECK.clear()
    for (_key, source), ok in zip(keys, valid):
        if not ok:
            raise KsecretsError(f"{source}: not a PEM private key")


def fingerprint_of_private(key: rsa.RSAPrivateKey) -> str:
    return public_key_fingerprint(key.public_key())

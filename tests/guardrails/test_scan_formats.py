"""`ksecrets scan`: UTF-16 files, kustomize secretGenerator literals, committed env files in the
default (CI) run, token formats and DER/PKCS#12 keys. Keys come from `cryptography` and
`openssl`; tokens are built here with their issuers' documented shapes, never real ones."""

from __future__ import annotations

import base64
import json
import secrets
import string
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ksecrets import scan as s
from ksecrets.sealing.keys import generate_key_and_cert


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def kinds(path: str, data: bytes) -> list[tuple[int, str, str]]:
    return [(f.line, f.kind, f.detail) for f in s.scan_bytes(path, data)]


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


UPPER_DIGITS = string.ascii_uppercase + "234567"
ALNUM = string.ascii_letters + string.digits


def _b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token, what",
    [
        ("AKIA" + _rand(UPPER_DIGITS, 16), "AWS access key ID"),
        ("ASIA" + _rand(UPPER_DIGITS, 16), "AWS access key ID"),
        ("ghp_" + _rand(ALNUM, 36), "GitHub token"),
        ("gho_" + _rand(ALNUM, 36), "GitHub token"),
        ("ghs_" + _rand(ALNUM, 36), "GitHub token"),
        ("github_pat_" + _rand(ALNUM, 22) + "_" + _rand(ALNUM, 59), "GitHub token"),
        ("glpat-" + _rand(ALNUM + "-_", 20), "GitLab token"),
        (
            _b64url({"alg": "HS256", "typ": "JWT"})
            + "."
            + _b64url({"sub": "1234567890", "name": "x", "iat": 1516239022})
            + "."
            + _rand(ALNUM + "-_", 43),
            "JWT",
        ),
    ],
    ids=["aws-akia", "aws-asia", "github-ghp", "github-gho", "github-ghs", "github-pat", "gitlab-pat", "jwt"],
)
def test_credential_formats_are_found_at_their_line(token, what):
    data = f"# config\nclient:\n  token: {token}\n".encode()
    assert kinds("app/config.yaml", data) == [(3, "credential", what)]
    assert token not in "".join(str(f) for f in s.scan_bytes("app/config.yaml", data))


@pytest.mark.parametrize(
    "text",
    [
        "AKIAIOSFODNN7EXAMPLE",  # AWS's documentation example
        "ghp_tooShort",  # not a token's length
        "eyJhbGciOi.eyJzdWIiOi.signature-but-not-json",  # eyJ... that does not decode to JSON
        "see https://example.com/AKIA-docs and ghp_ prefix notes",
    ],
)
def test_look_alikes_are_not_credentials(text):
    assert kinds("notes.md", text.encode()) == []


def test_utf16_files_are_scanned(rsa_key):
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = "ghp_" + _rand(ALNUM, 36)
    text = f"line one\n{pem}token={token}\n"
    for codec in ("utf-16", "utf-16-le", "utf-16-be"):
        found = kinds("exported.txt", text.encode(codec))
        assert (2, "private-key", "") in found and any(k == "credential" for _, k, _ in found), (codec, found)


def test_kustomize_secret_generator_literals():
    data = b"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
secretGenerator:
  - name: app
    envs: [app.env]
  - name: db
    literals:
      - USER=app
      - PASSWORD=hunter2-canary
      - EMPTY=
"""
    assert kinds("overlays/prod/kustomization.yaml", data) == [
        (8, "secret-data", "kustomize secretGenerator literal USER"),
        (9, "secret-data", "kustomize secretGenerator literal PASSWORD"),
    ]


def test_der_and_pkcs12_private_keys(tmp_path, rsa_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = serialization.Encoding.DER
    cases = {
        "rsa-pkcs1.der": rsa_key.private_bytes(
            der, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        "rsa-pkcs8.der": rsa_key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "ec.key": ec_key.private_bytes(
            der, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    }
    for name, data in cases.items():
        assert kinds(name, data) == [(1, "private-key", "DER")], name
    encrypted = rsa_key.private_bytes(
        der, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"a passphrase")
    )
    assert kinds("enc.der", encrypted) == []
    public = rsa_key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert kinds("pub.der", public) == []
    # PKCS#12 made by openssl itself: without a password it is a key in the clear; with one it passes.
    key_pem, cert_pem = tmp_path / "k.pem", tmp_path / "c.pem"
    key, cert = generate_key_and_cert(key_bits=2048)
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for password, expected in (("", [(1, "private-key", "PKCS#12 without a password")]), ("s3cret-pass", [])):
        out = tmp_path / f"bundle{len(password)}.p12"
        subprocess.run(
            [
                "openssl",
                "pkcs12",
                "-export",
                "-inkey",
                str(key_pem),
                "-in",
                str(cert_pem),
                "-out",
                str(out),
                "-passout",
                f"pass:{password}",
            ],
            check=True,
            capture_output=True,
        )
        assert kinds("bundle.p12", out.read_bytes()) == expected, password
    # cryptography's own PKCS#12 without encryption, too.
    bundle = pkcs12.serialize_key_and_certificates(b"x", rsa_key, None, None, serialization.NoEncryption())
    assert kinds("x.pfx", bundle) == [(1, "private-key", "PKCS#12 without a password")]


def test_committed_env_files_are_found_in_the_default_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    for name in (".env", ".env.production", "config/app.env", ".env.example", "docs/envs.md", "environment.py"):
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("A=some-value\n")
    git("add", "-A")
    out = subprocess.run([sys.executable, "-m", "ksecrets", "scan"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 1
    detail = "env-file (an env file: keep it out of Git (seal or push its values))"
    assert out.stdout.splitlines() == [
        f".env:1: {detail}",
        f".env.production:1: {detail}",
        f"config/app.env:1: {detail}",
    ]

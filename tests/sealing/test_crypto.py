"""Known-answer vectors from the upstream controller code, label binding, and our own ciphertexts' layout."""

from __future__ import annotations

import base64

import pytest

from ksecrets.sealing import crypto
from ksecrets.sealing.crypto import DecryptError


def _ids(vectors):
    return [f"{v['scope']}:{v['namespace']}/{v['name']}" for v in vectors]


def pytest_generate_tests(metafunc):
    if "vector" in metafunc.fixturenames:
        import json

        from tests.sealing.conftest import VECTORS

        vs = json.loads(VECTORS.read_text())["vectors"]
        metafunc.parametrize("vector", vs, ids=_ids(vs))


def test_there_are_vectors_for_every_scope(vectors):
    assert {v["scope"] for v in vectors["vectors"]} == set(crypto.SCOPES)
    assert len(vectors["vectors"]) == 13


def test_label_derived_from_scope_matches_vector(vector):
    assert crypto.label_for(vector["scope"], vector["namespace"], vector["name"]) == vector["label"].encode()


def test_vector_decrypts_to_plaintext(vector, vector_key):
    label = crypto.label_for(vector["scope"], vector["namespace"], vector["name"])
    plain = crypto.decrypt_value([vector_key], vector["ciphertext_b64"], label)
    assert plain == base64.b64decode(vector["plaintext_b64"])


def _wrong_labels(v):
    ns, name = v["namespace"], v["name"]
    right = v["label"].encode()
    candidates = {
        f"{ns}x/{name}".encode(),
        f"{ns}/{name}x".encode(),
        ns.encode() + b"-other",
        b"other",
        f"{ns}/{name}".encode(),
        ns.encode(),
        b"",
        b"default/db-credentials",
        b"x/" + name.encode(),
    }
    return sorted(c for c in candidates if c != right)


def test_vector_rejects_every_other_label(vector, vector_key):
    for label in _wrong_labels(vector):
        with pytest.raises(DecryptError, match="wrong key, wrong scope, or tampered"):
            crypto.decrypt_value([vector_key], vector["ciphertext_b64"], label)


def test_encryption_round_trips_with_the_controller_layout(vector, vector_key, vector_cert):
    plain = base64.b64decode(vector["plaintext_b64"])
    label = vector["label"].encode()
    first = crypto.encrypt_value(vector_cert.public_key, plain, label)
    second = crypto.encrypt_value(vector_cert.public_key, plain, label)
    assert first != second  # randomised
    for out in (first, second):
        assert "\n" not in out and "-" not in out and "_" not in out
        raw = base64.b64decode(out, validate=True)
        assert base64.b64encode(raw).decode() == out  # standard alphabet, padded
        assert raw[:2] == (512).to_bytes(2, "big")
        assert len(raw) == 2 + 512 + len(plain) + 16
        assert crypto.decrypt_value([vector_key], out, label) == plain


def test_our_ciphertext_is_bound_to_its_label(vector_key, vector_cert):
    out = crypto.encrypt_value(vector_cert.public_key, b"s3cret", b"ns/name")
    for label in (b"ns", b"", b"ns/other", b"other/name"):
        with pytest.raises(DecryptError):
            crypto.decrypt_value([vector_key], out, label)


def test_truncated_and_tampered_ciphertexts_fail(vectors, vector_key):
    v = vectors["vectors"][0]
    label = v["label"].encode()
    raw = base64.b64decode(v["ciphertext_b64"])
    cases = {
        "truncated tail": raw[:-1],
        "truncated to the RSA block": raw[: 2 + 512],
        "two bytes": raw[:2],
        "one byte": raw[:1],
        "flipped GCM byte": raw[:-20] + bytes([raw[-20] ^ 1]) + raw[-19:],
        "flipped tag byte": raw[:-1] + bytes([raw[-1] ^ 0x80]),
        "flipped RSA byte": raw[:100] + bytes([raw[100] ^ 1]) + raw[101:],
        "length prefix lies": (511).to_bytes(2, "big") + raw[2:],
    }
    for what, bad in cases.items():
        with pytest.raises(DecryptError) as exc:
            crypto.decrypt_value([vector_key], base64.b64encode(bad).decode(), label)
        assert "cannot decrypt" in str(exc.value) or "too short" in str(exc.value), what
    with pytest.raises(DecryptError, match="not valid base64"):
        crypto.decrypt_value([vector_key], v["ciphertext_b64"][:-3], label)


def test_wrong_key_fails_and_every_key_is_tried(vectors, vector_key, other_pair):
    v = vectors["vectors"][1]
    label = v["label"].encode()
    with pytest.raises(DecryptError, match="wrong key"):
        crypto.decrypt_value([other_pair[0]], v["ciphertext_b64"], label)
    plain = base64.b64decode(v["plaintext_b64"])
    assert crypto.decrypt_value([other_pair[0], vector_key], v["ciphertext_b64"], label) == plain


def test_unknown_scope_is_rejected():
    with pytest.raises(Exception, match="must be one of strict, namespace-wide, cluster-wide"):
        crypto.label_for("cluster", "ns", "n")


@pytest.mark.oracle
def test_openssl_reads_our_rsa_block(tmp_path, vectors, vector_cert):
    """An independent implementation: openssl pkeyutl recovers the session key with OAEP-SHA256 and the label."""
    import shutil
    import subprocess

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key = tmp_path / "key.pem"
    key.write_text(vectors["private_key_pem"])
    label = b"my-app/my-app-secrets"
    raw = base64.b64decode(crypto.encrypt_value(vector_cert.public_key, b"opaque \x00 bytes", label))
    (tmp_path / "rsa.bin").write_bytes(raw[2:514])
    out = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-decrypt",
            "-inkey",
            str(key),
            "-in",
            str(tmp_path / "rsa.bin"),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-pkeyopt",
            f"rsa_oaep_label:{label.hex()}",
        ],
        capture_output=True,
        check=True,
    )
    session_key = out.stdout
    assert len(session_key) == 32
    assert AESGCM(session_key).decrypt(bytes(12), raw[514:], None) == b"opaque \x00 bytes"
    wrong = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-decrypt",
            "-inkey",
            str(key),
            "-in",
            str(tmp_path / "rsa.bin"),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-pkeyopt",
            f"rsa_oaep_label:{b'my-app'.hex()}",
        ],
        capture_output=True,
    )
    assert wrong.returncode != 0

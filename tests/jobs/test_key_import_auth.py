"""Issue 18: `backup --import` authenticates what it imports, `backup --check` rejects files that
cannot hold a key, and neither shows a traceback on a forged file.

The offline PUBLIC key is committed, so anyone who can write the backup folder or bucket can make a
well-formed, decryptable key file with a key of their own. `--import` takes only keys whose
fingerprint the repository vouches for (a stack's certificate or a sealed entry's), unless
`--allow-unknown-key`.
"""

from __future__ import annotations

import base64
import json

import yaml

from ksecrets.sealing import crypto, keybackup
from ksecrets.sealing.certs import public_key_fingerprint
from ksecrets.sealing.keys import generate_key_and_cert, tls_secret_manifest
from tests.jobs.test_sealing_key_backup import OFFLINE_PASS, key_secrets
from tests.jobs.test_sealing_key_backup import offline as offline  # noqa: F401 (fixture)
from tests.jobs.test_sealing_key_backup import pairs as pairs  # noqa: F401 (fixture)
from tests.jobs.test_sealing_key_backup import repo as repo  # noqa: F401 (fixture)


def setup(repo, pairs, offline):  # noqa: F811
    priv = repo / "offline.key"
    priv.write_bytes(keybackup.encrypted_private_pem(offline, OFFLINE_PASS))
    out = repo / "backups"
    keybackup.save_new_keys(key_secrets(pairs)[2:], offline.public_key(), out)  # the stack's key
    return priv, out


def test_a_forged_key_file_is_not_imported(repo, pairs, offline, cli):  # noqa: F811
    priv, out = setup(repo, pairs, offline)
    attacker_key, attacker_cert = generate_key_and_cert(2048)
    forged = tls_secret_manifest(attacker_key, attacker_cert, name="sealed-secrets-keyzzzzz")
    (out / "sealed-secrets-keyzzzzz.kskey").write_bytes(keybackup.encrypt_key_secret(forged, offline.public_key()))
    evil = public_key_fingerprint(attacker_key.public_key())

    res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
    assert res.code == 0, res.err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(res.out)] == ["sealed-secrets-keyccccc"]
    assert res.err == (
        f"ksecrets: {out / 'sealed-secrets-keyzzzzz.kskey'}: skipped: key {evil} is not one the repository knows "
        f"(no stack certificate under {repo} and no sealed entry has it): anyone who can write the backup folder "
        "can make such a file; pass --allow-unknown-key to import it anyway\n"
    )
    assert base64.b64encode(b"PRIVATE KEY").decode()[:8] not in res.err
    # Only forged files: nothing is printed, exit 2.
    (out / "sealed-secrets-keyccccc.kskey").unlink()
    res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
    assert res.code == 2 and res.out == ""
    assert res.err.splitlines()[-1] == (
        f"ksecrets: {out}: no key the repository knows; nothing imported (--allow-unknown-key imports the others)"
    )
    # The user can still say so explicitly.
    res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--allow-unknown-key")
    assert res.code == 0 and [d["metadata"]["name"] for d in yaml.safe_load_all(res.out)] == ["sealed-secrets-keyzzzzz"]


def test_a_sealed_entrys_certificate_is_known_too(repo, pairs, offline, cli):  # noqa: F811
    priv, out = setup(repo, pairs, offline)
    keybackup.save_new_keys(key_secrets(pairs)[:1], offline.public_key(), out)
    fp_a = public_key_fingerprint(pairs[0][0].public_key())
    value = crypto.encrypt_value(pairs[0][1].public_key(), b"v", b"my-app/my-app-secrets")
    stack = repo / "Pulumi.s.yaml"
    stack.write_text(
        stack.read_text()
        + "  k8s-secrets:apps:\n    - name: my-app\n      namespace: my-app\n"
        + "  k8s-secrets:sealed:\n    - name: my-app-secrets\n      namespace: my-app\n"
        + f"      certificateFingerprint: {fp_a}\n      encryptedData:\n        K: {value}\n"
    )
    res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
    assert res.code == 0 and res.err == ""
    assert sorted(d["metadata"]["name"] for d in yaml.safe_load_all(res.out)) == [
        "sealed-secrets-keyaaaaa",
        "sealed-secrets-keyccccc",
    ]


def test_a_file_claiming_a_known_fingerprint_is_refused(repo, pairs, offline, cli):  # noqa: F811
    priv, out = setup(repo, pairs, offline)
    attacker_key, attacker_cert = generate_key_and_cert(2048)
    known = public_key_fingerprint(pairs[2][0].public_key())
    doc = json.loads(
        keybackup.encrypt_key_secret(tls_secret_manifest(attacker_key, attacker_cert), offline.public_key())
    )
    path = out / "sealed-secrets-keyccccc.kskey"
    # With its own certificate: the file contradicts itself, found without the offline key.
    path.write_text(json.dumps({**doc, "fingerprint": known}))
    res = cli("backup", "--check", str(out), "--root", str(repo))
    assert res.code == 2 and "the certificate is SHA256:" in res.err and f"not the file's {known}" in res.err
    # Without it: the decrypted key is not the one claimed.
    path.write_text(json.dumps({**doc, "fingerprint": known, "certificate": ""}))
    res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
    assert res.code == 2 and res.out == ""
    assert res.err == f"ksecrets: {path}: the decrypted key does not match the file's fingerprint\n"


def test_check_rejects_a_ciphertext_that_cannot_be_a_key(repo, pairs, offline, cli):  # noqa: F811
    priv, out = setup(repo, pairs, offline)
    path = out / "sealed-secrets-keyccccc.kskey"
    doc = json.loads(path.read_text())
    for ciphertext, problem in (
        ("AAAA", "ciphertext: is not an encrypted key (no RSA block of a 2048- to 16384-bit key)"),
        ("not base64!", "ciphertext: is not an encrypted key (not strict base64)"),
        (
            crypto.encrypt_value(offline.public_key(), b"{}", keybackup.LABEL),
            f"ciphertext: holds 2 bytes, too few for a key Secret (at least {keybackup.MIN_KEY_SECRET_BYTES})",
        ),
    ):
        path.write_text(json.dumps({**doc, "ciphertext": ciphertext}))
        res = cli("backup", "--check", str(out), "--root", str(repo))
        assert res.code == 2 and res.err.startswith(f"ksecrets: {path}: {problem}"), res.err
        assert res.err.count("\n") == 1


def test_a_plaintext_that_is_not_a_json_object_is_one_line(repo, pairs, offline, cli):  # noqa: F811
    priv, out = setup(repo, pairs, offline)
    path = out / "sealed-secrets-keyccccc.kskey"
    doc = json.loads(path.read_text())
    for plain in (b"x" * 2000, json.dumps(["a" * 2000]).encode(), json.dumps({"data": "a" * 2000}).encode()):
        ciphertext = crypto.encrypt_value(offline.public_key(), plain, keybackup.LABEL)
        path.write_text(json.dumps({**doc, "ciphertext": ciphertext}))
        res = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
        assert res.code == 2 and res.out == ""
        assert (
            res.err
            == f"ksecrets: {path}: the decrypted content is not a key Secret (not a JSON object with data: damaged or forged file)\n"
        )

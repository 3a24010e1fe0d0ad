"""Key lifecycle: keygen, backup / restore, unseal from a backup, reseal a whole stack, verify."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat

import pytest
import yaml

from ksecrets.config import load_stack
from ksecrets.errors import KsecretsError
from ksecrets.sealing import backup, crypto
from ksecrets.sealing.certs import load_certificate, public_key_fingerprint
from ksecrets.sealing.keys import KEY_LABEL, cert_pem, private_key_pem, self_signed_cert, tls_secret_manifest

from .conftest import PASSPHRASE, clean_env, err_line, ksecrets, ksecrets_process, past
from .test_stack_seal import STACK_FILE, seal

ENV = {"KSECRETS_BACKUP_PASSPHRASE": PASSPHRASE}


def key_list(*pairs) -> str:
    """What `kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` prints."""
    items = []
    for i, (key, cert) in enumerate(pairs):
        s = tls_secret_manifest(key, cert, name=f"sealed-secrets-key{i}abcd")
        s["metadata"].update(
            uid="7c1d",
            resourceVersion="123",
            creationTimestamp="2026-01-01T00:00:00Z",
            managedFields=[{"manager": "controller"}],
        )
        items.append(s)
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})


@pytest.fixture
def vector_pair(vectors):
    from cryptography import x509

    from ksecrets.sealing.keys import parse_private_key_pem

    return (
        parse_private_key_pem(vectors["private_key_pem"].encode(), "v"),
        x509.load_pem_x509_certificate(vectors["certificate_pem"].encode()),
    )


def test_backup_restore_round_trip(tmp_path, vector_pair, other_pair):
    out_file = tmp_path / "keys.ksbackup"
    out = ksecrets("backup", "--out", str(out_file), input=key_list(vector_pair, other_pair), env=clean_env(**ENV))
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    data = out_file.read_bytes()
    assert data.startswith(b"-----BEGIN KSECRETS SEALING KEY BACKUP-----\n")
    assert b"PRIVATE KEY" not in data and b"tls.key" not in data
    assert [p.name for p in tmp_path.iterdir()] == ["keys.ksbackup"]  # no plaintext or temp file left
    restored = ksecrets("restore", "--backup", str(out_file), env=clean_env(**ENV))
    assert restored.returncode == 0, restored.stderr
    docs = list(yaml.safe_load_all(restored.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["sealed-secrets-key0abcd", "sealed-secrets-key1abcd"]
    for doc, (key, cert) in zip(docs, (vector_pair, other_pair)):
        assert doc["type"] == "kubernetes.io/tls"
        assert doc["metadata"]["labels"] == {KEY_LABEL: "active"}
        assert set(doc["metadata"]) == {"name", "namespace", "labels"}  # uid, resourceVersion... dropped
        assert base64.b64decode(doc["data"]["tls.key"]) == private_key_pem(key)
        assert base64.b64decode(doc["data"]["tls.crt"]) == cert_pem(cert)


def test_wrong_passphrase_and_damaged_backups(tmp_path, vector_pair):
    out_file = tmp_path / "keys.ksbackup"
    assert ksecrets("backup", "--out", str(out_file), input=key_list(vector_pair), env=clean_env(**ENV)).returncode == 0
    bad = ksecrets("restore", "--backup", str(out_file), env=clean_env(KSECRETS_BACKUP_PASSPHRASE="not the passphrase"))
    assert bad.returncode == 2 and bad.stdout == b""
    assert err_line(bad) == f"ksecrets: {out_file}: wrong passphrase, or the backup is damaged"
    assert b"not the passphrase" not in bad.stderr
    lines = out_file.read_text().splitlines()
    body = base64.b64decode("".join(lines[1:-1]))
    tampered = tmp_path / "tampered"
    raw = body[:5] + bytes([body[5] - 1]) + body[6:]  # lower scrypt N in the header: authenticated, so it fails
    tampered.write_text(lines[0] + "\n" + base64.b64encode(raw).decode() + "\n" + lines[-1] + "\n")
    out = ksecrets("restore", "--backup", str(tampered), env=clean_env(**ENV))
    assert err_line(out) == f"ksecrets: {tampered}: wrong passphrase, or the backup is damaged"
    truncated = tmp_path / "truncated"
    truncated.write_text("\n".join(lines[:2]) + "\n")
    out = ksecrets("restore", "--backup", str(truncated), env=clean_env(**ENV))
    assert err_line(out) == f"ksecrets: {truncated}: not a ksecrets key backup (no BEGIN/END lines)"
    # An existing backup is never overwritten.
    out = ksecrets("backup", "--out", str(out_file), input=key_list(vector_pair), env=clean_env(**ENV))
    assert err_line(out) == f"ksecrets: {out_file}: already exists; choose another file (a backup is never overwritten)"


def test_backup_needs_a_passphrase_and_real_keys(tmp_path, vector_pair):
    target = tmp_path / "b"
    # A real process in a new session: no terminal to prompt on (the test is about that).
    out = ksecrets_process("backup", "--out", str(target), input=key_list(vector_pair), env=clean_env())
    assert err_line(out) == "ksecrets: no passphrase: set KSECRETS_BACKUP_PASSPHRASE or run on a terminal"
    out = ksecrets(
        "backup", "--out", str(target), input=key_list(vector_pair), env=clean_env(KSECRETS_BACKUP_PASSPHRASE="short")
    )
    assert err_line(out) == "ksecrets: KSECRETS_BACKUP_PASSPHRASE: use a passphrase of at least 12 characters"
    out = ksecrets(
        "backup",
        "--out",
        str(target),
        env=clean_env(**ENV),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: k}\ndata: {tls.crt: eA==}\n",
    )
    assert err_line(out) == "ksecrets: stdin: Secret k: has no data.tls.key"
    assert not target.exists()


def test_unseal_with_a_backup(tmp_path, vector_pair, cert_file):
    out_file = tmp_path / "keys.ksbackup"
    ksecrets("backup", "--out", str(out_file), input=key_list(vector_pair), env=clean_env(**ENV))
    sealed = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {K: v4lue}\n",
    )
    out = ksecrets("unseal", "--backup", str(out_file), input=sealed.stdout, env=clean_env(**ENV))
    assert out.returncode == 0, out.stderr
    assert base64.b64decode(json.loads(out.stdout)["data"]["K"]) == b"v4lue"
    # The key Secrets themselves work as --recovery-private-key too (as with kubeseal).
    keys_yaml = tmp_path / "keys.yaml"
    keys_yaml.write_text(key_list(vector_pair))
    out = ksecrets("unseal", "--recovery-private-key", str(keys_yaml), input=sealed.stdout)
    assert out.returncode == 0


def test_keygen_writes_cert_and_encrypted_key_only(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Pulumi.staging.yaml").write_text(STACK_FILE.replace("    certificate: certs/staging.pem\n", ""))
    backup_file = tmp_path / "safe" / "staging.ksbackup"
    out = ksecrets(
        "keygen",
        "--stack",
        "staging",
        "--backup-file",
        str(backup_file),
        "--print-secret",
        "--root",
        str(root),
        env=clean_env(**ENV),
    )
    assert out.returncode == 0, out.stderr
    cert = load_certificate(root / "certs" / "staging.pem")
    manifest = yaml.safe_load(out.stdout)
    assert manifest["type"] == "kubernetes.io/tls" and manifest["metadata"]["namespace"] == "kube-system"
    assert manifest["metadata"]["labels"] == {KEY_LABEL: "active"}
    from ksecrets.sealing.keys import parse_private_key_pem

    key = parse_private_key_pem(base64.b64decode(manifest["data"]["tls.key"]), "m")
    assert key.key_size == 4096 and public_key_fingerprint(key.public_key()) == cert.fingerprint
    assert base64.b64decode(manifest["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    # Only public material in the repository; the key lives in the 0600 backup.
    for p in root.rglob("*"):
        assert b"PRIVATE KEY" not in p.read_bytes() if p.is_file() else True
    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600
    secrets_ = backup.read_backup(backup_file, PASSPHRASE)
    assert secrets_[0]["data"]["tls.key"] == manifest["data"]["tls.key"]
    # The stack file now names the certificate, comments kept.
    text = (root / "Pulumi.staging.yaml").read_text()
    assert "    certificate: certs/staging.pem\n" in text and "# the demo app" in text
    assert load_stack("staging", root).sealed_secrets.certificate == "certs/staging.pem"
    assert (
        out.stderr.decode().splitlines()[0]
        == f"certs/staging.pem: {cert.fingerprint}, expires {cert.not_after:%Y-%m-%d}"
    )
    # A second keygen refuses to replace the certificate.
    again = ksecrets(
        "keygen",
        "--stack",
        "staging",
        "--backup-file",
        str(tmp_path / "other"),
        "--root",
        str(root),
        env=clean_env(**ENV),
    )
    assert err_line(again) == (
        "ksecrets: certs/staging.pem: already exists; pass --force to replace it (then `ksecrets reseal` the stack)"
    )


def test_reseal_moves_every_value_to_the_new_certificate(tmp_path, vectors, other_pair, key_file, other_cert_file):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Pulumi.staging.yaml").write_text(STACK_FILE)
    (root / "certs").mkdir()
    (root / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    (root / ".env").write_text("A=one\nB=two\n")
    assert seal(root, "--from-env-file", ".env").returncode == 0
    assert (
        ksecrets(
            "seal",
            "--stack",
            "staging",
            "--name",
            "shared",
            "--namespace",
            "team",
            "--scope",
            "namespace-wide",
            "--from-literal",
            "X=ex",
            cwd=root,
            env=clean_env(),
        ).returncode
        == 0
    )
    new_cert = root / "certs" / "staging-2027.pem"
    new_cert.write_bytes(other_cert_file.read_bytes())
    # The wrong old key: one line, nothing written.
    snapshot = (root / "Pulumi.staging.yaml").read_bytes()
    bad = ksecrets(
        "reseal",
        "--stack",
        "staging",
        "--recovery-private-key",
        str(tmp_path / "other-key.pem"),
        "--cert",
        str(new_cert),
        "--root",
        str(root),
    )
    assert bad.returncode == 2
    (tmp_path / "other-key.pem").write_bytes(private_key_pem(other_pair[0]))
    bad = ksecrets(
        "reseal",
        "--stack",
        "staging",
        "--recovery-private-key",
        str(tmp_path / "other-key.pem"),
        "--cert",
        str(new_cert),
        "--root",
        str(root),
    )
    assert err_line(bad) == (
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed[0].encryptedData.A: cannot decrypt: "
        "wrong key, wrong scope, or tampered ciphertext"
    )
    assert (root / "Pulumi.staging.yaml").read_bytes() == snapshot

    out = ksecrets(
        "reseal",
        "--stack",
        "staging",
        "--recovery-private-key",
        str(key_file),
        "--cert",
        str(new_cert),
        "--set-certificate",
        "--root",
        str(root),
        env=clean_env(KSECRETS_SEAL_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    )
    assert out.returncode == 0, out.stderr
    cfg = load_stack("staging", root)
    new_fp = public_key_fingerprint(other_pair[0].public_key())
    assert cfg.sealed_secrets.certificate == "certs/staging-2027.pem"
    assert [e.certificate_fingerprint for e in cfg.sealed] == [new_fp, new_fp]
    a = cfg.sealed_entry("my-app", "my-app-secrets")
    assert crypto.decrypt_value([other_pair[0]], dict(a.encrypted_data)["B"], b"my-app/my-app-secrets") == b"two"
    x = cfg.sealed_entry("team", "shared")
    assert x.scope == "namespace-wide"
    assert crypto.decrypt_value([other_pair[0]], dict(x.encrypted_data)["X"], b"team") == b"ex"
    assert len(a.digests) == 2  # recomputed for the new certificate
    # Churn-free after the reseal: same values, same bytes.
    before = (root / "Pulumi.staging.yaml").read_bytes()
    assert seal(root, "--from-env-file", ".env", key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").returncode == 0
    assert (root / "Pulumi.staging.yaml").read_bytes() == before
    # verify is happy now
    ok = ksecrets("verify", "--root", str(root))
    assert ok.returncode == 0, ok.stdout


def test_verify_reports_stale_entries_and_expiry(tmp_path, vectors, vector_key, other_cert_file):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Pulumi.staging.yaml").write_text(STACK_FILE)
    (root / "certs").mkdir()
    (root / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    assert seal(root, "--from-literal", "A=1").returncode == 0
    fp = vectors["public_key_fingerprint"]
    ok = ksecrets("verify", "--root", str(root))
    assert ok.returncode == 0
    lines = ok.stdout.decode().splitlines()
    assert lines[0].startswith(f"staging: certificate certs/staging.pem {fp} expires 2036-11-25 02:49 UTC (")
    assert lines[1] == "staging: 1 sealed Secret(s), all sealed for the current certificate"

    # The controller renewed its key: the stack now has a new certificate, the entry is stale.
    (root / "certs" / "staging.pem").write_bytes(other_cert_file.read_bytes())
    new_fp = load_certificate(other_cert_file).fingerprint
    stale = ksecrets("verify", "--stack", "staging", "--root", str(root))
    assert stale.returncode == 1
    assert stale.stdout.decode().splitlines()[1] == (
        f"staging: STALE: Pulumi.staging.yaml: k8s-secrets:sealed[0] my-app/my-app-secrets: sealed for {fp}, "
        f"not the current {new_fp}"
    )
    assert err_line(stale) == "ksecrets: verify: 1 problem(s) found"

    # Expiring within 30 days: a warning, exit 0.
    soon = self_signed_cert(vector_key, dt.timedelta(days=40), now=past(20))
    (root / "certs" / "staging.pem").write_bytes(cert_pem(soon))
    warn = ksecrets("verify", "--root", str(root))
    assert warn.returncode == 0
    assert (
        f"staging: warning: certificate certs/staging.pem expires within 30 days ({soon.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
        in warn.stdout.decode().splitlines()
    )
    # Expired: a failure.
    old = self_signed_cert(vector_key, dt.timedelta(days=1), now=past(3))
    (root / "certs" / "staging.pem").write_bytes(cert_pem(old))
    bad = ksecrets("verify", "--root", str(root))
    assert bad.returncode == 1
    assert (
        f"staging: FAIL: certificate certs/staging.pem expired on {old.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        in bad.stdout.decode().splitlines()
    )


def test_verify_flags_a_truncated_ciphertext(tmp_path, vectors):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "Pulumi.staging.yaml").write_text(STACK_FILE)
    (root / "certs").mkdir()
    (root / "certs" / "staging.pem").write_text(vectors["certificate_pem"])
    assert seal(root, "--from-literal", "A=1").returncode == 0
    text = (root / "Pulumi.staging.yaml").read_text()
    value = dict(load_stack("staging", root).sealed[0].encrypted_data)["A"]
    (root / "Pulumi.staging.yaml").write_text(text.replace(value, value[:400]))
    out = ksecrets("verify", "--root", str(root))
    # Not the kubeseal format: every reader of the stack file refuses it, naming file and key.
    assert out.returncode == 2
    assert out.stderr.decode() == (
        "ksecrets: Pulumi.staging.yaml: sealed[0].encryptedData.A: is not sealed ciphertext "
        "(shorter than its RSA block and AES-GCM tag: truncated?)\n"
    )
    assert value[:400] not in out.stderr.decode() + out.stdout.decode()


def test_backup_format_unit(vector_pair):
    blob = backup.encrypt_backup(b"plain", "pass phrase 123", log2_n=14)
    assert backup.decrypt_backup(blob, "pass phrase 123", "f") == b"plain"
    with pytest.raises(KsecretsError, match="wrong passphrase"):
        backup.decrypt_backup(blob, "pass phrase 124", "f")


def test_the_repository_verifies():
    """What CI runs: every stack's sealed values match its committed certificate, none expired."""
    from .conftest import ROOT

    out = ksecrets("verify", "--root", str(ROOT))
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert "staging: certificate certs/staging.pem SHA256:" in out.stdout.decode()

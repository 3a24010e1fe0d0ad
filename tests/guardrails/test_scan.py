"""`ksecrets scan`: each rule finds what it must (file and exact line), lets through what it must
not flag, honours the allow markers, and never prints a value."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ksecrets import scan as s
from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.sealing import keys
from tests.conftest import ksecrets_in_process

REPO = Path(__file__).resolve().parents[2]
CANARY = "cAnArY-7f3d9e2b41-secret"  # an env value that must never be printed


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key, fmt, encryption=serialization.NoEncryption()) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`ksecrets scan ARGS` in-process (the command's exit codes and output are the subject here;
    tests/cli/test_startup.py covers the process around it)."""
    return ksecrets_in_process("scan", *args, cwd=cwd or REPO)


def found(path: Path, data: bytes, **kw) -> list[str]:
    path.write_bytes(data)
    return [str(f) for f in s.scan_files([str(path)], **kw)]


# --- private keys -------------------------------------------------------------------------------


def test_pem_private_keys_every_format_found_at_their_line(tmp_path, rsa_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    data = (
        b"notes\n\n"
        + pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
        + b"middle\n"
        + pem(ec_key, serialization.PrivateFormat.PKCS8)
        + pem(ec_key, serialization.PrivateFormat.OpenSSH)
    )
    lines = data.split(b"\n")
    begins = [i + 1 for i, line in enumerate(lines) if line.startswith(b"-----BEGIN")]
    assert len(begins) == 3
    target = tmp_path / "keys.txt"
    assert found(target, data) == [f"{target.as_posix()}:{n}: private-key" for n in begins]


def test_pem_findings_name_the_path_as_given(tmp_path, rsa_key):
    target = tmp_path / "id_rsa"
    target.write_bytes(b"# a key\n" + pem(rsa_key, serialization.PrivateFormat.PKCS8))
    assert [str(f) for f in s.scan_files([str(target)])] == [f"{target.as_posix()}:2: private-key"]


def test_encrypted_keys_and_certificates_pass(tmp_path, rsa_key):
    key, cert = keys.generate_key_and_cert(key_bits=2048)
    data = (
        pem(rsa_key, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw-123456"))
        + keys.cert_pem(cert)
        + base64.b64encode(keys.cert_pem(cert))
        + b"\n"
        + b"-----BEGIN PUBLIC KEY-----\n"
    )
    assert b"ENCRYPTED PRIVATE KEY" in data
    assert s.scan_files([str(_write(tmp_path / "ok.pem", data))]) == []


def test_legacy_encrypted_key_header_only_literal_and_json_escaped_key(tmp_path, rsa_key):
    legacy = pem(
        rsa_key, serialization.PrivateFormat.TraditionalOpenSSL, serialization.BestAvailableEncryption(b"pw-123456")
    )
    assert b"Proc-Type: 4,ENCRYPTED" in legacy
    code = b'assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----")\n'  # a header in code is no key
    assert s.scan_files([str(_write(tmp_path / "ok.txt", legacy + code))]) == []
    escaped = json.dumps({"note": "x", "key": pem(rsa_key, serialization.PrivateFormat.PKCS8).decode()}, indent=1)
    target = _write(tmp_path / "sa.json", escaped.encode())
    assert [str(f) for f in s.scan_files([str(target)])] == [f"{target.as_posix()}:3: private-key"]


def test_base64_encoded_private_key_is_found(tmp_path, rsa_key):
    """A Secret's `tls.key` is the base64 of the whole PEM: it starts with base64("-----BEGIN ")."""
    raw = pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    target = _write(tmp_path / "blob.txt", b"tls.key: " + base64.b64encode(raw) + b"\n")
    assert [str(f) for f in s.scan_files([str(target)])] == [f"{target.as_posix()}:1: private-key (base64-encoded)"]


# --- Secrets in YAML / JSON ---------------------------------------------------------------------

MULTI_DOC = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  setting: "on"
---
apiVersion: v1
kind: Secret
metadata:
  name: leaked
type: Opaque
stringData:
  password: not-really
---
apiVersion: v1
kind: Secret
metadata:
  name: empty
data: {}
stringData:
  placeholder: ""
---
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: sealed
spec:
  encryptedData:
    password: AgBy3i4OJSWK+PiTySYZZA==
---
apiVersion: v1
kind: Secret
metadata:
  name: both
data:
  a: YQ==
"""


def test_secrets_with_data_found_per_document(tmp_path):
    target = _write(tmp_path / "all.yaml", MULTI_DOC.encode())
    p = target.as_posix()
    assert [str(f) for f in s.scan_files([str(target)])] == [
        f"{p}:13: secret-data (v1 Secret with stringData)",
        f"{p}:36: secret-data (v1 Secret with data)",
    ]


def test_docs_showing_a_secret_are_not_manifests_but_suffixless_manifests_are(tmp_path):
    # YAML/JSON files, and files that start like a manifest, are parsed; a README showing one is not.
    doc = "# Secrets\n\nNever commit this:\n\n```yaml\n" + MULTI_DOC + "```\n"
    assert s.scan_files([str(_write(tmp_path / "README.md", doc.encode()))]) == []
    bak = _write(tmp_path / "secrets.bak", ("# saved\n---\n" + MULTI_DOC).encode())
    assert [f.line for f in s.scan_files([str(bak)])] == [15, 38]


def test_key_backups_encrypted_pass_plaintext_fails(tmp_path):
    from ksecrets.sealing import backup

    key, cert = keys.generate_key_and_cert(key_bits=2048)
    plaintext = backup.backup_plaintext(
        {"apiVersion": "v1", "kind": "List", "items": [keys.tls_secret_manifest(key, cert)]}, "test"
    )
    encrypted = _write(tmp_path / "keys.ksbackup", backup.encrypt_backup(plaintext, "a passphrase 123", log2_n=10))
    assert s.scan_files([str(encrypted)]) == []
    # The same List unencrypted, saved without a suffix: the JSON is parsed, the key is found.
    raw = _write(tmp_path / "keys.bak", plaintext)
    assert [(f.line, f.kind) for f in s.scan_files([str(raw)])] == [(1, "private-key"), (1, "unencrypted-key-backup")]
    # Armour around something that is not the encrypted format.
    fake = (
        b"-----BEGIN KSECRETS SEALING KEY BACKUP-----\n"
        + base64.b64encode(plaintext)
        + b"\n-----END KSECRETS SEALING KEY BACKUP-----\n"
    )
    target = _write(tmp_path / "fake.ksbackup", fake)
    assert [str(f) for f in s.scan_files([str(target)])] == [
        f"{target.as_posix()}:1: unencrypted-key-backup (backup armour without the encrypted header)"
    ]


def test_json_secret_and_list_items(tmp_path):
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}},
        ],
    }
    target = _write(tmp_path / "list.json", json.dumps(doc, indent=2).encode())
    text = json.dumps(doc, indent=2).split("\n")
    line = [i + 1 for i, t in enumerate(text) if t == '      "data": {'][1]  # the Secret's, not the ConfigMap's
    assert [str(f) for f in s.scan_files([str(target)])] == [
        f"{target.as_posix()}:{line}: secret-data (v1 Secret with data)"
    ]


def test_unparseable_yaml_falls_back_to_the_line_heuristic(tmp_path):
    text = (
        '{{- if .Values.enabled }}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ include "n" . }}\n'
        "data:\n  token: {{ .Values.token | b64enc }}\n{{- end }}\n"
    )
    target = _write(tmp_path / "template.yaml", text.encode())
    assert [str(f) for f in s.scan_files([str(target)])] == [
        f"{target.as_posix()}:6: secret-data (v1 Secret with data; the file does not parse)"
    ]


def test_plaintext_key_backup_is_an_unencrypted_key_backup(tmp_path):
    """What `kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` prints."""
    key, cert = keys.generate_key_and_cert(key_bits=2048)
    backup = {"apiVersion": "v1", "kind": "List", "items": [keys.tls_secret_manifest(key, cert)]}
    text = yamlio.dump(backup)
    target = _write(tmp_path / "sealing-keys.yaml", text.encode())
    lines = text.split("\n")
    data_line = lines.index("  data:") + 1
    key_line = next(i for i, line in enumerate(lines) if line.lstrip().startswith("tls.key:")) + 1
    assert [str(f) for f in s.scan_files([str(target)])] == [
        f"{target.as_posix()}:{data_line}: unencrypted-key-backup (sealing key Secret with its private key)",
        f"{target.as_posix()}:{key_line}: private-key (base64-encoded)",
    ]


# --- env values ---------------------------------------------------------------------------------


def test_env_values_raw_and_base64_are_found_by_key_never_shown(tmp_path):
    env = _write(tmp_path / ".env.staging", f"API_KEY={CANARY}\nDEBUG=1\n# comment\n".encode())
    values, short = s.load_env_values([str(env)])
    assert [(v.key, v.source) for v in values] == [("API_KEY", str(env))]
    assert short == 1  # DEBUG=1 is too short to search
    assert CANARY not in repr(values)
    leak = _write(
        tmp_path / "config.txt",
        f"a\nurl=https://x/?k={CANARY}\nb\nencoded: {base64.b64encode(CANARY.encode()).decode()}\n".encode(),
    )
    got = [str(f) for f in s.scan_files([str(leak), str(env)], values)]
    assert got == [
        f"{leak.as_posix()}:2: env-value (value of API_KEY from {env})",
        f"{leak.as_posix()}:4: env-value (value of API_KEY from {env}, base64)",
        f"{env.as_posix()}:1: env-value (the env file itself)",  # named for scanning: it is being committed
    ]


def test_env_value_is_an_exact_byte_match(tmp_path):
    env = _write(tmp_path / "e.env", f"TOKEN={CANARY}\n".encode())
    values, _ = s.load_env_values([str(env)])
    near = _write(tmp_path / "near.txt", (CANARY.upper() + "\n" + CANARY[:-1] + "\n").encode())
    assert s.scan_files([str(near)], values) == []


def test_bad_env_file_is_bad_input_without_the_value(tmp_path):
    env = _write(tmp_path / "bad.env", f"GOOD=fine-value\n{CANARY}\n".encode())  # a line with no '=' ...
    bad = _write(tmp_path / "bad2.env", f"1{CANARY}=x\n".encode())  # ... and an invalid key
    with pytest.raises(KsecretsError) as err:  # kubectl would read a bare name from the environment; refused
        s.load_env_values([str(env)])
    assert str(err.value) == (
        f"{env}: line 2: no '=' (kubectl would make the line's text a key and read its value "
        "from the environment); write KEY=VALUE"
    )
    assert CANARY not in str(err.value)
    with pytest.raises(KsecretsError) as err:
        s.load_env_values([str(bad)])
    assert (
        str(err.value) == f"{bad}: line 1: invalid key name: a valid environment variable name consists of "
        "letters, digits, '_', '-' or '.' and does not start with a digit"
    )
    assert CANARY not in str(err.value)


# --- allow markers ------------------------------------------------------------------------------


def test_inline_allow_on_the_line_or_the_line_above(tmp_path, rsa_key):
    body = pem(rsa_key, serialization.PrivateFormat.PKCS8)
    above = _write(tmp_path / "above.pem", b"# ksecrets: allow private-key\n" + body)
    other_kind = _write(tmp_path / "other.pem", b"# ksecrets: allow secret-data\n" + body)
    too_far = _write(tmp_path / "far.pem", b"# ksecrets: allow private-key\n\n" + body)
    assert s.scan_files([str(above)]) == []
    assert [str(f) for f in s.scan_files([str(other_kind), str(too_far)])] == [
        f"{other_kind.as_posix()}:2: private-key",
        f"{too_far.as_posix()}:3: private-key",
    ]
    same_line = _write(
        tmp_path / "s.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:  # ksecrets: allow secret-data\n  a: YQ==\n",
    )
    assert s.scan_files([str(same_line)]) == []


def test_allow_file_marker_covers_only_its_kinds(tmp_path, rsa_key):
    text = (
        b"# ksecrets: allow-file secret-data\napiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n"
        b"  tls.key: " + base64.b64encode(pem(rsa_key, serialization.PrivateFormat.PKCS8)) + b"\n"
    )
    target = _write(tmp_path / "f.yaml", text)
    assert [str(f) for f in s.scan_files([str(target)])] == [f"{target.as_posix()}:6: private-key (base64-encoded)"]


def test_ignore_file_globs_and_kinds(tmp_path, rsa_key):
    (tmp_path / "tests" / "vectors").mkdir(parents=True)
    key_file = _write(tmp_path / "tests" / "vectors" / "key.pem", pem(rsa_key, serialization.PrivateFormat.PKCS8))
    secret = _write(
        tmp_path / "tests" / "vectors" / "s.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  a: YQ==\n",
    )
    elsewhere = _write(tmp_path / "key.pem", pem(rsa_key, serialization.PrivateFormat.PKCS8))
    rules = s.parse_ignore_file("# fixtures\ntests/vectors/*.pem private-key\n", "ign")
    got = [str(f) for f in s.scan_files([str(key_file), str(secret), str(elsewhere)], ignore=rules, root=str(tmp_path))]
    assert got == [
        f"{secret.as_posix()}:4: secret-data (v1 Secret with data)",
        f"{elsewhere.as_posix()}:1: private-key",
    ]
    everything = s.parse_ignore_file("tests/\n", "ign")
    assert [str(f) for f in s.scan_files([str(key_file), str(secret)], ignore=everything, root=str(tmp_path))] == []
    with pytest.raises(KsecretsError, match=r"^ign: line 1: unknown finding kind 'private-keys'"):
        s.parse_ignore_file("x private-keys\n", "ign")


# --- the command --------------------------------------------------------------------------------


def test_cli_exit_codes_and_output_never_hold_the_value(tmp_path, rsa_key):
    env = _write(tmp_path / ".env", f"PASSWORD={CANARY}\n".encode())
    clean = _write(tmp_path / "clean.txt", b"nothing here\n")
    leak = _write(tmp_path / "leak.yaml", f"password: {CANARY}\n".encode())

    ok = run_cli(str(clean), "--env-file", str(env), cwd=tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")

    bad = run_cli(str(clean), str(leak), str(env), "--env-file", str(env), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout == (
        f"{leak.as_posix()}:1: env-value (value of PASSWORD from {env})\n"
        f"{env.as_posix()}:1: env-value (the env file itself)\n"
    )
    assert bad.stderr.startswith("ksecrets: scan: 2 finding(s) in 2 file(s);")
    assert CANARY not in bad.stdout + bad.stderr

    missing = run_cli(str(tmp_path / "nope"), cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"ksecrets: {tmp_path / 'nope'}: no such file or directory\n"

    bad_env = _write(tmp_path / "bad.env", f"9{CANARY}=1\n".encode())
    err = run_cli(str(clean), "--env-file", str(bad_env), cwd=tmp_path)
    assert err.returncode == 2 and err.stdout == ""
    assert err.stderr.startswith(f"ksecrets: {bad_env}: line 1: invalid key name")
    assert CANARY not in err.stderr


def test_no_paths_scans_what_git_tracks(tmp_path, rsa_key):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    _write(tmp_path / "tracked.pem", b"x\n" + pem(rsa_key, serialization.PrivateFormat.PKCS8))
    _write(tmp_path / "untracked.pem", pem(rsa_key, serialization.PrivateFormat.PKCS8))
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.pem"], check=True)
    result = run_cli(cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "tracked.pem:2: private-key\n")
    (tmp_path / ".ksecrets-scan-ignore").write_text("tracked.pem private-key\n")
    assert run_cli(cwd=tmp_path).returncode == 0
    outside = run_cli(cwd=tmp_path.parent / ".") if not (tmp_path.parent / ".git").exists() else None
    if outside is not None:
        assert outside.returncode == 2 and "not a git work tree" in outside.stderr


def test_env_glob_finds_local_env_files_and_walks_skip_them(tmp_path):
    (tmp_path / "src").mkdir()
    _write(tmp_path / ".env.staging", f"API_KEY={CANARY}\n".encode())
    _write(tmp_path / "src" / "app.py", f'KEY = "{CANARY}"\n'.encode())
    result = run_cli(".", "--env-glob", ".env*", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "src/app.py:1: env-value (value of API_KEY from .env.staging)\n")
    # No env file matching is not an error: the hook runs on machines without one.
    assert run_cli("src", "--env-glob", ".env.production*", cwd=tmp_path).returncode == 0
    # Named explicitly (as a pre-commit hook names a staged file), the env file is itself a finding.
    staged = run_cli(".env.staging", "--env-glob", ".env*", cwd=tmp_path)
    assert (staged.returncode, staged.stdout) == (1, ".env.staging:1: env-value (the env file itself)\n")
    assert CANARY not in result.stdout + result.stderr + staged.stdout + staged.stderr
    # A committed template is no env file: its placeholders are not searched, and it may be staged.
    _write(tmp_path / ".env.example", b"API_KEY=change-me-please\n")
    _write(tmp_path / "src" / "docs.txt", b"set API_KEY=change-me-please\n")
    assert run_cli(".env.example", "src/docs.txt", "--env-glob", ".env*", cwd=tmp_path).returncode == 0


def test_directories_are_walked_skipping_tool_dirs(tmp_path, rsa_key):
    _write_mk(tmp_path / "a" / "b" / "k.pem", pem(rsa_key, serialization.PrivateFormat.PKCS8))
    _write_mk(tmp_path / "a" / "node_modules" / "k.pem", pem(rsa_key, serialization.PrivateFormat.PKCS8))
    _write_mk(tmp_path / "a" / "bin.dat", b"\0" + pem(rsa_key, serialization.PrivateFormat.PKCS8))
    assert [str(f) for f in s.scan([str(tmp_path / "a")], root=str(tmp_path))[0]] == [
        f"{(tmp_path / 'a' / 'b' / 'k.pem').as_posix()}:1: private-key"
    ]


def test_this_repository_is_clean():
    """The guard on ourselves: what git tracks here holds no secret material (fixtures allowed)."""
    result = run_cli(cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_fixture_is_allowed_by_its_marker():
    fixture = Path(__file__).parent / "fixtures" / "allowed-secret.yaml"
    assert s.scan_files([str(fixture)]) == []
    # Without the marker the same bytes are findings: the allow is what lets it through.
    stripped = b"\n".join(line for line in fixture.read_bytes().split(b"\n") if b"ksecrets:" not in line)
    assert [f.kind for f in s.scan_bytes("copy.yaml", stripped)] == ["secret-data", "private-key"]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_mk(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write(path, data)

"""`ksecrets seal` / `unseal` as a kubeseal drop-in, end to end through the real command line."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
import yaml

from ksecrets.sealing import crypto

from .conftest import clean_env, err_line, ksecrets

KUBECTL = shutil.which("kubectl")
SECRET = "hunter2-s3cr3t"


def kubectl_secret(tmp_path, *args: str, fmt: str = "yaml") -> bytes:
    out = subprocess.run(
        [KUBECTL, "create", "secret", "generic", *args, "--dry-run=client", "-o", fmt],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    )
    return out.stdout


@pytest.mark.oracle
@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_kubectl_secret_seals_and_unseals_to_the_same_data(tmp_path, cert_file, key_file, fmt):
    env = tmp_path / ".env.production"
    env.write_bytes(b"DATABASE_URL=postgres://app:" + SECRET.encode() + b'@db/app\nAPI_KEY="quoted"\r\n')
    made = kubectl_secret(tmp_path, "app-secrets", "-n", "prod", f"--from-env-file={env}", fmt=fmt)
    sealed = ksecrets("seal", "--cert", str(cert_file), "-o", fmt, input=made)
    assert sealed.returncode == 0, sealed.stderr
    assert SECRET.encode() not in sealed.stdout and sealed.stderr == b""
    obj = yaml.safe_load(sealed.stdout)
    assert obj["metadata"]["name"] == "app-secrets" and obj["metadata"]["namespace"] == "prod"
    back = ksecrets("unseal", "--recovery-private-key", str(key_file), "-o", "json", input=sealed.stdout)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["data"] == yaml.safe_load(made)["data"]


def test_default_output_is_json_like_kubeseal(cert_file):
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        input='{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"b"},"stringData":{"k":"v"}}',
    )
    assert out.returncode == 0
    assert json.loads(out.stdout)["kind"] == "SealedSecret"


def test_cert_from_environment_variable(cert_file):
    out = ksecrets(
        "seal",
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: v}\n",
        env=clean_env(SEALED_SECRETS_CERT=str(cert_file)),
    )
    assert out.returncode == 0, out.stderr


def test_scope_flag_and_annotations(cert_file, vector_key):
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  annotations:\n"
        '    sealedsecrets.bitnami.com/cluster-wide: "true"\nstringData: {k: v}\n'
    )
    out = ksecrets("seal", "--cert", str(cert_file), "-o", "yaml", input=text)
    assert out.returncode == 0, out.stderr  # cluster-wide needs no namespace
    obj = yaml.safe_load(out.stdout)
    assert obj["metadata"]["annotations"]["sealedsecrets.bitnami.com/cluster-wide"] == "true"
    assert crypto.decrypt_value([vector_key], obj["spec"]["encryptedData"]["k"], b"") == b"v"
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "--scope",
        "namespace-wide",
        "-o",
        "yaml",
        input=text.replace("  name: a\n", "  name: a\n  namespace: ns\n"),
    )
    obj = yaml.safe_load(out.stdout)
    assert crypto.decrypt_value([vector_key], obj["spec"]["encryptedData"]["k"], b"ns") == b"v"


def test_raw_prints_one_value(tmp_path, cert_file, vector_key):
    value = tmp_path / "v"
    value.write_bytes(SECRET.encode())
    out = ksecrets(
        "seal", "--raw", "--cert", str(cert_file), "--name", "n", "--namespace", "ns", "--from-file", str(value)
    )
    assert out.returncode == 0 and not out.stdout.endswith(b"\n")  # kubeseal prints no newline
    assert crypto.decrypt_value([vector_key], out.stdout.decode(), b"ns/n") == SECRET.encode()
    out = ksecrets("seal", "--raw", "--cert", str(cert_file), "--scope", "cluster-wide", "--from-file", str(value))
    assert crypto.decrypt_value([vector_key], out.stdout.decode(), b"") == SECRET.encode()
    bad = ksecrets("seal", "--raw", "--cert", str(cert_file), "--namespace", "ns", "--from-file", str(value))
    assert bad.returncode == 2 and err_line(bad) == "ksecrets: --raw with --scope strict needs --name"


def test_merge_into_changes_only_given_keys_atomically(tmp_path, cert_file, vector_key):
    first = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "-o",
        "yaml",
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {A: one, B: two}\n",
    )
    target = tmp_path / "sealed.yaml"
    target.write_bytes(first.stdout)
    before = yaml.safe_load(first.stdout)
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "--merge-into",
        str(target),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: ignored}\nstringData: {B: deux, C: trois}\n",
    )
    assert out.returncode == 0, out.stderr
    after = yaml.safe_load(target.read_text())
    assert after["spec"]["encryptedData"]["A"] == before["spec"]["encryptedData"]["A"]
    assert after["spec"]["encryptedData"]["B"] != before["spec"]["encryptedData"]["B"]
    assert crypto.decrypt_value([vector_key], after["spec"]["encryptedData"]["C"], b"b/a") == b"trois"
    assert target.read_text().startswith("apiVersion:")  # stays YAML
    # A failing merge (wrong scope) leaves the file byte-identical.
    snapshot = target.read_bytes()
    bad = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "--merge-into",
        str(target),
        "--scope",
        "cluster-wide",
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {A: x}\n",
    )
    assert bad.returncode == 2
    assert err_line(bad) == (
        f"ksecrets: {target}: is strict-scoped but the new values are cluster-wide-scoped; pass --scope strict"
    )
    assert target.read_bytes() == snapshot
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


STRICT = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  namespace: b\n"


@pytest.mark.parametrize(
    "stdin, message",
    [
        (
            STRICT + 'stringData:\n  A: "' + SECRET + "\n",
            "ksecrets: stdin: line 8: invalid YAML: found unexpected end of stream",
        ),
        (
            '{"apiVersion":"v1","kind":"Secret","stringData":{"A":"' + SECRET + '",}}',
            "ksecrets: stdin: line 1: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        # (A Secret without a namespace is no longer refused: it takes kubectl's, as with kubeseal;
        # tests/sealing/test_hostile_input.py.) Names the API server would refuse are refused here.
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: App_Secrets\n  namespace: b\nstringData:\n  A: "
            + SECRET
            + "\n",
            'ksecrets: stdin: metadata.name: "App_Secrets" is not a valid Kubernetes name',
        ),
        (
            STRICT + "stringData:\n  A/B: " + SECRET + "\n",
            "ksecrets: stdin: stringData: invalid key name 'A/B': a valid key consists of letters, digits, '-', '_' or '.'",
        ),
        (
            STRICT + "stringData:\n  A: " + SECRET + "\n  A: again\n",
            "ksecrets: stdin: line 8: invalid YAML: duplicate key 'A'",
        ),
        (
            STRICT + "stringData:\n  A: " + SECRET + "x" * (1 << 20) + "\n",
            f"ksecrets: stdin: data.A: value is {len(SECRET) + (1 << 20)} bytes, over Kubernetes' 1 MiB Secret limit",
        ),
        (STRICT, "ksecrets: stdin: the Secret has no data or stringData (pass --allow-empty-data if intended)"),
    ],
)
def test_bad_secret_input(stdin, message, cert_file):
    out = ksecrets("seal", "--cert", str(cert_file), input=stdin)
    assert out.returncode == 2
    assert err_line(out) == message
    assert out.stdout == b"" and SECRET.encode() not in out.stderr


def test_expired_and_wrong_certificates(tmp_path, vectors, vector_key):
    import datetime as dt

    from ksecrets.sealing.keys import cert_pem, self_signed_cert

    from .conftest import past

    old = self_signed_cert(vector_key, dt.timedelta(days=1), now=past(3))
    path = tmp_path / "old.pem"
    path.write_bytes(cert_pem(old))
    out = ksecrets("seal", "--cert", str(path), input=STRICT + "stringData: {A: x}\n")
    assert out.returncode == 2
    assert err_line(out) == (
        f"ksecrets: {path}: certificate expired on {old.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
        "fetch the controller's current one"
    )
    key = tmp_path / "key.pem"
    key.write_text(vectors["private_key_pem"])
    out = ksecrets("seal", "--cert", str(key), input=STRICT + "stringData: {A: x}\n")
    assert err_line(out) == f"ksecrets: {key}: is a private key, not a certificate; never pass a private key as --cert"
    assert b"PRIVATE" not in out.stderr[len("ksecrets: ") + len(str(key)) + 20 :]
    out = ksecrets("seal", input=STRICT + "stringData: {A: x}\n")
    assert err_line(out) == (
        "ksecrets: no certificate: pass --cert FILE (or set SEALED_SECRETS_CERT); ksecrets never asks a cluster"
    )


def _sealed(cert_file, scope="strict"):
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "--scope",
        scope,
        "-o",
        "yaml",
        input=STRICT + f"stringData:\n  PASSWORD: {SECRET}\n",
    )
    assert out.returncode == 0
    return yaml.safe_load(out.stdout)


def test_unseal_errors(tmp_path, cert_file, key_file, other_key_file):
    obj = _sealed(cert_file)
    # wrong key
    out = ksecrets("unseal", "--recovery-private-key", str(other_key_file), input=yaml.safe_dump(obj))
    assert out.returncode == 2 and err_line(out) == (
        "ksecrets: stdin: spec.encryptedData.PASSWORD: cannot decrypt: wrong key, wrong scope, or tampered "
        "ciphertext (sealed strict for b/a)"
    )
    # every key is tried
    out = ksecrets("unseal", "--recovery-private-key", f"{other_key_file},{key_file}", input=yaml.safe_dump(obj))
    assert out.returncode == 0
    assert base64.b64decode(json.loads(out.stdout)["data"]["PASSWORD"]) == SECRET.encode()
    # wrong scope: the object claims namespace-wide, the value was sealed strict
    moved = json.loads(json.dumps(obj))
    moved["metadata"].setdefault("annotations", {})["sealedsecrets.bitnami.com/namespace-wide"] = "true"
    out = ksecrets("unseal", "--recovery-private-key", str(key_file), input=yaml.safe_dump(moved))
    assert err_line(out) == (
        "ksecrets: stdin: spec.encryptedData.PASSWORD: cannot decrypt: wrong key, wrong scope, "
        "or tampered ciphertext (sealed namespace-wide for b/a)"
    )
    # truncated and tampered
    value = obj["spec"]["encryptedData"]["PASSWORD"]
    raw = base64.b64decode(value)
    # (not the kubeseal format at all: refused when the file is read, before any decryption)
    for bad, problem in (
        (
            base64.b64encode(raw[:300]).decode(),
            "is not sealed ciphertext (shorter than its RSA block and AES-GCM tag: truncated?)",
        ),
        (value[:-3], "is not sealed ciphertext (not strict base64); seal the value with `ksecrets seal`"),
        (
            base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode(),
            "cannot decrypt: tampered or truncated ciphertext (sealed strict for b/a)",
        ),
    ):
        broken = json.loads(json.dumps(obj))
        broken["spec"]["encryptedData"]["PASSWORD"] = bad
        out = ksecrets("unseal", "--recovery-private-key", str(key_file), input=yaml.safe_dump(broken))
        assert out.returncode == 2
        assert err_line(out) == f"ksecrets: stdin: spec.encryptedData.PASSWORD: {problem}"
        assert out.stdout == b""


def test_merge_into_a_json_file_keeps_json(tmp_path, cert_file, vector_key):
    first = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {A: one}\n",
    )
    target = tmp_path / "sealed.json"
    target.write_bytes(first.stdout)
    out = ksecrets(
        "seal",
        "--cert",
        str(cert_file),
        "--merge-into",
        str(target),
        input="apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {B: two}\n",
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.decode() == f"{target}: sealed B\n"
    merged = json.loads(target.read_text())
    assert sorted(merged["spec"]["encryptedData"]) == ["A", "B"]
    assert crypto.decrypt_value([vector_key], merged["spec"]["encryptedData"]["B"], b"b/a") == b"two"


def test_merge_into_refuses_a_sealed_secret_that_grows_over_1_mib(tmp_path, cert_file):
    """kubeseal's --merge-into path: the merged file is checked, not only this run's keys."""

    def secret(key: str) -> str:
        value = base64.b64encode(key.encode() * 450_000).decode()
        return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: a, namespace: b}}\ndata: {{{key}: {value}}}\n"

    first = ksecrets("seal", "--cert", str(cert_file), "-o", "yaml", input=secret("A"))
    assert first.returncode == 0, first.stderr
    target = tmp_path / "sealed.yaml"
    target.write_bytes(first.stdout)
    assert ksecrets("seal", "--cert", str(cert_file), "--merge-into", str(target), input=secret("B")).returncode == 0
    snapshot = target.read_bytes()
    out = ksecrets("seal", "--cert", str(cert_file), "--merge-into", str(target), input=secret("C"))
    assert out.returncode == 2
    assert out.stderr.decode() == (
        f"ksecrets: {target}: SealedSecret a: its Secret would hold 1350000 bytes of data, "
        "over Kubernetes' 1048576-byte (1 MiB) Secret limit; split it into several "
        "Secrets; nothing written\n"
    )
    assert target.read_bytes() == snapshot

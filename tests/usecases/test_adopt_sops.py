"""`ksecrets adopt` into a sops stack (issue 20 §1: each backend says how adopt writes into it):
a plaintext Secret manifest or env file becomes `secrets/<stack>/<name>.sops.yaml`, created for the
stack's recipients or, when it exists, edited with the stack's age key (other keys keep their
ciphertexts); the plaintext files are removed only when every file is written.

Real: pyrage's age and the project's SOPS format (our reader), and the real `sops` v3 (the e2e tool
cache, when built) as the oracle: `sops decrypt` verifies the MAC of every file adopt wrote and
shows exactly the adopted values."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets.sealing import sops
from tests.backends.test_sops import SECRET, env_file, make_repo

MANIFEST = """\
apiVersion: v1
kind: Secret
metadata:
  name: web-secrets
  namespace: web
  labels:
    team: payments
  annotations:
    example.com/owner: alice
type: Opaque
immutable: false
stringData:
  DATABASE_URL: "postgres://app:s3cr=t with spaces@db:5432/app"
  EMPTY: ""
  UNICODE: "ünïcode"
data:
  BINARY: {binary}
"""
BINARY = bytes(range(256))[::7]  # not UTF-8: a SOPS Secret's `data` holds bytes


def real_sops_decrypt(root: Path, key_file: Path, path: Path) -> dict:
    from tests.e2e.harness import binaries, missing_binaries

    if missing_binaries(["sops"]):
        pytest.skip("the real sops is not built (make e2e-tools)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env["SOPS_AGE_KEY_FILE"] = str(key_file)
    proc = subprocess.run(
        [str(binaries()["sops"]), "decrypt", "--input-type", "yaml", "--output-type", "json", str(path)],
        env=env, capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-500:]
    return json.loads(proc.stdout)


@pytest.fixture
def repo(tmp_path):
    key, key_file = make_repo(tmp_path)
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "secret.yaml").write_text(MANIFEST.format(binary=base64.b64encode(BINARY).decode()))
    return tmp_path, key, key_file


WANT = {
    "DATABASE_URL": b"postgres://app:s3cr=t with spaces@db:5432/app",
    "EMPTY": b"",
    "UNICODE": "ünïcode".encode(),
    "BINARY": BINARY,
}


def test_adopt_a_manifest_into_a_sops_stack(repo, cli):
    root, key, key_file = repo
    res = cli("adopt", str(root / "deploy" / "secret.yaml"), "--stack", "dev", "--root", str(root))
    assert res.code == 0, res.err
    assert f"{SECRET}: created (web/web-secrets, 4 keys)" in res.err
    assert not (root / "deploy" / "secret.yaml").exists()  # the plaintext removed
    text = (root / SECRET).read_text()
    assert "s3cr=t" not in text and "payments" in text  # values encrypted, metadata in clear
    assert sops.secret_values(text, [key.identity], SECRET) == WANT
    plain = yaml.safe_load(text)
    assert plain["metadata"]["labels"]["team"] == "payments"
    assert plain["metadata"]["annotations"]["example.com/owner"] == "alice"
    assert plain["type"] == "Opaque" and plain["immutable"] is False
    # scan finds nothing left in clear (the SOPS file is encrypted).
    assert cli("scan", str(root / "secrets"), "--root", str(root)).code == 0
    # The real sops verifies the MAC and reads the same bytes.
    data = real_sops_decrypt(root, key_file, root / SECRET)["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == WANT


def test_adopt_an_env_file_edits_the_existing_file_with_the_age_key(repo, cli):
    root, key, key_file = repo
    assert cli("adopt", str(root / "deploy" / "secret.yaml"), "--stack", "dev", "--root", str(root)).code == 0
    before = yaml.safe_load((root / SECRET).read_text())["data"]
    env = env_file(root / ".env.dev", {"UNICODE": "ünïcode", "TOKEN": "t0k=en", "DATABASE_URL": "postgres://new"})
    args = ["adopt", str(env), "--stack", "dev", "--name", "web-secrets", "--root", str(root)]
    no_key = cli(*args)
    assert no_key.code == 2 and "age key" in no_key.err and no_key.err.count("\n") == 1
    assert env.exists()  # nothing removed when nothing went in
    res = cli(*args, "--age-key-file", str(key_file))
    assert res.code == 0, res.err
    assert f"{SECRET}: edited (web/web-secrets, 3 keys)" in res.err
    assert not env.exists()
    after = yaml.safe_load((root / SECRET).read_text())["data"]
    # Keys not adopted and values unchanged keep their ciphertexts byte for byte.
    assert after["BINARY"] == before["BINARY"] and after["EMPTY"] == before["EMPTY"]
    assert after["UNICODE"] == before["UNICODE"] and after["DATABASE_URL"] != before["DATABASE_URL"]
    want = {**WANT, "TOKEN": b"t0k=en", "DATABASE_URL": b"postgres://new"}
    assert sops.secret_values((root / SECRET).read_text(), [key.identity], SECRET) == want
    data = real_sops_decrypt(root, key_file, root / SECRET)["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == want


def test_adopt_into_sops_is_all_or_nothing(repo, cli):
    """Two Secrets named alike in two namespaces would share one SOPS file: the second is refused,
    so the first file is not written either, and both plaintext files stay."""
    root, _, _ = repo
    (root / "deploy" / "a.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secrets\n  namespace: other\nstringData:\n  K: value-1\n"
    )
    res = cli("adopt", str(root / "deploy"), "--stack", "dev", "--root", str(root))
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "another namespace's Secret of that name" in res.err
    assert not (root / "secrets").exists()
    assert (root / "deploy" / "secret.yaml").exists() and (root / "deploy" / "a.yaml").exists()


def test_adopt_into_sops_refuses_another_namespace_in_the_existing_file(repo, cli):
    root, _, key_file = repo
    assert cli("adopt", str(root / "deploy" / "secret.yaml"), "--stack", "dev", "--keep", "--root", str(root)).code == 0
    before = (root / SECRET).read_bytes()
    env = env_file(root / ".env.dev", {"TOKEN": "t0k"})
    res = cli(
        "adopt", str(env), "--stack", "dev", "--name", "web-secrets", "--namespace", "other",
        "--age-key-file", str(key_file), "--root", str(root),
    )  # fmt: skip
    assert res.code == 2, res.err
    assert (root / SECRET).read_bytes() == before and env.exists()


# --- property: adopts in a row lose no value ------------------------------------------------------

_KEYS = ["API_KEY", "DATABASE_URL", "EMPTY", "TOKEN", "UNICODE", "X"]
_VALUE = st.text(alphabet=st.sampled_from("ab09=-:/ é€_."), max_size=12).map(str.strip)


@settings(
    max_examples=int(os.environ.get("KSECRETS_ADOPT_SOPS_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rounds=st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUE, min_size=1, max_size=4), min_size=1, max_size=3))
def test_adopts_in_a_row_keep_every_value(cli, rounds):
    """Env files with overlapping keys adopted one after another into one SOPS Secret (the first
    creates the file, the next ones edit it with the age key): after each, every key ever adopted
    decrypts, with our reader and the real `sops decrypt` (MAC verified), to the last value given
    for it, and a key the round did not touch keeps its ciphertext byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key, key_file = make_repo(root)
        want: dict[str, bytes] = {}
        before: dict[str, str] = {}
        for i, values in enumerate(rounds):
            env = env_file(root / f".env.round{i}", values)
            res = cli(
                "adopt", str(env), "--stack", "dev", "--name", "web-secrets", "--namespace", "web",
                "--age-key-file", str(key_file), "--root", str(root),
            )  # fmt: skip
            assert res.code == 0, res.err
            assert not env.exists()
            want |= {k: v.encode() for k, v in values.items()}
            text = (root / SECRET).read_text()
            after = yaml.safe_load(text)["data"]
            assert {k: after[k] for k in before if k not in values} == {
                k: v for k, v in before.items() if k not in values
            }
            assert sops.secret_values(text, [key.identity], SECRET) == want
            before = dict(after)
        data = real_sops_decrypt(root, key_file, root / SECRET)["data"]
        assert {k: base64.b64decode(v) for k, v in data.items()} == want

"""Issue 20: the SOPS format of ksecrets/sealing/sops.py against the real `sops` (v3.13.3, built
from github.com/getsops/sops/v3 by `make e2e-tools`), in both directions.

- Every file we write, `sops -d` decrypts (and so verifies its MAC) to exactly our plaintext.
- Every file `sops -e` writes (also after `sops set` and `sops unset`), we decrypt; we edit it,
  and `sops -d` still verifies the MAC and shows the edit.
- Our `updatekeys` result decrypts with the new key only, in `sops` too.

Real: the sops binary and its age (filippo.io/age). Simulated: nothing; no network (sops reads
its age key from SOPS_AGE_KEY_FILE, HOME is a temporary folder so no user key is found).
Counts of files per direction are printed (`-s`) and asserted.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets import yamlio
from ksecrets.sealing import sops
from ksecrets.sealing.sops import SopsError
from tests.e2e.harness import binaries, missing_binaries

REGEX = "^(data|stringData)$"
KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", min_size=1, max_size=12)
VALUES = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["yes", "0o17", "1e5", "true", "~", "", " ", "null", "- a", "#x", "ENC[AES256_GCM,data:x]"]),
)
COUNTS = {"ours_decrypted_by_sops": 0, "sops_decrypted_by_us": 0, "our_edit_verified_by_sops": 0, "rekeyed": 0}


@pytest.fixture(scope="module")
def sops_bin() -> Path:
    if missing_binaries(["sops"]):
        pytest.skip("the real sops is not built: run `make e2e-tools` (tools/sops, sops v3.13.3)")
    return binaries()["sops"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[sops.AgeKey, Path]]:
    out = {}
    folder = tmp_path_factory.mktemp("age")
    for name in ("a", "b", "c"):
        key = sops.generate_age_key()
        path = folder / f"{name}.agekey"
        path.write_text(key.key_file())
        path.chmod(0o600)
        out[name] = (key, path)
    return out


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nsops interop:", ", ".join(f"{k} {v}" for k, v in COUNTS.items()))


def run_sops(sops_bin: Path, args: list[str], key_file: Path | None, cwd: Path, *, check: bool = True):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "SOPS_DISABLE_VERSION_CHECK": "1",
    }
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    proc = subprocess.run([str(sops_bin), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"sops {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


def sops_decrypt(sops_bin: Path, path: Path, key_file: Path) -> dict:
    out = run_sops(
        sops_bin, ["decrypt", "--input-type", "yaml", "--output-type", "json", str(path)], key_file, path.parent
    )
    return json.loads(out.stdout)


def sops_encrypt(sops_bin: Path, plain: dict, path: Path, recipients: list[str]) -> str:
    src = path.with_suffix(".plain.yaml")
    src.write_text(yamlio.dump_quoting(plain, sops.go_needs_quotes))
    out = run_sops(
        sops_bin,
        [
            "encrypt",
            "--age",
            ",".join(recipients),
            "--encrypted-regex",
            REGEX,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            str(src),
        ],
        None,
        path.parent,
    )
    src.unlink()
    path.write_text(out.stdout)
    return out.stdout


def secret(data: dict[str, str], string_data: dict[str, str] | None = None, name: str = "app") -> dict:
    m = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "prod", "labels": {"app.kubernetes.io/part-of": "shop", "v": "0o17"}},
        "type": "Opaque",
        "data": data,
    }
    if string_data is not None:
        m["stringData"] = string_data
    return m


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FIXED = [
    secret({"password": b64("s3cr3t-value"), "user": b64("admin")}),
    secret({"empty": "", "unicode": b64("héllo ✓ 世界")}, {"url": "postgres://u:p@db:5432/x?ssl=true", "yes": "yes"}),
    secret({}, {"port": "5432", "multi": "line one\nline two\n", "num": "1e5", "oct": "0o17"}),
    secret({f"k{i}": b64(f"value-{i}") for i in range(50)}, name="many"),
    {**secret({"a": b64("immutable")}, name="frozen"), "immutable": True},  # a bool in clear: hashed `True`
]
# Not a Secret: typed values in clear and encrypted (type:int, float, bool), which the MAC hashes as
# Go formats them (strconv.FormatFloat, `True`).
TYPED = {
    "replicas": 3,
    "ratio": 1.5,
    "big": 1e16,
    "tiny": 1e-7,
    "enabled": False,
    "list": ["a", 2, True],
    "data": {"n": -5, "f": 0.25, "b": True, "s": "x", "l": [1, "two", 3.5]},
}


# --- ours -> sops -----------------------------------------------------------------------------------


def test_every_file_we_write_decrypts_with_sops(sops_bin, keys, tmp_path):
    key, key_file = keys["a"]
    for n, m in enumerate(FIXED):
        path = tmp_path / f"ours-{n}.sops.yaml"
        path.write_text(sops.encrypt_secret(m, [key.recipient, keys["b"][0].recipient], str(path)))
        for who in ("a", "b"):
            assert sops_decrypt(sops_bin, path, keys[who][1]) == m
        COUNTS["ours_decrypted_by_sops"] += 1
    assert key_file.exists()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(KEYS, VALUES, max_size=6), string_data=st.dictionaries(KEYS, VALUES, max_size=4))
def test_random_secrets_we_write_decrypt_with_sops(sops_bin, keys, tmp_path, data, string_data):
    key, key_file = keys["a"]
    m = secret(data, string_data)
    path = tmp_path / "random.sops.yaml"
    path.write_text(sops.encrypt_secret(m, [key.recipient], str(path)))
    assert sops_decrypt(sops_bin, path, key_file) == m
    COUNTS["ours_decrypted_by_sops"] += 1


# --- sops -> ours, and our edits back to sops ---------------------------------------------------------


def test_every_file_sops_writes_we_decrypt_and_edit(sops_bin, keys, tmp_path):
    key, key_file = keys["a"]
    for n, m in enumerate(FIXED):
        path = tmp_path / f"theirs-{n}.sops.yaml"
        text = sops_encrypt(sops_bin, m, path, [key.recipient])
        assert sops.decrypt(text, [key.identity], str(path)) == m
        COUNTS["sops_decrypted_by_us"] += 1
        before = sops.parse(text, str(path))
        edited = sops.edit(text, [key.identity], str(path), set_values={"added": b64(f"new-{n}")})
        first = next(iter(m["data"]), None)
        if first is not None:
            edited = sops.edit(edited, [key.identity], str(path), remove=[first])
        path.write_text(edited)
        expected = {**m, "data": {**{k: v for k, v in m["data"].items() if k != first}, "added": b64(f"new-{n}")}}
        assert sops_decrypt(sops_bin, path, key_file) == expected
        after = sops.parse(edited, str(path))
        assert all(after.tree["data"][k] == before.tree["data"][k] for k in m["data"] if k != first)
        COUNTS["our_edit_verified_by_sops"] += 1


def test_files_after_sops_set_and_unset_we_decrypt_and_edit(sops_bin, keys, tmp_path):
    key, key_file = keys["a"]
    path = tmp_path / "set.sops.yaml"
    sops_encrypt(sops_bin, secret({"a": b64("one")}, {"s": "x"}), path, [key.recipient])
    run_sops(sops_bin, ["set", str(path), '["data"]["b"]', json.dumps(b64("two"))], key_file, tmp_path)
    run_sops(sops_bin, ["unset", str(path), '["stringData"]["s"]'], key_file, tmp_path)
    plain = sops.decrypt(path.read_text(), [key.identity], str(path))
    assert plain["data"] == {"a": b64("one"), "b": b64("two")} and plain["stringData"] == {}
    COUNTS["sops_decrypted_by_us"] += 1
    path.write_text(sops.edit(path.read_text(), [key.identity], str(path), field="stringData", set_values={"t": "y"}))
    assert sops_decrypt(sops_bin, path, key_file)["stringData"] == {"t": "y"}
    COUNTS["our_edit_verified_by_sops"] += 1


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(KEYS, VALUES, min_size=1, max_size=5),
    edits=st.lists(
        st.tuples(st.sampled_from(["data", "stringData"]), KEYS, st.one_of(st.none(), VALUES)), min_size=1, max_size=5
    ),
)
def test_random_edits_of_sops_files_verify_in_sops(sops_bin, keys, tmp_path, data, edits):
    key, key_file = keys["a"]
    path = tmp_path / "edit.sops.yaml"
    m = secret(data, {})
    text = sops_encrypt(sops_bin, m, path, [key.recipient])
    assert sops.decrypt(text, [key.identity], str(path)) == m
    COUNTS["sops_decrypted_by_us"] += 1
    expected = {"data": dict(data), "stringData": {}}
    for field, name, value in edits:
        if value is None:
            if name in expected[field]:
                text = sops.edit(text, [key.identity], str(path), field=field, remove=[name])
                del expected[field][name]
        else:
            text = sops.edit(text, [key.identity], str(path), field=field, set_values={name: value})
            expected[field][name] = value
    path.write_text(text)
    assert sops_decrypt(sops_bin, path, key_file) == {**m, **expected}
    COUNTS["our_edit_verified_by_sops"] += 1


def test_typed_values_both_ways(sops_bin, keys, tmp_path):
    key, key_file = keys["a"]
    ours = tmp_path / "typed-ours.sops.yaml"
    ours.write_text(sops.encrypt(TYPED, [key.recipient], str(ours)))
    assert sops_decrypt(sops_bin, ours, key_file) == TYPED
    COUNTS["ours_decrypted_by_sops"] += 1
    theirs = tmp_path / "typed-theirs.sops.yaml"
    text = sops_encrypt(sops_bin, TYPED, theirs, [key.recipient])
    assert sops.decrypt(text, [key.identity], str(theirs)) == TYPED
    COUNTS["sops_decrypted_by_us"] += 1
    theirs.write_text(sops.edit(text, [key.identity], str(theirs), set_values={"s": "y"}))
    assert sops_decrypt(sops_bin, theirs, key_file) == {**TYPED, "data": {**TYPED["data"], "s": "y"}}
    COUNTS["our_edit_verified_by_sops"] += 1


# --- updatekeys and tampering ---------------------------------------------------------------------------


def test_our_updatekeys_decrypts_in_sops_with_the_new_key_only(sops_bin, keys, tmp_path):
    (a, a_file), (b, b_file), (c, c_file) = keys["a"], keys["b"], keys["c"]
    for origin in ("ours", "theirs"):
        path = tmp_path / f"rekey-{origin}.sops.yaml"
        m = secret({"password": b64("rotate-me")})
        text = (
            sops.encrypt_secret(m, [a.recipient], str(path))
            if origin == "ours"
            else sops_encrypt(sops_bin, m, path, [a.recipient])
        )
        path.write_text(sops.updatekeys(text, [a.identity], [b.recipient, c.recipient], str(path)))
        assert sops_decrypt(sops_bin, path, b_file) == m
        assert sops_decrypt(sops_bin, path, c_file) == m
        old = run_sops(sops_bin, ["decrypt", str(path)], a_file, tmp_path, check=False)
        assert old.returncode != 0 and "rotate-me" not in old.stdout
        COUNTS["rekeyed"] += 1


def test_sops_updatekeys_of_our_file_opens_in_python_with_the_new_key_only(sops_bin, keys, tmp_path):
    """The other direction: `sops updatekeys` (recipients from a `.sops.yaml` creation rule) re-keys
    a file we wrote; we open it with the new key, not the old, and the MAC still verifies."""
    (a, a_file), (b, _), (c, _) = keys["a"], keys["b"], keys["c"]
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n"
        f"  - path_regex: .*\\.sops\\.yaml$\n    encrypted_regex: '{REGEX}'\n"
        f"    age: {b.recipient},{c.recipient}\n"
    )
    path = tmp_path / "theirs-rekey.sops.yaml"
    m = secret({"password": b64("rekeyed-by-sops")})
    path.write_text(sops.encrypt_secret(m, [a.recipient], str(path)))
    run_sops(sops_bin, ["updatekeys", "--yes", str(path)], a_file, tmp_path)
    text = path.read_text()
    assert sorted(sops.parse(text, str(path)).recipients) == sorted([b.recipient, c.recipient])
    assert sops.decrypt(text, [c.identity], str(path)) == m
    with pytest.raises(SopsError, match="none of the given age identities"):
        sops.decrypt(text, [a.identity], str(path))
    COUNTS["rekeyed"] += 1


def test_sops_refuses_what_we_refuse(sops_bin, keys, tmp_path):
    """A file whose clear metadata was changed after encryption: sops reports a MAC mismatch,
    and so do we; its values never appear in either message."""
    key, key_file = keys["a"]
    path = tmp_path / "tampered.sops.yaml"
    text = sops.encrypt_secret(secret({"password": b64("tamper-me-value")}), [key.recipient], str(path))
    path.write_text(text.replace("name: app", "name: app2"))
    proc = run_sops(sops_bin, ["decrypt", str(path)], key_file, tmp_path, check=False)
    assert proc.returncode != 0 and "MAC mismatch" in proc.stderr
    with pytest.raises(SopsError, match="MAC mismatch") as exc:
        sops.decrypt(path.read_text(), [key.identity], str(path))
    assert b64("tamper-me-value") not in str(exc.value)

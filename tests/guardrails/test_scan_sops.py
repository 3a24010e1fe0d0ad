"""`ksecrets scan` and SOPS files: an encrypted SOPS Secret passes, a SOPS-shaped file whose values
are in clear is found at each such value's line (naming the key path, never the value). The files
are written by ksecrets/sealing/sops.py, which tests/e2e/test_sops_interop.py checks against the
real `sops`."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from ksecrets import scan as s
from ksecrets.sealing import sops

KEY = sops.generate_age_key()
VALUE = "clear-value-0123456789"


def findings(path: str, text: str) -> list[tuple[int, str, str]]:
    return [(f.line, f.kind, f.detail) for f in s.scan_bytes(path, text.encode())]


def secret(**data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "prod"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_an_encrypted_sops_secret_passes():
    text = sops.encrypt_secret(secret(password=VALUE, empty=""), [KEY.recipient], "app.sops.yaml")
    assert findings("k8s/app.sops.yaml", text) == []


def test_a_sops_secret_with_a_value_in_clear_is_found_at_its_line():
    text = sops.encrypt_secret(secret(password=VALUE, user="admin-user"), [KEY.recipient], "app.sops.yaml")
    doc = sops.parse(text, "app.sops.yaml")
    clear = base64.b64encode(VALUE.encode()).decode()
    leaked = text.replace(doc.tree["data"]["password"], clear)  # decrypted in place, metadata kept
    assert findings("app.sops.yaml", leaked) == [
        (line_of(leaked, clear), "secret-data", "SOPS file with a value in clear at data.password")
    ]
    assert all(VALUE not in d and clear not in d for _, _, d in findings("app.sops.yaml", leaked))


def test_a_decrypted_sops_file_is_a_plain_secret():
    """`sops -d` output has no metadata: a v1 Secret with data, found as before."""
    plain = sops.decrypt(
        sops.encrypt_secret(secret(password=VALUE), [KEY.recipient], "a.sops.yaml"), [KEY.identity], "a.sops.yaml"
    )
    text = s.yamlio.dump(plain)
    assert findings("a.sops.yaml", text) == [(line_of(text, "\ndata:") + 1, "secret-data", "v1 Secret with data")]


def test_other_sops_files_follow_their_own_rules():
    """Not a Secret, no rule given: sops's default encrypts every value but keys ending `_unencrypted`."""
    text = sops.encrypt(
        {"db": {"password": VALUE, "host_unencrypted": "db.local"}}, [KEY.recipient], "v.yaml", encrypted_regex=None
    )
    assert sops.parse(text, "v.yaml").rules == sops.Rules(unencrypted_suffix="_unencrypted")
    assert findings("v.yaml", text) == []
    leaked = text.replace("host_unencrypted: db.local", "host: db.local")
    assert findings("v.yaml", leaked) == [
        (line_of(leaked, "host: db.local"), "secret-data", "SOPS file with a value in clear at db.host")
    ]


def test_the_cli_passes_an_encrypted_tree_and_fails_a_leaked_one(tmp_path):
    enc = sops.encrypt_secret(secret(password=VALUE), [KEY.recipient], "app.sops.yaml")
    (tmp_path / "app.sops.yaml").write_text(enc)
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "ksecrets", "scan", str(tmp_path)], capture_output=True, text=True
    )
    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = sops.parse(enc, "app.sops.yaml")
    (tmp_path / "app.sops.yaml").write_text(enc.replace(doc.tree["data"]["password"], "Y2xlYXI="))
    bad = run()
    assert bad.returncode == 1 and "SOPS file with a value in clear at data.password" in bad.stdout
    assert "Y2xlYXI=" not in bad.stdout + bad.stderr


def test_a_hand_added_plain_key_in_an_encrypted_sops_secret_is_found():
    text = sops.encrypt_secret(secret(password=VALUE), [KEY.recipient], "app.sops.yaml")
    added = text.replace("\ndata:\n", "\ndata:\n  extra: Y2xlYXItZXh0cmE=\n", 1)
    assert findings("app.sops.yaml", added) == [
        (line_of(added, "extra:"), "secret-data", "SOPS file with a value in clear at data.extra")
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"unencrypted_suffix": "_unencrypted"},  # the default rule: data.password_unencrypted stays in clear
        {"unencrypted_regex": "^(data|stringData)$"},
        {"encrypted_regex": "^nothing$"},
        {"encrypted_suffix": "_enc"},
    ],
)
def test_a_secret_whose_rules_leave_its_data_in_clear_is_found(rule):
    """The file's own rules say `data` is not encrypted (a suffix or regex abused): the Secret's
    values still reach the cluster in clear, so every non-empty value under data/stringData that
    is not ciphertext is a finding whatever the rules say."""
    import yaml

    doc = yaml.safe_load(sops.encrypt_secret(secret(password=VALUE), [KEY.recipient], "app.sops.yaml"))
    del doc["sops"]["encrypted_regex"]
    doc["sops"].update(rule)
    doc["data"]["token_unencrypted"] = base64.b64encode(b"clear-token-0123").decode()
    doc["stringData"] = {"plain_unencrypted": "clear-string-0123", "empty": ""}
    text = yaml.safe_dump(doc, sort_keys=False)
    got = findings("app.sops.yaml", text)
    assert ("secret-data", "SOPS file with a value in clear at data.token_unencrypted") in [g[1:] for g in got]
    assert ("secret-data", "SOPS file with a value in clear at stringData.plain_unencrypted") in [g[1:] for g in got]
    assert not any("empty" in g[2] or "password" in g[2] for g in got)  # empty and ciphertext pass
    assert all("clear-" not in g[2] for g in got)

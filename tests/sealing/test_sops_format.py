"""The SOPS format in Python (ksecrets/sealing/sops.py): round trips, tamper detection, the typing
of plain scalars the MAC depends on, and Hypothesis properties over edits.

The real `sops` binary checks the same files in tests/e2e/test_sops_interop.py; here the checks
are the format's own invariants (every value decrypts, the MAC verifies, nothing else changes)
and known answers read from sops's Go code (yaml.v3 typing, strconv.FormatFloat).
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.sealing import sops
from ksecrets.sealing.sops import SopsError

SRC = "secrets/app.sops.yaml"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sops"
KEY = sops.generate_age_key()
OTHER = sops.generate_age_key()
THIRD = sops.generate_age_key()
SECRET_VALUE = "hunter2-top-secret"


def manifest(data: dict[str, str] | None = None, string_data: dict[str, str] | None = None) -> dict:
    m: dict = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "prod", "labels": {"version": "0o17", "tier": "yes"}},
        "type": "Opaque",
    }
    if data is not None:
        m["data"] = data
    if string_data is not None:
        m["stringData"] = string_data
    return m


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def enc_values(text: str) -> dict[str, str]:
    """The ciphertext of every key under data/stringData, as written."""
    doc = sops.parse(text, SRC)
    return {f"{f}.{k}": v for f in ("data", "stringData") for k, v in (doc.tree.get(f) or {}).items()}


# --- keys -----------------------------------------------------------------------------------------


def test_generated_age_keys_and_the_key_file_agree():
    key = sops.generate_age_key()
    assert key.identity.startswith("AGE-SECRET-KEY-1") and key.recipient.startswith("age1")
    assert key.identity not in repr(key)
    text = key.key_file(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert text.splitlines()[:2] == ["# created: 2026-01-02T03:04:05Z", f"# public key: {key.recipient}"]
    assert sops.identities_from_key_file(text, "k.agekey") == [key.identity]
    with pytest.raises(SopsError, match="k.agekey: holds no age identity"):
        sops.identities_from_key_file("# nothing\n", "k.agekey")


# --- round trips ----------------------------------------------------------------------------------


def test_a_secret_round_trips_and_only_its_values_are_encrypted():
    m = manifest({"password": b64(SECRET_VALUE), "empty": ""}, {"url": "postgres://u:p@db/x"})
    text = sops.encrypt_secret(m, [KEY.recipient], SRC)
    assert SECRET_VALUE not in text and b64(SECRET_VALUE) not in text and "postgres://" not in text
    doc = sops.parse(text, SRC)
    assert doc.tree["metadata"] == m["metadata"]  # in clear, typed as written (strings)
    assert doc.meta["encrypted_regex"] == "^(data|stringData)$"
    assert re.fullmatch(r"ENC\[AES256_GCM,data:[^,]+,iv:[^,]+,tag:[^,]+,type:str\]", doc.tree["data"]["password"])
    assert doc.tree["data"]["empty"] == ""  # sops leaves an empty value empty
    assert sops.decrypt(text, [KEY.identity], SRC) == m
    assert sops.secret_values(text, [KEY.identity], SRC) == {
        "password": SECRET_VALUE.encode(),
        "empty": b"",
        "url": b"postgres://u:p@db/x",
    }
    # Strings yaml.v3 would read as numbers or booleans are quoted, so the MAC sees the same type.
    assert 'version: "0o17"' in text


def test_several_recipients_each_open_the_file():
    text = sops.encrypt_secret(manifest({"a": b64("x")}), [KEY.recipient, OTHER.recipient], SRC)
    for key in (KEY, OTHER):
        assert sops.decrypt(text, [key.identity], SRC)["data"] == {"a": b64("x")}
    with pytest.raises(SopsError, match=f"{SRC}: none of the given age identities is a recipient"):
        sops.decrypt(text, [THIRD.identity], SRC)


# --- tampering ------------------------------------------------------------------------------------


@pytest.fixture
def sealed() -> str:
    return sops.encrypt_secret(
        manifest({"password": b64(SECRET_VALUE), "user": b64("admin-user")}), [KEY.recipient], SRC
    )


def _no_value(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert SECRET_VALUE not in message and b64(SECRET_VALUE) not in message and "\n" not in message
    assert message.startswith(SRC)
    return message


def test_a_changed_ciphertext_fails(sealed: str):
    value = sops.parse(sealed, SRC).tree["data"]["password"]
    data = value.split("data:")[1].split(",")[0]
    flipped = base64.b64encode(bytes([base64.b64decode(data)[0] ^ 1]) + base64.b64decode(data)[1:]).decode()
    with pytest.raises(SopsError) as exc:
        sops.decrypt(sealed.replace(data, flipped), [KEY.identity], SRC)
    assert "data.password: cannot decrypt" in _no_value(exc)


def test_a_ciphertext_moved_to_another_key_fails(sealed: str):
    """The key path is the additional data: `user`'s ciphertext under `password` does not open."""
    doc = sops.parse(sealed, SRC)
    doc.tree["data"]["password"], doc.tree["data"]["user"] = doc.tree["data"]["user"], doc.tree["data"]["password"]
    with pytest.raises(SopsError) as exc:
        sops.decrypt(doc.render(), [KEY.identity], SRC)
    assert "cannot decrypt" in _no_value(exc)


def test_a_changed_mac_or_lastmodified_fails(sealed: str):
    doc = sops.parse(sealed, SRC)
    other = sops.parse(sops.encrypt_secret(manifest({"password": b64("x")}), [KEY.recipient], SRC), SRC)
    cases = {
        "mac": {**doc.meta, "mac": other.meta["mac"]},  # a valid MAC, under another data key
        "lastmodified": {**doc.meta, "lastmodified": "2001-01-01T00:00:00Z"},
    }
    for name, meta in cases.items():
        with pytest.raises(SopsError) as exc:
            sops.decrypt(sops.SopsFile(SRC, doc.tree, meta).render(), [KEY.identity], SRC)
        assert "MAC mismatch" in _no_value(exc), name


def test_a_changed_clear_value_removed_value_or_key_order_fails(sealed: str):
    """The MAC covers every value (also those in clear) and their order."""
    doc = sops.parse(sealed, SRC)
    renamed = {**doc.tree, "metadata": {**doc.tree["metadata"], "name": "other"}}
    dropped = {**doc.tree, "data": {"user": doc.tree["data"]["user"]}}
    reordered = {**doc.tree, "data": dict(reversed(list(doc.tree["data"].items())))}
    for name, tree in {"renamed": renamed, "dropped": dropped, "reordered": reordered}.items():
        with pytest.raises(SopsError) as exc:
            sops.decrypt(sops.SopsFile(SRC, tree, doc.meta).render(), [KEY.identity], SRC)
        assert "MAC mismatch" in _no_value(exc), name


def test_an_edit_refuses_a_tampered_file_rather_than_blessing_it(sealed: str):
    doc = sops.parse(sealed, SRC)
    tampered = sops.SopsFile(SRC, {**doc.tree, "metadata": {**doc.tree["metadata"], "name": "x"}}, doc.meta).render()
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.edit(tampered, [KEY.identity], SRC, set_values={"new": b64("v")})
    with pytest.raises(SopsError, match="MAC mismatch"):
        sops.updatekeys(tampered, [KEY.identity], [OTHER.recipient], SRC)


# --- edits and updatekeys -------------------------------------------------------------------------


def test_set_and_remove_keep_every_other_ciphertext(sealed: str):
    before = enc_values(sealed)
    added = sops.edit(sealed, [KEY.identity], SRC, set_values={"token": b64("tok-123456")})
    after = enc_values(added)
    assert {k: after[k] for k in before} == before
    assert sops.decrypt(added, [KEY.identity], SRC)["data"]["token"] == b64("tok-123456")
    changed = sops.edit(added, [KEY.identity], SRC, set_values={"password": b64("new-one"), "user": b64("admin-user")})
    values = enc_values(changed)
    assert values["data.user"] == before["data.user"]  # same value: same ciphertext
    assert values["data.password"] != before["data.password"]
    removed = sops.edit(changed, [KEY.identity], SRC, remove=["user"])
    assert sops.decrypt(removed, [KEY.identity], SRC)["data"] == {
        "password": b64("new-one"),
        "token": b64("tok-123456"),
    }
    with pytest.raises(SopsError, match=r"data: no key nope to remove"):
        sops.edit(removed, [KEY.identity], SRC, remove=["nope"])


def test_an_edit_never_writes_a_value_where_the_rules_leave_it_in_clear(sealed: str):
    with pytest.raises(SopsError, match=r"metadata.k: the file's rules leave this key unencrypted"):
        sops.edit(sealed, [KEY.identity], SRC, field="metadata", set_values={"k": SECRET_VALUE})


def test_string_data_is_created_when_missing(sealed: str):
    text = sops.edit(sealed, [KEY.identity], SRC, field="stringData", set_values={"url": "https://x"})
    assert sops.decrypt(text, [KEY.identity], SRC)["stringData"] == {"url": "https://x"}


def test_updatekeys_rekeys_without_touching_values_or_the_mac(sealed: str):
    rekeyed = sops.updatekeys(sealed, [KEY.identity], [OTHER.recipient, THIRD.recipient], SRC)
    before, after = sops.parse(sealed, SRC), sops.parse(rekeyed, SRC)
    assert after.tree == before.tree
    assert (after.meta["mac"], after.meta["lastmodified"]) == (before.meta["mac"], before.meta["lastmodified"])
    assert after.recipients == [OTHER.recipient, THIRD.recipient]
    assert sops.decrypt(rekeyed, [THIRD.identity], SRC) == sops.decrypt(sealed, [KEY.identity], SRC)
    with pytest.raises(SopsError, match="none of the given age identities"):
        sops.decrypt(rekeyed, [KEY.identity], SRC)


# --- typing of plain scalars (yaml.v3) and Go number formatting ---------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("on", "on"),
        ("True", True),
        ("FALSE", False),
        ("~", None),
        ("0o17", 15),
        ("017", 15),
        ("0x1F", 31),
        ("-0b101", -5),
        ("1_000", 1000),
        ("08", 8.0),
        ("1e5", 100000.0),
        (".5", 0.5),
        ("-.inf", float("-inf")),
        ("1e400", "1e400"),
        ("1.2.3", "1.2.3"),
        ("-", "-"),
        ("ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]", "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]"),
    ],
)
def test_plain_scalars_are_typed_as_go_yaml_v3_types_them(text, value):
    assert sops.go_scalar(text, plain=True) == value
    assert type(sops.go_scalar(text, plain=True)) is type(value)
    assert sops.go_scalar(text, plain=False) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.1, "0.1"), (1e16, "10000000000000000"), (1e-7, "0.0000001"), (-0.0, "-0"), (123.456, "123.456")],
)
def test_floats_hash_as_strconv_format_float_writes_them(value, text):
    assert sops.go_format_float(value) == text


def test_a_timestamp_an_explicit_tag_or_several_documents_are_refused_in_one_line():
    good = sops.encrypt_secret(manifest({"a": b64("x")}), [KEY.recipient], SRC)
    cases = {
        "created: 2024-01-01\n": "a plain timestamp is not supported",
        "created: !!str 5\n": "an explicit YAML tag",
        "1: x\n": "a key that is not a string",
    }
    for extra, message in cases.items():
        with pytest.raises(SopsError, match=message) as exc:
            sops.parse(extra + good, SRC)
        assert str(exc.value).startswith(f"{SRC}: line 1: ")
    with pytest.raises(SopsError, match="holds 2 YAML documents"):
        sops.parse(good + "---\na: b\n", SRC)
    with pytest.raises(SopsError, match="not a SOPS file"):
        sops.parse("a: b\n", SRC)
    with pytest.raises(SopsError, match="key_groups"):
        sops.parse(good.replace("sops:\n", "sops:\n  key_groups: [{age: []}]\n"), SRC)


def test_hostile_yaml_is_refused_in_one_line_and_quickly():
    good = sops.encrypt_secret(manifest({"a": b64("x")}), [KEY.recipient], SRC)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    for text in (bomb + good, "r: &r [1, *r]\n" + good):
        with pytest.raises(KsecretsError) as exc:
            sops.parse(text, SRC)
        assert str(exc.value).startswith(f"{SRC}: line ") and "\n" not in str(exc.value)


def test_a_file_typed_values_in_clear_hash_as_go_does():
    """A clear int, bool and float are hashed as `3`, `True`, `1.5`: what sops computes."""
    text = sops.encrypt({"replicas": 3, "on": True, "ratio": 1.5, "data": {"k": "v"}}, [KEY.recipient], SRC)
    doc = sops.parse(text, SRC)
    assert doc.tree["replicas"] == 3 and doc.tree["on"] is True and doc.tree["ratio"] == 1.5
    plain = sops.decrypt(text, [KEY.identity], SRC)
    assert sops.compute_mac(plain, doc.rules) == __import__("hashlib").sha512(b"3True1.5v").hexdigest().upper()


def test_looks_like_sops_and_is_ciphertext(sealed: str):
    assert sops.looks_like_sops(sealed)
    assert not sops.looks_like_sops(yamlio.dump(manifest({"a": b64("x")})))
    assert sops.is_ciphertext(sops.parse(sealed, SRC).tree["data"]["user"])
    assert not sops.is_ciphertext(b64("x"))


# --- a file the real sops wrote ----------------------------------------------------------------------
# tests/fixtures/sops/secret.sops.yaml: `sops encrypt --age <fixture key> --encrypted-regex
# '^(data|stringData)$'` of sops 3.13.3 (tools/sops), with comments (which sops encrypts as
# `#ENC[...]` comments under `data`), an empty value, a quoted `"yes"` key and a bool in clear.
# The same checks against the binary itself, both ways, are tests/e2e/test_sops_interop.py.

FIXTURE_PLAIN = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "app", "namespace": "prod", "labels": {"v": "0o17"}},
    "type": "Opaque",
    "data": {"password": b64("hunter2"), "empty": "", "unicode": b64("héllo ✓ 世界")},
    "stringData": {"url": "postgres://u:p@db:5432/x?ssl=true", "port": "5432", "yes": "yes"},
    "immutable": True,
}


def fixture() -> tuple[str, list[str]]:
    key_file = FIXTURES / "fixture.agekey"
    return (FIXTURES / "secret.sops.yaml").read_text(), sops.identities_from_key_file(
        key_file.read_text(), str(key_file)
    )


def test_a_file_sops_wrote_decrypts_and_verifies():
    text, ids = fixture()
    assert sops.decrypt(text, ids, "secret.sops.yaml") == FIXTURE_PLAIN
    doc = sops.parse(text, "secret.sops.yaml")
    assert doc.meta["version"] == "3.13.3" and doc.recipients[0].startswith("age1")


def test_a_file_sops_wrote_fails_when_tampered():
    text, ids = fixture()
    cases = {
        "clear value": text.replace("name: app", "name: app2"),
        "lastmodified": re.sub(r'lastmodified: "[^"]+"', 'lastmodified: "2001-01-01T00:00:00Z"', text),
        "mac": re.sub(
            r"mac: ENC\[AES256_GCM,data:(.)",
            lambda m: "mac: ENC[AES256_GCM,data:" + ("A" if m.group(1) != "A" else "B"),
            text,
        ),
        "immutable": text.replace("immutable: true", "immutable: false"),
    }
    for name, tampered in cases.items():
        assert tampered != text, name
        with pytest.raises(SopsError, match="MAC mismatch"):
            sops.decrypt(tampered, ids, "secret.sops.yaml")


def test_a_file_sops_wrote_is_edited_keeping_the_other_ciphertexts():
    text, ids = fixture()
    edited = sops.edit(text, ids, "secret.sops.yaml", set_values={"token": b64("t0k3n")}, remove=["empty"])
    before, after = enc_values(text), enc_values(edited)
    assert {k: after[k] for k in before if k != "data.empty"} == {k: v for k, v in before.items() if k != "data.empty"}
    expected = {
        **FIXTURE_PLAIN,
        "data": {"password": b64("hunter2"), "unicode": b64("héllo ✓ 世界"), "token": b64("t0k3n")},
    }
    assert sops.decrypt(edited, ids, "secret.sops.yaml") == expected


# --- properties -----------------------------------------------------------------------------------

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", min_size=1, max_size=12)
VALUES = st.one_of(
    st.text(max_size=40),  # unicode, empty
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),  # what `data` holds
    st.sampled_from(["yes", "0o17", "1e5", "true", "~", "", " ", "- a", "ENC[AES256_GCM,data:x]", "#x"]),
)
EDITS = st.lists(
    st.tuples(st.sampled_from(["data", "stringData"]), KEYS, st.one_of(st.none(), VALUES)), min_size=1, max_size=8
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(KEYS, VALUES, max_size=8), string_data=st.dictionaries(KEYS, VALUES, max_size=4), edits=EDITS
)
def test_random_secrets_and_edit_sequences_stay_decryptable_with_a_valid_mac(data, string_data, edits):
    m = manifest(data, string_data)
    text = sops.encrypt_secret(m, [KEY.recipient], SRC)
    expected = {"data": dict(data), "stringData": dict(string_data)}
    assert sops.decrypt(text, [KEY.identity], SRC) == m
    for field, key, value in edits:
        before = enc_values(text)
        if value is None:
            if key not in expected[field]:
                continue
            text = sops.edit(text, [KEY.identity], SRC, field=field, remove=[key])
            del expected[field][key]
        else:
            text = sops.edit(text, [KEY.identity], SRC, field=field, set_values={key: value})
            expected[field][key] = value
        after = enc_values(text)
        # Every value the edit did not name keeps its ciphertext byte for byte.
        untouched = {k for k in before if k != f"{field}.{key}"}
        assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}
        plain = sops.decrypt(text, [KEY.identity], SRC)  # verifies the MAC
        assert plain.get("data", {}) == expected["data"]
        assert plain.get("stringData", {}) == expected["stringData"]
        assert plain["metadata"] == m["metadata"]

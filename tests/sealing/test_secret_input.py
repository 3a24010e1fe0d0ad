"""Reading a v1 Secret: data and stringData, key names, the 1 MiB limit, malformed input."""

from __future__ import annotations

import pytest

from ksecrets.errors import KsecretsError
from ksecrets.sealing.secret_input import MAX_SECRET_BYTES, read_secret

HEAD = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  namespace: b\n"


def test_data_and_string_data_string_data_wins():
    s = read_secret(HEAD + "data:\n  A: b2xk\n  B: Yg==\nstringData:\n  A: new\n", "in")
    assert s.data == {"A": b"new", "B": b"b"}
    assert (s.name, s.namespace, s.type, s.immutable) == ("a", "b", "Opaque", None)


def test_json_input():
    s = read_secret('{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"},"data":{"K":"dg=="}}', "in")
    assert s.data == {"K": b"v"} and s.namespace == ""


@pytest.mark.parametrize(
    "text, message",
    [
        (HEAD + "data:\n  A: aGk=\n  A: aGk=\n", "in: line 8: invalid YAML: duplicate key 'A'"),
        (HEAD + 'stringData:\n  A: "hunter2\n', "in: line 8: invalid YAML: found unexpected end of stream"),
        (
            '{"apiVersion":"v1","kind":"Secret",\n"stringData":{"A":"hunter2",}}',
            "in: line 2: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        (
            '{"apiVersion":"v1","kind":"Secret","stringData":{"A":"hunter2","A":"x"}}',
            "in: invalid JSON: duplicate key 'A'",
        ),
        (
            HEAD + "stringData:\n  A B: hunter2\n",
            "in: stringData: invalid key name 'A B': a valid key consists of letters, digits, '-', '_' or '.'",
        ),
        (HEAD + "stringData:\n  ..x: hunter2\n", "in: stringData: invalid key name '..x': must not start with '..'"),
        (HEAD + "data:\n  A: hunter2!\n", "in: data.A: not valid base64 (use stringData for plain text)"),
        (HEAD + "stringData:\n  PORT: 5432\n", "in: stringData.PORT: expected a string, found int (quote it)"),
        ("apiVersion: v1\nkind: ConfigMap\n", "in: expected apiVersion v1, kind Secret; found v1/ConfigMap"),
        (HEAD + "---\n" + HEAD, "in: expected exactly one document, found 2"),
        ("", "in: empty input"),
        ("- a\n- b\n", "in: expected a v1 Secret object"),
    ],
)
def test_bad_input_gives_one_line_without_the_value(text, message):
    with pytest.raises(KsecretsError) as exc:
        read_secret(text, "in")
    assert str(exc.value) == message
    assert "hunter2" not in str(exc.value)


def test_one_mebibyte_is_the_limit():
    ok = "A: " + "x" * MAX_SECRET_BYTES + "\n"
    assert len(read_secret(HEAD + "stringData:\n  " + ok, "in").data["A"]) == MAX_SECRET_BYTES
    with pytest.raises(KsecretsError) as exc:
        read_secret(HEAD + "stringData:\n  A: " + "x" * (MAX_SECRET_BYTES + 1) + "\n", "in")
    assert str(exc.value) == "in: data.A: value is 1048577 bytes, over Kubernetes' 1 MiB Secret limit"
    half = MAX_SECRET_BYTES // 2 + 1
    with pytest.raises(KsecretsError) as exc:
        read_secret(HEAD + f"stringData:\n  A: {'x' * half}\n  B: {'y' * half}\n", "in")
    assert str(exc.value) == f"in: data: values total {2 * half} bytes, over Kubernetes' 1 MiB Secret limit"

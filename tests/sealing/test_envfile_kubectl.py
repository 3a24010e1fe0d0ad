"""Env files: the real kubectl is the oracle. Same keys, same value bytes, same rejections.

Each generated file goes through `kubectl create secret generic t --from-env-file F --dry-run=client
-o json` and through our parser; accepted files are then sealed and unsealed, and the unsealed
Secret's data must equal kubectl's byte for byte.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ksecrets.errors import KsecretsError
from ksecrets.envfile import parse_env_file
from ksecrets.sealing.sealedsecret import build_sealed_secret, encrypt_all, unseal

KUBECTL = shutil.which("kubectl")
pytestmark = [pytest.mark.oracle, pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")]

# The environment both kubectl and our parser see (lines without '=' read from it).
ENVIRON = {"FROM_ENV": "value from the environment", "EMPTY_ENV": "", "UNICODE_ENV": "ünïcödé ☃"}

HAND_WRITTEN: dict[str, bytes] = {
    "simple": b"A=1\nB=two\n",
    "quotes kept": b'Q="double"\nS=\'single\'\nM="unterminated\n',
    "equals in value": b"URL=postgres://u:p@h/db?sslmode=require&x=a=b\nEMPTY=\nEQ==\n",
    "comments and blanks": b"# comment\n\n   \n  # indented comment\nA=1 # not a comment\n#B=2\n",
    "export prefix": b"export A=1\n",
    "spaces around key": b"  A=1\n\tB=2\nC =3\n",
    "space after equals": b"A= 1 \nB=\t2\t\n",
    "crlf": b"A=1\r\nB=2\r\n",
    "cr cr lf": b"A=1\r\r\nB=x\ry\n",
    "bom": b"\xef\xbb\xbfA=1\nB=2\n",
    "bom on second line": b"A=1\n\xef\xbb\xbfB=2\n",
    "bom crlf": b"\xef\xbb\xbfA=1\r\n",
    "unicode value": "A=ünïcödé ☃ 日本\n".encode(),
    "unicode key": "É=1\n".encode(),
    "invalid utf8": b"A=\xff\xfe\n",
    "invalid utf8 in comment": b"# \xff\nA=1\n",
    "leading digit": b"1A=1\n",
    "dot keys": b".a=1\n-b=2\n_c=3\na.b-c_d=4\n",
    "dot dot": b"..=1\n",
    "dot dot prefix": b"..a=1\n",
    "single dot": b".=1\n",
    "empty key": b"=value\n",
    "duplicate key": b"A=1\nB=2\nA=3\n",
    "duplicate key same value": b"A=1\nA=1\n",
    "from env": b"FROM_ENV\nEMPTY_ENV\nUNSET_ENV_VAR\nUNICODE_ENV\n",
    "from env with spaces": b"FROM_ENV \n",
    "no trailing newline": b"A=1\nB=2",
    "empty file": b"",
    "only newline": b"\n",
    "only comments": b"# a\n# b\n",
    "nul in value": b"A=x\x00y\n",
    "tab inside key": b"A\tB=1\n",
    "nbsp leading": "\u00a0A=1\n".encode(),
    "nel leading": "\u0085A=1\n".encode(),
    "ideographic space leading": "\u3000A=1\n".encode(),
    "file separator leading (space in Python, not in Go)": b"\x1cA=1\n",
    "vertical tab and form feed leading": b"\x0b\x0cA=1\n",
    "zero width space leading": "\u200bA=1\n".encode(),
    "key of 253 chars": b"K" * 253 + b"=1\n",
    "key of 254 chars": b"K" * 254 + b"=1\n",
    "backslash continuation": b"A=one\\\nB=two\n",
    "dollar reference": b"A=${FROM_ENV}\nB=$FROM_ENV\n",
    "yaml-ish": b"A: 1\n",
    "colon key": b"A:B=1\n",
}


def _random_file(rng: random.Random) -> bytes:
    keys_ok = ["A", "B", "DB_URL", "api.key", "-dash", ".dot", "_u", "K9", "x-y.z_1", "FROM_ENV", "UNSET_ENV_VAR"]
    keys_bad = ["1A", "A B", "export A", "A/B", "é", "..x", "A$", "A\u00a0"]
    values = [
        "",
        "plain",
        '"quoted"',
        "'single'",
        "a=b=c",
        " spaced ",
        "#hash",
        "ünï ☃",
        "trail\\",
        "${A}",
        "tab\there",
        "x\ry",
        "🙂",
        "  ",
    ]
    leads = ["", "", "", " ", "\t", "  \t ", "\u00a0", "\u3000", "\u2003"]
    endings = ["\n", "\n", "\n", "\r\n", "\r\r\n"]
    lines = []
    for _ in range(rng.randint(0, 8)):
        kind = rng.random()
        if kind < 0.12:
            line = rng.choice(leads) + "#" + rng.choice(values)
        elif kind < 0.2:
            line = rng.choice(leads)
        elif kind < 0.3:
            line = rng.choice(leads) + rng.choice(keys_ok)
        else:
            key = rng.choice(keys_bad) if rng.random() < 0.08 else rng.choice(keys_ok)
            line = rng.choice(leads) + key + rng.choice(["=", "=", "=", " =", "= "]) + rng.choice(values)
        lines.append(line + rng.choice(endings))
    data = "".join(lines).encode()
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.1 and data.endswith(b"\n"):
        data = data.rstrip(b"\r\n")
    if rng.random() < 0.03:
        data += b"Z=\xc3\x28\n"  # invalid UTF-8
    return data


CASES = dict(HAND_WRITTEN)
_rng = random.Random(20261128)
for _i in range(150):
    CASES[f"random-{_i:03d}"] = _random_file(_rng)


def _kubectl(path: Path) -> dict | None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(path.parent), **ENVIRON}
    out = subprocess.run(
        [KUBECTL, "create", "secret", "generic", "t", "--from-env-file", str(path), "--dry-run=client", "-o", "json"],
        capture_output=True,
        env=env,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout).get("data") or {}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> dict[str, tuple[Path, dict | None]]:
    base = tmp_path_factory.mktemp("envfiles")
    paths = {}
    for i, (name, data) in enumerate(CASES.items()):
        p = base / f"{i:03d}.env"
        p.write_bytes(data)
        paths[name] = p
    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(paths, pool.map(_kubectl, paths.values())))
    return {name: (paths[name], results[name]) for name in paths}


def test_the_corpus_exercises_both_outcomes(oracle):
    rejected = sum(1 for _, r in oracle.values() if r is None)
    accepted = len(oracle) - rejected
    assert rejected >= 20 and accepted >= 60, (accepted, rejected)


# Go's unicode.IsSpace, for finding lines kubectl reads from the environment (no '=').
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def _lines_without_equals(data: bytes) -> list[int]:
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        text = raw.decode("utf-8", "replace").removeprefix("\ufeff" if n == 1 else "").lstrip(GO_SPACE).rstrip("\r")
        if text and not text.startswith("#") and "=" not in text:
            out.append(n)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_same_keys_and_bytes_as_kubectl(name, oracle, vector_cert, vector_key):
    path, expected = oracle[name]
    data = path.read_bytes()
    if expected is not None and _lines_without_equals(data):
        # Deliberate difference: kubectl reads such a line's value from the environment and makes
        # its text a key; we refuse the file, naming the line and not its text.
        with pytest.raises(KsecretsError) as exc:
            parse_env_file(data, path.name, environ=ENVIRON)
        assert str(exc.value) == (
            f"{path.name}: line {_lines_without_equals(data)[0]}: no '=' (kubectl would make "
            "the line's text a key and read its value from the environment); write KEY=VALUE"
        )
        return
    if expected is None:
        with pytest.raises(KsecretsError) as exc:
            parse_env_file(data, path.name, environ=ENVIRON)
        message = str(exc.value)
        assert message.startswith(f"{path.name}: line ") and "\n" not in message
        return
    values = parse_env_file(data, path.name, environ=ENVIRON)
    ours = {k: base64.b64encode(v).decode() for k, v in values.items()}
    assert ours == expected
    # And through sealing: what the controller would decrypt is what kubectl would have stored.
    enc = encrypt_all(vector_cert, values, scope="strict", namespace="ns", name="t")
    sealed = build_sealed_secret(name="t", namespace="ns", scope="strict", encrypted_data=enc)
    assert unseal(sealed, [vector_key], "test")["data"] == dict(sorted(expected.items()))


def test_errors_never_echo_values():
    secret = "hunter2-very-secret"
    cases = [
        (
            f"PASSWORD {secret}\n".encode(),
            "x.env: line 1: invalid key name: a valid environment variable name "
            "consists of letters, digits, '_', '-' or '.' and does not start with a digit",
        ),
        (f"A=1\nA={secret}\n".encode(), "x.env: line 2: key A: another key by that name already exists"),
        (b"A=" + secret.encode() + b"\xff\n", "x.env: line 1: invalid UTF-8"),
    ]
    for data, message in cases:
        with pytest.raises(KsecretsError) as exc:
            parse_env_file(data, "x.env", environ={})
        assert str(exc.value) == message
        assert secret not in str(exc.value)


def test_a_line_of_64_kib_is_refused_where_kubectl_silently_drops_the_rest(tmp_path):
    """Deliberate difference: kubectl ignores bufio's ErrTooLong and returns a Secret missing keys."""
    data = b"B=1\nA=" + b"x" * (65536 - 2) + b"\nC=3\n"
    path = tmp_path / "long.env"
    path.write_bytes(data)
    kube = _kubectl(path)
    assert kube == {"B": base64.b64encode(b"1").decode()}  # A and C silently lost
    with pytest.raises(KsecretsError) as exc:
        parse_env_file(data, "long.env", environ={})
    assert str(exc.value) == (
        "long.env: line 2: line is 64 KiB or longer (kubectl would silently drop it and every line after it)"
    )
    # One byte shorter is fine for both.
    ok = b"A=" + b"x" * (65535 - 2) + b"\n"
    path.write_bytes(ok)
    assert set(_kubectl(path)) == {"A"}
    assert parse_env_file(ok, "ok.env", environ={})["A"] == b"x" * 65533

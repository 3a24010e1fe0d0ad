"""`kubectl create secret generic --from-env-file` rules, byte for byte.

Upstream: `k8s.io/kubectl/pkg/cmd/util/env_file.go` (`AddFromEnvFile`, `processEnvFileLine`) and
`create_secret.go` (`addKeyFromLiteralToSecret`):

- lines are split like Go's `bufio.ScanLines`: on `\\n`, dropping one `\\r` before it (CRLF);
- a line with invalid UTF-8 is an error;
- a UTF-8 BOM is removed from the first line only;
- leading whitespace (Go's `unicode.IsSpace`, not Python's) is trimmed; an empty line or one
  starting with `#` is skipped; a `#` later in a line is part of the value;
- the key is everything before the first `=` and must pass `IsEnvVarName`; the value is everything
  after it, untouched: no quote stripping, no trailing-space trimming, no `export` handling;
- a line without `=`: kubectl takes the value from the environment (empty when unset), so the
  line's text becomes a key name, stored in the clear and printed. A line without `=` in a file of
  secrets is far more often a pasted value or a broken line than a deliberate reference, so here
  it is refused (naming the file and the line, never its text): a deliberate difference;
- every key must also pass `IsConfigMapKey` (at most 253 characters), and a key seen twice is an
  error ("another key by that name already exists").

Another deliberate difference: Go's scanner stops at a line of 64 KiB or more and kubectl ignores that
error, silently dropping the rest of the file. Dropping secrets silently is worse than refusing, so
such a line is an error here.
"""

from __future__ import annotations

import re
from typing import Mapping

from ksecrets.errors import KsecretsError

_BOM = b"\xef\xbb\xbf"
_MAX_LINE = 64 * 1024  # bufio.MaxScanTokenSize
# Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property.
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_KEY_LENGTH = 253


def _chdir_prefix_problem(key: str) -> str | None:
    if key == ".":
        return "must not be '.'"
    if key == "..":
        return "must not be '..'"
    if key.startswith(".."):
        return "must not start with '..'"
    return None


def env_var_name_problem(key: str) -> str | None:
    """Kubernetes `validation.IsEnvVarName`, as one problem string (None when valid)."""
    if not _ENV_VAR_NAME.fullmatch(key):
        return (
            "a valid environment variable name consists of letters, digits, '_', '-' or '.' "
            "and does not start with a digit"
        )
    return _chdir_prefix_problem(key)


def config_map_key_problem(key: str) -> str | None:
    """Kubernetes `validation.IsConfigMapKey` (also used for Secret keys)."""
    if len(key) > MAX_KEY_LENGTH:
        return f"must be no more than {MAX_KEY_LENGTH} characters"
    if not _CONFIG_MAP_KEY.fullmatch(key):
        return "a valid key consists of letters, digits, '-', '_' or '.'"
    return _chdir_prefix_problem(key)


def _lines(data: bytes):
    """Go's bufio.ScanLines: yields (line_number, line) without the newline and one trailing CR."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    for number, raw in enumerate(parts, start=1):
        yield number, raw, raw[:-1] if raw.endswith(b"\r") else raw


def parse_env_file(data: bytes, source: str, environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Key -> value bytes in file order. Errors name the file and line, never a value.

    `environ` is accepted for callers of the kubectl-compatible signature and not used: lines
    without '=' are refused rather than read from the environment.
    """
    out: dict[str, bytes] = {}
    for number, raw, line in _lines(data):
        if len(raw) + 1 > _MAX_LINE:
            raise KsecretsError(
                f"{source}: line {number}: line is 64 KiB or longer (kubectl would silently drop it and every line after it)"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise KsecretsError(f"{source}: line {number}: invalid UTF-8") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        i = 0
        while i < len(text) and text[i] in _GO_SPACE:
            i += 1
        text = text[i:]
        if not text or text[0] == "#":
            continue
        key, sep, value = text.partition("=")
        problem = env_var_name_problem(key)
        if problem:
            # The would-be key is not echoed: a line without '=' may well be a value.
            raise KsecretsError(f"{source}: line {number}: invalid key name: {problem}")
        if not sep:
            raise KsecretsError(
                f"{source}: line {number}: no '=' (kubectl would make the line's text a key and read its value "
                "from the environment); write KEY=VALUE"
            )
        problem = config_map_key_problem(key)
        if problem:
            raise KsecretsError(f"{source}: line {number}: key {key[:40]}...: {problem}")
        if key in out:
            raise KsecretsError(f"{source}: line {number}: key {key}: another key by that name already exists")
        out[key] = value.encode("utf-8")
    return out


def parse_literal(literal: str, source: str = "--from-literal") -> tuple[str, bytes]:
    """kubectl's `ParseLiteralSource`: `KEY=VALUE`, split at the first '='."""
    key, sep, value = literal.partition("=")
    if not sep or not key:
        raise KsecretsError(f"{source}: expected KEY=VALUE (the argument is not shown)")
    problem = config_map_key_problem(key)
    if problem:
        raise KsecretsError(f"{source}: invalid key name: {problem}")
    return key, value.encode("utf-8")

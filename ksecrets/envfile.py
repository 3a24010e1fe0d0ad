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
from typing import Collection, Mapping

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


# --- key names that are credentials ----------------------------------------------------------------
#
# A key name is stored in the clear (in the stack file, in k8s/, in Vault's paths and in every
# message). A pasted token on a line of its own becomes one: `dGhpcyBpcyBhIHRva2Vu=` is the key
# `dGhpcyBpcyBhIHRva2Vu` with an empty value (the base64 padding made the '='). So a name that looks
# like a credential is refused unless the user names it with `--allow-key-name KEY`:
# - any part (between '_', '-' and '.') of MAX_WORD or more characters, 10 or more of them distinct:
#   no identifier has a word that long, every token of 24 random bytes does;
# - a part of 20 or more characters with 3+ digits, 3+ letters and few vowels (random base62 has
#   16% vowels among its letters, English words about 40%), or of 20+ hex digits with a digit;
# - a known token format (`ksecrets.tokens`: AWS key IDs, GitHub and GitLab tokens, JWTs);
# - with an empty value (or one of only '=': padding), a part of 12+ characters mixing letters and
#   digits, or of 16+ mixing cases with few vowels: `API_KEY=` is a name waiting for a value,
#   `Zm9vYmFyMTIz=` a token.
MAX_WORD = 32
_PARTS = re.compile(r"[_.-]+")
_HEX_PART = re.compile(r"[0-9a-fA-F]{20,}")


def _token_like(part: str, *, empty_value: bool) -> str | None:
    digits = sum(ch.isdigit() for ch in part)
    letters = [ch for ch in part if ch.isalpha()]
    if len(part) >= MAX_WORD and len(set(part)) >= 10:
        return f"a part of {len(part)} varied characters (no word is that long; a token is)"
    if _HEX_PART.fullmatch(part) and digits:
        return "a long hexadecimal string"
    vowels = sum(ch in "aeiouAEIOU" for ch in letters)
    if len(part) >= 20 and digits >= 3 and len(letters) >= 3 and vowels < 0.3 * len(letters):
        return "a long random-looking mix of letters and digits"
    if empty_value and len(part) >= 12 and digits and letters:
        return "a random-looking mix of letters and digits with an empty value (a pasted token ending in '=')"
    upper = sum(ch.isupper() for ch in letters)
    if empty_value and len(part) >= 16 and 3 <= upper <= len(letters) - 3 and vowels < 0.3 * len(letters):
        return (
            "a random-looking mix of upper- and lower-case letters with an empty value (a pasted token ending in '=')"
        )
    return None


def key_name_problem(key: str, value: bytes | None = None) -> str | None:
    """Why `key` looks like a credential rather than a name (None when it looks like a name).
    `value` None: not known (a key given on the command line for a file)."""
    empty_value = value is not None and not value.strip(b"=")
    for part in _PARTS.split(key):
        problem = _token_like(part, empty_value=empty_value)
        if problem:
            return problem
    joined = _PARTS.sub("", key)  # a URL-safe token has '-' and '_' in it
    digits, upper, lower = (sum(f(ch) for ch in joined) for f in (str.isdigit, str.isupper, str.islower))
    if empty_value and len(joined) >= 16 and upper >= 3 and lower >= 3 and digits >= 2:
        return "a random-looking mix of cases, digits and separators with an empty value (a pasted token)"
    from ksecrets.tokens import find_credentials  # the one list of token formats

    for _, what in find_credentials(key.encode("utf-8")):
        return f"the format of a {what}"
    return None


def check_key_name(key: str, value: bytes | None, where: str, allowed: Collection[str] = ()) -> None:
    """Refuse a credential-like key name (never shown) unless the user allowed exactly it."""
    if key in allowed:
        return
    problem = key_name_problem(key, value)
    if problem:
        raise KsecretsError(
            f"{where}: the key name looks like a credential ({problem}); key names are stored in the clear, "
            "so it is not shown or used: fix the line (KEY=VALUE), or pass --allow-key-name with the exact "
            "name if it really is one"
        )


def _lines(data: bytes):
    """Go's bufio.ScanLines: yields (line_number, line) without the newline and one trailing CR."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    for number, raw in enumerate(parts, start=1):
        yield number, raw, raw[:-1] if raw.endswith(b"\r") else raw


def parse_env_file(
    data: bytes,
    source: str,
    environ: Mapping[str, str] | None = None,
    *,
    allow_key_names: Collection[str] = (),
) -> dict[str, bytes]:
    """Key -> value bytes in file order. Errors name the file and line, never a value.

    `environ` is accepted for callers of the kubectl-compatible signature and not used: lines
    without '=' are refused rather than read from the environment. A key name that looks like a
    credential is refused (`check_key_name`) unless it is one of `allow_key_names`.
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
        check_key_name(key, value.encode("utf-8"), f"{source}: line {number}", allow_key_names)
        if key in out:
            raise KsecretsError(f"{source}: line {number}: key {key}: another key by that name already exists")
        out[key] = value.encode("utf-8")
    return out


def parse_literal(
    literal: str, source: str = "--from-literal", *, allow_key_names: Collection[str] = ()
) -> tuple[str, bytes]:
    """kubectl's `ParseLiteralSource`: `KEY=VALUE`, split at the first '='."""
    key, sep, value = literal.partition("=")
    if not sep or not key:
        raise KsecretsError(f"{source}: expected KEY=VALUE (the argument is not shown)")
    problem = config_map_key_problem(key)
    if problem:
        raise KsecretsError(f"{source}: invalid key name: {problem}")
    check_key_name(key, value.encode("utf-8"), source, allow_key_names)
    return key, value.encode("utf-8")

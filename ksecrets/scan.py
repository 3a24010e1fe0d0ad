"""Find secret material that must not be committed. Names file, line and kind; never the value.

Four rules, each with a finding kind that allow markers name:
- `env-value`: a value of a given env file (the exact bytes, or their base64, as a Secret's
  `data` would hold them; values shorter than MIN_VALUE_LENGTH are not searched), and a given env
  file that is itself among the files scanned (staged or tracked);
- `private-key`: a PEM private key block (`-----BEGIN ... PRIVATE KEY-----`), as text or
  base64-encoded (a Secret's `tls.key`). `ENCRYPTED PRIVATE KEY` blocks are passphrase-protected
  and pass;
- `secret-data`: a `v1` Secret with non-empty `data`/`stringData` in a YAML or JSON file (every
  document, and every item of a `List`); in a SOPS file (a top-level `sops` mapping with a `mac`),
  each value its own rules encrypt (`ksecrets.sopsrules`) that is neither `ENC[...]` nor empty, and
  in a Secret every such value of `data`/`stringData` whatever the rules (an `_unencrypted` suffix
  or a regex leaving them out), so an encrypted SOPS Secret passes and one decrypted in place,
  edited by hand or with rules that leave its values in clear does not;
- `unencrypted-key-backup`: a sealing key Secret (label `sealedsecrets.bitnami.com/sealed-secrets-key`)
  with its data, which is what a raw `kubectl get secret -o yaml` backup of the controller's keys
  looks like (also in a file with no YAML suffix), and a `KSECRETS SEALING KEY BACKUP` armour whose
  body lacks the encrypted header (`KSBK`, see `ksecrets.sealing.backup`). An encrypted backup
  (`ksecrets backup`) passes.

- `credential`: tokens with a recognisable format: AWS access key IDs (`AKIA`/`ASIA`...), GitHub
  (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`) and GitLab (`glpat-`) tokens, and JWTs
  (three base64url parts, the first two JSON objects);
- `env-file`: a scanned file named like an env file (`.env`, `.env.*`, `*.env`; not templates such
  as `.env.example`): committed, it is a file of secrets in the clear;
- kustomize `secretGenerator` entries with `literals` are `secret-data` too;
- `private-key` also covers DER keys (PKCS#1, SEC1, unencrypted PKCS#8) and PKCS#12 bundles that
  open without a password. UTF-16 text (with or without a BOM) is decoded and scanned like UTF-8.

Allowing a finding, for test fixtures only:
- `ksecrets: allow <kind>[ <kind>...]` in a comment on the finding's line or the line above it;
- `ksecrets: allow-file <kind>[ <kind>...]` anywhere in the file;
- `.ksecrets-scan-ignore` at the root: one path glob per line (`fnmatch`, `*` also matches `/`),
  optionally followed by the kinds it allows (all kinds when none is given); `#` starts a comment.

Values are held only as bytes to search for; no message, exception or finding includes one.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import glob
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Iterator, Sequence

from ksecrets import sopsrules, yamlio
from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.envfile import parse_env_file
from ksecrets.tokens import find_credentials, line_of as _line_of

ENV_VALUE = "env-value"
PRIVATE_KEY = "private-key"
SECRET_DATA = "secret-data"
KEY_BACKUP = "unencrypted-key-backup"
CREDENTIAL = "credential"
ENV_FILE = "env-file"
KINDS: tuple[str, ...] = (ENV_VALUE, PRIVATE_KEY, SECRET_DATA, KEY_BACKUP, CREDENTIAL, ENV_FILE)

IGNORE_FILE = ".ksecrets-scan-ignore"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"  # = ksecrets.sealing.keys.KEY_LABEL (no crypto import here)
# Shorter values ("1", "true", "dev") match everywhere; searching for them is noise, not safety.
MIN_VALUE_LENGTH = 6
# Directories never worth scanning when a directory is walked (git ls-files never lists them).
SKIP_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        ".tools",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "build",
        "dist",
    }
)
YAML_SUFFIXES = (".yaml", ".yml", ".json")
_BINARY_PROBE = 8192

# BEGIN lines of PKCS#1 (RSA/EC/DSA), PKCS#8, OpenSSH and PGP private keys; the label group tells
# ENCRYPTED ones apart.
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]*?)PRIVATE KEY( BLOCK)?-----")
# A base64-encoded PEM (a Secret's `tls.key`) starts with base64("-----BEGIN ") = "LS0tLS1CRUdJTi";
# such a run is decoded (just its head) to see whether it is a private key.
_B64_PEM = re.compile(rb"LS0tLS1CRUdJTi[A-Za-z0-9+/]{8,}")
_BACKUP_ARMOUR = re.compile(rb"-----BEGIN KSECRETS SEALING KEY BACKUP-----\s*([A-Za-z0-9+/=\s]*?)-----END")
_BACKUP_MAGIC = b"KSBK"  # ksecrets.sealing.backup.MAGIC: the encrypted format's header
# A manifest without a YAML suffix (`keys.bak`, stdin saved to a file): its first content line.
_MANIFEST_START = re.compile(
    rb"\A(?:\s*#[^\n]*\n|\s*---[^\n]*\n|\s)*(?:apiVersion:|kind:|\{\s*\"(?:apiVersion|kind)\")"
)
_ALLOW = re.compile(r"ksecrets:\s*allow\s+([a-z][a-z0-9-]*(?:[ \t,]+[a-z][a-z0-9-]*)*)")
_ALLOW_FILE = re.compile(r"ksecrets:\s*allow-file\s+([a-z][a-z0-9-]*(?:[ \t,]+[a-z][a-z0-9-]*)*)")
# Fallback for YAML that does not parse (templates): a top-level `kind: Secret` and a `data:` or
# `stringData:` key followed by an indented entry.
_KIND_SECRET = re.compile(rb"^kind:[ \t]*[\"']?Secret[\"']?[ \t]*(?:#.*)?$", re.M)
_DATA_KEY = re.compile(rb"^(?:data|stringData):[ \t]*(?:#.*)?\r?\n[ \t]+[^ \t\r\n#]", re.M)


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class EnvValue:
    """One value to look for. `repr` never shows the bytes."""

    source: str
    key: str
    value: bytes = field(repr=False)


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    kinds: frozenset[str]  # empty: every kind

    def allows(self, path: str, kind: str) -> bool:
        return (not self.kinds or kind in self.kinds) and fnmatch.fnmatchcase(path, self.pattern)


# --- inputs --------------------------------------------------------------------------------------


def load_env_values(paths: Iterable[str], allow_key_names: Collection[str] = ()) -> tuple[list[EnvValue], int]:
    """Values of the env files (kubectl's env-file rules) and how many were too short to search."""
    values: list[EnvValue] = []
    short = 0
    for path in paths:
        data = read_bytes(path, "env file")
        for key, value in parse_env_file(data, path, allow_key_names=allow_key_names).items():
            if len(value) < MIN_VALUE_LENGTH:
                short += 1
                continue
            values.append(EnvValue(path, key, value))
    return values, short


def parse_ignore_file(text: str, source: str) -> list[IgnoreRule]:
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, *kinds = line.split()
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise KsecretsError(
                f"{source}: line {number}: unknown finding kind {unknown[0]!r} (kinds: {', '.join(KINDS)})"
            )
        rules.append(IgnoreRule(pattern.rstrip("/") + ("*" if pattern.endswith("/") else ""), frozenset(kinds)))
    return rules


def load_ignore_file(path: str | os.PathLike[str]) -> list[IgnoreRule]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise KsecretsError(f"{p}: cannot read: {getattr(exc, 'strerror', None) or 'not UTF-8'}") from None
    return parse_ignore_file(text, str(p))


def tracked_files(root: str | os.PathLike[str] = ".") -> list[str]:
    """`git ls-files` of the work tree at `root` (paths relative to it), existing files only."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except FileNotFoundError:
        raise KsecretsError("git is not installed; give the PATHS to scan") from None
    except subprocess.CalledProcessError:
        raise KsecretsError(f"{root}: not a git work tree; give the PATHS to scan") from None
    names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
    # A file deleted in the work tree but still in the index has nothing left to leak.
    return [n for n in names if os.path.isfile(os.path.join(root, n))]


def expand_paths(paths: Sequence[str], skip: Iterable[str] = ()) -> list[str]:
    """Files named, and the files under directories named; a missing path is bad input.

    `skip` (absolute paths) are left out of directory walks only: the env files being searched
    for sit in the work tree uncommitted; named explicitly (or staged), they are findings.
    """
    skipped = {os.path.abspath(p) for p in skip}
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for top, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                out += [
                    os.path.join(top, f) for f in sorted(files) if os.path.abspath(os.path.join(top, f)) not in skipped
                ]
        elif os.path.isfile(path):
            out.append(path)
        elif os.path.lexists(path):
            continue  # a socket, fifo or dangling symlink holds no committed content
        else:
            raise KsecretsError(f"{path}: no such file or directory")
    return out


# --- rules ---------------------------------------------------------------------------------------

# Committed templates (`.env.example`, `secret.yaml.template`) hold placeholders, not secrets:
# never env files to search, never values to adopt. The one list (scan, hooks, adopt).
TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".tmpl")


def is_template(path: str) -> bool:
    return os.path.basename(path).lower().endswith(TEMPLATE_SUFFIXES)


# Env files by name (what `.env*`/`*.env` globs match), minus templates.
def is_env_file_name(path: str) -> bool:
    name = os.path.basename(path).lower()
    if is_template(name):
        return False
    return name == ".env" or name.startswith(".env.") or (name.endswith(".env") and len(name) > 4)


def _utf16(data: bytes) -> str | None:
    """The text of a UTF-16 file (BOM, or every other byte NUL in ASCII-heavy text), else None."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        codec = "utf-16"
    else:
        probe = data[:_BINARY_PROBE]
        if len(probe) < 4:
            return None
        even, odd = probe[0::2], probe[1::2]
        if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
            codec = "utf-16-le"
        elif even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
            codec = "utf-16-be"
        else:
            return None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def find_der_keys(data: bytes) -> Iterator[tuple[int, str]]:
    """A binary file that is a DER private key, or a PKCS#12 bundle that opens without a password."""
    if not data.startswith(b"\x30") or len(data) > 1 << 20:
        return
    from cryptography.hazmat.primitives.serialization import load_der_private_key, pkcs12

    try:
        load_der_private_key(data, password=None)
        yield 1, "DER"
        return
    except (ValueError, TypeError):  # not a key, or encrypted (TypeError: a password is needed)
        pass
    except Exception:  # noqa: BLE001 - unsupported key types: not a finding to crash on
        pass
    for password in (None, b""):
        try:
            key, _, _ = pkcs12.load_key_and_certificates(data, password)
        except (ValueError, TypeError):
            continue
        except Exception:  # noqa: BLE001
            continue
        if key is not None:
            yield 1, "PKCS#12 without a password"
        return


def find_secret_generators(data: bytes, path: str = "file") -> Iterator[tuple[int, str, str]]:
    """kustomize `secretGenerator` entries with `literals` (values in the clear)."""
    if b"secretGenerator" not in data:
        return
    try:
        nodes = yamlio.compose_all(data.decode("utf-8"), path)  # bounded: a hostile file is refused
    except (UnicodeDecodeError, yamlio.YAMLError):
        return
    for node in nodes:
        gen = _map(node).get("secretGenerator") if node is not None else None
        if gen is None or not isinstance(gen[1], yamlio.SequenceNode):
            continue
        for item in gen[1].value:
            lits = _map(item).get("literals")
            if lits is None or not isinstance(lits[1], yamlio.SequenceNode):
                continue
            for lit in lits[1].value:
                if isinstance(lit, yamlio.ScalarNode) and "=" in lit.value and lit.value.split("=", 1)[1]:
                    key = lit.value.split("=", 1)[0]
                    yield lit.start_mark.line + 1, SECRET_DATA, f"kustomize secretGenerator literal {key}"


# What follows a BEGIN line in a real key: line breaks (or `\n` escapes, in JSON and string
# literals) and indentation, then either the base64 body or RFC 1421 headers.
_PEM_BODY = re.compile(rb"(?:\s|\\n|\\r)+(?:(Proc-Type:[^\r\n\\]*)|[A-Za-z0-9+/=]{16})")


def _is_private_key_block(data: bytes, match: re.Match) -> bool:
    """An unencrypted key: a body follows the BEGIN line (a bare header in code is no key), and
    neither the label (PKCS#8 `ENCRYPTED PRIVATE KEY`) nor a legacy `Proc-Type: 4,ENCRYPTED`
    header says it is passphrase-protected."""
    if b"ENCRYPTED" in match.group(1):
        return False
    body = _PEM_BODY.match(data, match.end())
    if body is None:
        return False
    return not (body.group(1) and b"ENCRYPTED" in body.group(1))


def find_private_keys(data: bytes) -> Iterator[tuple[int, str]]:
    """(line, detail) of each unencrypted PEM private key, plain or base64-encoded."""
    for match in _PEM.finditer(data):
        if _is_private_key_block(data, match):
            yield _line_of(data, match.start()), ""
    for match in _B64_PEM.finditer(data):
        run = match.group(0)
        head = run[: (min(len(run), 160) // 4) * 4]
        try:
            decoded = base64.b64decode(head, validate=True)
        except (binascii.Error, ValueError):
            continue
        pem = _PEM.match(decoded)
        if pem and _is_private_key_block(decoded, pem):
            yield _line_of(data, match.start()), "base64-encoded"


def find_unencrypted_backups(data: bytes) -> Iterator[tuple[int, str]]:
    """A backup armour whose body does not start with the encrypted format's header."""
    for match in _BACKUP_ARMOUR.finditer(data):
        head = b"".join(match.group(1).split())[:8]
        try:
            magic = base64.b64decode(head[: len(head) // 4 * 4], validate=True)[:4]
        except (binascii.Error, ValueError):
            magic = b""
        if magic != _BACKUP_MAGIC:
            yield _line_of(data, match.start()), "backup armour without the encrypted header"


def looks_like_manifest(path: str, data: bytes) -> bool:
    return path.lower().endswith(YAML_SUFFIXES) or _MANIFEST_START.match(data) is not None


def _env_patterns(values: Sequence[EnvValue]) -> list[tuple[bytes, EnvValue, str]]:
    out = []
    for v in values:
        out.append((v.value, v, ""))
        out.append((base64.b64encode(v.value), v, "base64"))
    return out


def find_env_values(
    data: bytes, patterns: Sequence[tuple[bytes, EnvValue, str]], skip_source: str | None = None
) -> Iterator[tuple[int, str]]:
    for needle, v, form in patterns:
        if skip_source is not None and os.path.abspath(v.source) == skip_source:
            continue  # the env file itself: reported once, as a whole, by scan_bytes
        start = data.find(needle)
        seen_lines: set[int] = set()
        while start != -1:
            line = _line_of(data, start)
            if line not in seen_lines:
                seen_lines.add(line)
                detail = f"value of {v.key} from {v.source}" + (f", {form}" if form else "")
                yield line, detail
            start = data.find(needle, start + 1)


def _map(node: yamlio.Node | None) -> dict[str, tuple[yamlio.Node, yamlio.Node]]:
    if not isinstance(node, yamlio.MappingNode):
        return {}
    out: dict[str, tuple[yamlio.Node, yamlio.Node]] = {}
    for key, value in node.value:
        if isinstance(key, yamlio.ScalarNode):
            out[key.value] = (key, value)
    return out


def _scalar(entry: tuple[yamlio.Node, yamlio.Node] | None) -> str | None:
    if entry is None or not isinstance(entry[1], yamlio.ScalarNode):
        return None
    return entry[1].value


def _has_values(node: yamlio.Node) -> bool:
    """A mapping with at least one entry that is not null or the empty string."""
    if not isinstance(node, yamlio.MappingNode):
        return False
    for _, value in node.value:
        if isinstance(value, yamlio.ScalarNode) and (value.tag.endswith(":null") or value.value == ""):
            continue
        return True
    return False


def _secret_findings(node: yamlio.Node) -> Iterator[tuple[int, str, str]]:
    fields = _map(node)
    kind = _scalar(fields.get("kind"))
    if kind is not None and kind.endswith("List"):
        items = fields.get("items")
        if items is not None and isinstance(items[1], yamlio.SequenceNode):
            for item in items[1].value:
                yield from _secret_findings(item)
        return
    if kind != "Secret" or _scalar(fields.get("apiVersion")) not in ("v1", None):
        return
    labels = _map(_map(fields["metadata"][1]).get("labels", (None, None))[1]) if "metadata" in fields else {}
    is_key = KEY_LABEL in labels
    for name in ("data", "stringData"):
        entry = fields.get(name)
        if entry is not None and _has_values(entry[1]):
            line = entry[0].start_mark.line + 1
            if is_key:
                yield line, KEY_BACKUP, "sealing key Secret with its private key"
            else:
                yield line, SECRET_DATA, f"v1 Secret with {name}"


def _sops_metadata(node: yamlio.Node) -> dict[str, str] | None:
    """The scalar fields of a document's top-level `sops` mapping when it has a `mac` (a SOPS file)."""
    entry = _map(node).get(sopsrules.METADATA_KEY)
    if entry is None or not isinstance(entry[1], yamlio.MappingNode):
        return None
    fields = {k: v.value for k, (_, v) in _map(entry[1]).items() if isinstance(v, yamlio.ScalarNode)}
    return fields if "mac" in fields else None


def _sops_findings(node: yamlio.Node, meta: dict[str, str], path: str) -> Iterator[tuple[int, str, str]]:
    """A SOPS file's values that its own rules encrypt but that are in clear (not `ENC[...]`, not
    empty): a file decrypted in place, or edited by hand after `sops -e`; in a Secret, also every
    value of data/stringData its rules leave in clear. An encrypted file passes."""
    try:
        rules: sopsrules.Rules | None = sopsrules.rules(meta, path)
    except KsecretsError:
        rules = None  # comment rules, several rules: judge a Secret's data/stringData alone
    is_secret = _scalar(_map(node).get("kind")) == "Secret"

    def walk(n: yamlio.Node, keys: tuple[str, ...], depth: int) -> Iterator[tuple[int, str, str]]:
        if depth > yamlio.MAX_DEPTH:
            return  # an alias inside its own anchor: nothing more to find in it
        if isinstance(n, yamlio.MappingNode):
            for k, v in n.value:
                if isinstance(k, yamlio.ScalarNode) and not (depth == 0 and k.value == sopsrules.METADATA_KEY):
                    yield from walk(v, (*keys, k.value), depth + 1)
        elif isinstance(n, yamlio.SequenceNode):
            for item in n.value:
                yield from walk(item, keys, depth + 1)
        elif isinstance(n, yamlio.ScalarNode) and keys and n.value != "" and not n.tag.endswith(":null"):
            # A Secret's data/stringData reach the cluster as values whatever the file's rules say
            # (an `_unencrypted` suffix or a regex that leaves them out): in clear, a finding.
            encrypted = (rules is not None and rules.encrypted(keys)) or (
                is_secret and keys[0] in ("data", "stringData")
            )
            if encrypted and not sopsrules.is_ciphertext(n.value):
                yield n.start_mark.line + 1, SECRET_DATA, f"SOPS file with a value in clear at {'.'.join(keys)}"

    yield from walk(node, (), 0)


def find_secret_objects(data: bytes, path: str) -> Iterator[tuple[int, str, str]]:
    """(line, kind, detail) of each v1 Secret with data in a YAML/JSON file, and of each value in
    clear in a SOPS file (an encrypted SOPS Secret passes)."""
    if b"Secret" not in data and b"sops" not in data:
        return
    try:
        text = data.decode("utf-8")
        nodes = yamlio.compose_all(text, path)  # bounded: a hostile file is refused
    except (UnicodeDecodeError, yamlio.YAMLError):
        # Not YAML we can read (a template, say): fall back to a line heuristic.
        if _KIND_SECRET.search(data):
            for match in _DATA_KEY.finditer(data):
                yield _line_of(data, match.start()), SECRET_DATA, "v1 Secret with data; the file does not parse"
        return
    for node in nodes:
        if node is None:
            continue
        meta = _sops_metadata(node)
        if meta is not None:
            yield from _sops_findings(node, meta, path)
        else:
            yield from _secret_findings(node)


# --- allow markers -------------------------------------------------------------------------------


def _kinds_in(match_group: str) -> set[str]:
    return set(re.split(r"[\s,]+", match_group.strip()))


def _allowed_inline(lines: list[str], line: int, kind: str) -> bool:
    for n in (line, line - 1):
        if 1 <= n <= len(lines):
            m = _ALLOW.search(lines[n - 1])
            if m and kind in _kinds_in(m.group(1)):
                return True
    return False


def scan_bytes(
    path: str,
    data: bytes,
    env_patterns: Sequence[tuple[bytes, EnvValue, str]] = (),
    ignore: Sequence[IgnoreRule] = (),
    *,
    rel: str | None = None,
) -> list[Finding]:
    """Findings in one file's content, after allow markers and ignore rules.

    `path` is how findings name the file; `rel` (default `path`) is what ignore globs match.
    """
    norm = _posix(path)
    raw: list[Finding] = []
    if b"\0" in data[:_BINARY_PROBE]:
        text16 = _utf16(data)
        if text16 is None:
            raw += [Finding(norm, line, PRIVATE_KEY, detail) for line, detail in find_der_keys(data)]
            return _allowed(raw, "", norm, ignore, rel)
        data = text16.lstrip("\ufeff").encode("utf-8")
    for line, detail in find_private_keys(data):
        raw.append(Finding(norm, line, PRIVATE_KEY, detail))
    for line, detail in find_credentials(data):
        raw.append(Finding(norm, line, CREDENTIAL, detail))
    if env_patterns:
        here = os.path.abspath(path)
        if any(os.path.abspath(v.source) == here for _, v, _ in env_patterns):
            raw.append(Finding(norm, 1, ENV_VALUE, "the env file itself"))
        for line, detail in find_env_values(data, env_patterns, skip_source=here):
            raw.append(Finding(norm, line, ENV_VALUE, detail))
    for line, detail in find_unencrypted_backups(data):
        raw.append(Finding(norm, line, KEY_BACKUP, detail))
    if looks_like_manifest(path, data):
        for line, kind, detail in find_secret_objects(data, path):
            raw.append(Finding(norm, line, kind, detail))
        for line, kind, detail in find_secret_generators(data, path):
            raw.append(Finding(norm, line, kind, detail))
    if is_env_file_name(path) and not any(f.kind == ENV_VALUE and f.detail == "the env file itself" for f in raw):
        raw.append(Finding(norm, 1, ENV_FILE, "an env file: keep it out of Git (seal or push its values)"))
    return _allowed(raw, data.decode("utf-8", "replace"), norm, ignore, rel)


def _allowed(raw: list[Finding], text: str, norm: str, ignore: Sequence[IgnoreRule], rel: str | None) -> list[Finding]:
    if not raw:
        return []
    lines = text.splitlines()
    file_allows: set[str] = set()
    for m in _ALLOW_FILE.finditer(text):
        file_allows |= _kinds_in(m.group(1))
    match_path = _posix(rel) if rel is not None else norm
    out = []
    for f in raw:
        if f.kind in file_allows or _allowed_inline(lines, f.line, f.kind):
            continue
        if any(rule.allows(match_path, f.kind) for rule in ignore):
            continue
        out.append(f)
    return sorted(set(out))


def _posix(path: str) -> str:
    norm = Path(path).as_posix()
    while norm.startswith("./"):
        norm = norm[2:]
    return norm


def scan_files(
    files: Iterable[str], env_values: Sequence[EnvValue] = (), ignore: Sequence[IgnoreRule] = (), *, root: str = "."
) -> list[Finding]:
    """Scan files (paths as the user gave them); ignore globs match paths relative to `root`."""
    patterns = _env_patterns(env_values)
    root_abs = os.path.abspath(root)
    findings: list[Finding] = []
    for path in files:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KsecretsError(f"{path}: cannot read: {exc.strerror}") from None
        rel = os.path.relpath(os.path.abspath(path), root_abs)
        findings += scan_bytes(path, data, patterns, ignore, rel=rel)
    return findings


def env_files_matching(globs: Sequence[str], root: str = ".") -> list[str]:
    """Existing files matching the globs under `root` (none is fine: a hook runs on every machine),
    except templates such as `.env.example`."""
    out: list[str] = []
    for pattern in globs:
        for match in sorted(glob.glob(os.path.join(root, pattern), include_hidden=True)):
            match = os.path.normpath(match)  # "./.env" -> ".env", as the user would name it
            if is_template(match):
                continue
            if os.path.isfile(match) and match not in out:
                out.append(match)
    return out


def scan(
    paths: Sequence[str] = (),
    env_files: Sequence[str] = (),
    *,
    root: str = ".",
    ignore_file: str | None = None,
    env_globs: Sequence[str] = (),
    allow_key_names: Collection[str] = (),
) -> tuple[list[Finding], int]:
    """Scan PATHS, or the files git tracks under `root` when none is given.

    Returns the findings (sorted by file and line) and how many env values were too short to search.
    """
    sources = list(env_files) + [f for f in env_files_matching(env_globs, root) if f not in env_files]
    env_values, short = load_env_values(sources, allow_key_names)
    ignore = load_ignore_file(ignore_file if ignore_file is not None else os.path.join(root, IGNORE_FILE))
    if paths:
        files = expand_paths(paths, skip=sources)
    else:
        files = [os.path.join(root, n) for n in tracked_files(root)]
    return scan_files(files, env_values, ignore, root=root), short

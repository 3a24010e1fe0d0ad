"""The SOPS file format (getsops/sops v3), YAML flavour, with age recipients: the one module that
knows it. A user needs no `sops` binary; the real one (tools/sops) is the oracle in the tests.

What a SOPS YAML file is, as sops 3.13 reads and writes it (read from its `sops.go`,
`aes/cipher.go`, `stores/yaml`, `stores/metadata.go`, `age/keysource.go`):

- The document's own keys, plus one top-level `sops:` mapping (the metadata). A random 32-byte
  *data key* encrypts every value; each age recipient holds that key encrypted to it (an
  ASCII-armored age file under `sops.age[].enc`).
- A leaf is encrypted when the file's rule says so (`encrypted_regex`, `unencrypted_regex`,
  `encrypted_suffix` or `unencrypted_suffix`, matched against every key of its path; with no rule
  the default is `unencrypted_suffix: _unencrypted`). Flux users write Secrets with
  `encrypted_regex: ^(data|stringData)$`, which is what `encrypt_secret` writes.
- An encrypted leaf is `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool>]`:
  AES-256-GCM, a fresh 32-byte IV, the additional data the leaf's path (map keys only, list
  indexes are not in it) joined as `a:b:c:`. An empty string stays an empty string.
- The MAC: SHA-512 over the plaintext bytes of every leaf in document order (all leaves, or only
  the encrypted ones after a fixed prefix when `mac_only_encrypted`), upper-case hex, itself
  encrypted like a value with `lastmodified` (RFC 3339, seconds) as its additional data. It binds
  every value and the order of the keys, not the metadata: re-keying (`updatekeys`) keeps it.
- Plain scalars are typed by Go's yaml.v3 rules (YAML 1.2-like: `yes` is a string, `0o17` and
  `1e5` are numbers), which the MAC sees (`3` hashes as `3`, `true` as `True`): this module
  resolves them the same way, refuses what it cannot reproduce exactly (timestamps, explicit
  tags, non-string keys) with a one-line error, and quotes on output every string yaml.v3 would
  read as something else.

Comments are not kept (the MAC does not cover them). Errors name the file and the key path,
never a value. Nothing here reads files or knows a stack: callers pass text and write the result
atomically.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ksecrets import yamlio
from ksecrets.sopsrules import (  # noqa: F401 - part of this module's interface
    DEFAULT_UNENCRYPTED_SUFFIX,
    ENC as _ENC,
    METADATA_KEY,
    SECRET_ENCRYPTED_REGEX,
    Rules,
    SopsError,
    is_ciphertext,
    looks_like_sops,
    rules as _rules,
)

# The format version written into `sops.version`: the sops release this module was checked
# against (tests/e2e/test_sops_interop.py runs exactly that binary).
FORMAT_VERSION = "3.13.3"
_IV_SIZE = 32
_TAG_SIZE = 16
# sops.go MACOnlyEncryptedInitialization: hashed first when `mac_only_encrypted` is set.
_MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")
_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
_OTHER_MASTER_KEYS = ("pgp", "kms", "gcp_kms", "hckms", "azure_kv", "hc_vault")


# --- Go yaml.v3 scalar typing ---------------------------------------------------------------------


class _Unsupported(Exception):
    """A scalar this module cannot type exactly as yaml.v3 does."""


_GO_NULL = {"", "~", "null", "Null", "NULL"}
_GO_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_GO_SPECIAL_FLOAT = {
    **{s: math.nan for s in (".nan", ".NaN", ".NAN")},
    **{s: math.inf for s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{s: -math.inf for s in ("-.inf", "-.Inf", "-.INF")},
}
_GO_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_GO_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?\s*(Z|[-+][0-9]{1,2}(:[0-9]{2})?)?)?$"
)
_INT_DIGITS = {
    16: re.compile(r"^[0-9a-fA-F]+$"),
    10: re.compile(r"^[0-9]+$"),
    8: re.compile(r"^[0-7]+$"),
    2: re.compile(r"^[01]+$"),
}
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64) (sign, 0x/0o/0b or a leading 0 for octal); None if it fails.
    A value past int64 raises _Unsupported: yaml.v3 gives a uint64, which sops cannot walk."""
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[prefix], body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    if not _INT_DIGITS[base].match(digits):
        return None
    value = int(digits, base) * (-1 if sign == "-" else 1)
    if not _INT64[0] <= value <= _INT64[1]:
        raise _Unsupported("an integer outside 64 bits")
    return value


def go_scalar(value: str, *, plain: bool) -> Any:
    """What Go's yaml.v3 decodes a scalar into (as sops's YAML store does): str, int, float, bool
    or None. Raises _Unsupported for timestamps (a time.Time, hashed in RFC 3339 nanoseconds)."""
    if not plain:
        return value
    if value in _GO_NULL:
        return None
    first = value[0]
    if first in "yYnNtTfFoO~":
        return _GO_BOOL.get(value, value)
    if first == ".":
        if value in _GO_SPECIAL_FLOAT:
            return _GO_SPECIAL_FLOAT[value]
        return float(value) if _GO_DOT_FLOAT.match(value) else value
    if first in "+-0123456789":
        if value in _GO_SPECIAL_FLOAT:
            return _GO_SPECIAL_FLOAT[value]
        if _GO_TIMESTAMP.match(value):
            raise _Unsupported("a plain timestamp")
        text = value.replace("_", "")
        number = _go_parse_int(text) if text else None
        if number is not None:
            return number
        if _GO_YAML_FLOAT.match(text):
            f = float(text)
            if not math.isinf(f):  # strconv.ParseFloat reports a range error: the value stays a string
                return f
    return value


def go_needs_quotes(text: str) -> bool:
    """A string that yaml.v3 would not read back as that string when written plain."""
    try:
        return not isinstance(go_scalar(text, plain=True), str)
    except _Unsupported:
        return True


def go_format_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest digits that round-trip, never an
    exponent (`1e+16` is `10000000000000000`, `1.0` is `1`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(Decimal(repr(value)).normalize(), "f")


def _to_bytes(value: Any) -> bytes:
    """sops.ToBytes: what the MAC hashes for a leaf."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return go_format_float(value).encode()
    raise TypeError(type(value).__name__)


# --- reading the YAML into a tree ------------------------------------------------------------------


def _path_text(path: Sequence[str]) -> str:
    return ".".join(path) if path else "(top level)"


def _key(node: Any, source: str, path: list[str]) -> str:
    """A mapping key as yaml.v3 types it: sops walks string keys only."""
    line = node.start_mark.line + 1
    if not isinstance(node, yamlio.ScalarNode) or node.tag.endswith(":merge"):
        raise SopsError(
            f"{source}: line {line}: {_path_text(path)}: a mapping key must be a plain string (no complex or merge keys)"
        )
    try:
        key = go_scalar(node.value, plain=not node.style)
    except _Unsupported:
        key = None
    if not isinstance(key, str) or yamlio.explicit_tag(node):
        raise SopsError(
            f"{source}: line {line}: {_path_text(path)}: a key that is not a string; sops supports string keys only"
        )
    return key


def _build(node: Any, source: str, path: list[str], *, metadata: bool = False, depth: int = 0) -> Any:
    """The node graph as dicts, lists and Go-typed scalars (aliases expand, as yaml.v3 does; an
    alias inside its own anchor would recurse for ever and is refused by depth)."""
    where = f"{source}: line {node.start_mark.line + 1}: {_path_text(path)}"
    if depth > yamlio.MAX_DEPTH:
        raise SopsError(f"{where}: nested more than {yamlio.MAX_DEPTH} levels deep (a recursive alias?)")
    if isinstance(node, yamlio.ScalarNode):
        if metadata:  # read by sops through mapstructure, weakly typed: a plain timestamp is fine
            try:
                return go_scalar(node.value, plain=not node.style)
            except _Unsupported:
                return node.value
        if yamlio.explicit_tag(node):
            raise SopsError(f"{where}: an explicit YAML tag ({node.tag}) is not supported in a SOPS file")
        try:
            return go_scalar(node.value, plain=not node.style)
        except _Unsupported as exc:
            raise SopsError(f"{where}: {exc} is not supported in a SOPS file (quote the value)") from None
    if isinstance(node, yamlio.SequenceNode):
        return [_build(item, source, path, metadata=metadata, depth=depth + 1) for item in node.value]
    if isinstance(node, yamlio.MappingNode):
        return _build_mapping(node, source, path, metadata=metadata, depth=depth + 1)
    raise SopsError(f"{where}: unsupported YAML node")


def _build_mapping(
    node: Any, source: str, path: list[str], *, metadata: bool = False, top: bool = False, depth: int = 0
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _key(key_node, source, path)
        if key in out:
            raise SopsError(f"{source}: line {key_node.start_mark.line + 1}: {_path_text([*path, key])}: duplicate key")
        meta = metadata or (top and key == METADATA_KEY)
        out[key] = _build(value_node, source, [*path, key], metadata=meta, depth=depth)
    return out


def _read_tree(text: str, source: str) -> dict[str, Any]:
    try:
        docs = yamlio.compose_all(text, source)
    except yamlio.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SopsError(
            f"{source}: {where}invalid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}"
        ) from None
    if len(docs) != 1:
        raise SopsError(f"{source}: holds {len(docs)} YAML documents; a SOPS file here holds exactly one")
    if not isinstance(docs[0], yamlio.MappingNode):
        raise SopsError(f"{source}: the document is not a mapping")
    return _build_mapping(docs[0], source, [], top=True)


# --- the encryption rules, the cipher, the MAC ------------------------------------------------------


def _encrypt_value(value: Any, key: bytes, aad: str) -> str:
    """aes.Cipher.Encrypt: an empty string stays empty; a fresh 32-byte IV otherwise."""
    if isinstance(value, str) and value == "":
        return ""
    if isinstance(value, bool):
        kind, plain = "bool", b"True" if value else b"False"
    elif isinstance(value, str):
        kind, plain = "str", value.encode("utf-8")
    elif isinstance(value, int):
        kind, plain = "int", str(value).encode()
    elif isinstance(value, float):
        kind, plain = "float", go_format_float(value).encode()
    else:
        raise TypeError(type(value).__name__)
    iv = os.urandom(_IV_SIZE)
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode("utf-8"))
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(sealed[:-_TAG_SIZE]).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(sealed[-_TAG_SIZE:]).decode()},type:{kind}]"
    )


def _go_atoi(text: str) -> int:
    if not re.fullmatch(r"[-+]?[0-9]+", text):
        raise ValueError
    return int(text)


def _go_parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError


def _decrypt_value(value: str, key: bytes, aad: str, where: str) -> Any:
    """aes.Cipher.Decrypt, typed by the value's `type:`."""
    if value == "":
        return ""
    m = _ENC.match(value)
    if not m:
        raise SopsError(f"{where}: not an encrypted SOPS value although the file's rules say it is encrypted")
    try:
        data, iv, tag = (base64.b64decode(g, validate=True) for g in m.groups()[:3])
    except (binascii.Error, ValueError):
        raise SopsError(f"{where}: an encrypted value that is not valid base64") from None
    kind = m.group(4)
    if len(iv) < 8 or len(tag) != _TAG_SIZE:
        raise SopsError(f"{where}: an encrypted value with a malformed IV or tag")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode("utf-8"))
    except InvalidTag:
        raise SopsError(
            f"{where}: cannot decrypt (the ciphertext, its key path or the data key does not match)"
        ) from None
    try:
        text = plain.decode("utf-8")
        if kind == "str":
            return text
        if kind == "int":
            return _go_atoi(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return _go_parse_bool(text)
    except (UnicodeDecodeError, ValueError):
        raise SopsError(f"{where}: a decrypted value that is not a valid {kind}") from None
    raise SopsError(f"{where}: encrypted values of type {kind!r} are not supported here")


def _leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    """Every leaf in document order with its path of map keys (sops walkBranch/walkSlice: list
    items share their list's path; null leaves are skipped)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(tree, list):
        for item in tree:
            yield from _leaves(item, path)
    elif tree is not None:
        yield path, tree


def _map_leaves(tree: Any, fn: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn, (*path, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map_leaves(item, fn, path) for item in tree]
    if tree is None:
        return None
    return fn(path, tree)


def _aad(path: Sequence[str]) -> str:
    return ":".join(path) + ":"


def compute_mac(plain_tree: Mapping[str, Any], rules: Rules) -> str:
    """The MAC of a plaintext tree (without `sops`): SHA-512, upper-case hex."""
    h = hashlib.sha512()
    if rules.mac_only_encrypted:
        h.update(_MAC_ONLY_ENCRYPTED_INIT)
    for path, value in _leaves(dict(plain_tree)):
        if not rules.mac_only_encrypted or rules.encrypted(path):
            h.update(_to_bytes(value))
    return h.hexdigest().upper()


def _go_rfc3339(text: str, where: str) -> str:
    """time.Parse(time.RFC3339, text).Format(time.RFC3339): fractions dropped, UTC as `Z`."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", text)
    if not m:
        raise SopsError(f"{where}: not an RFC 3339 time")
    zone = m.group(3)
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    return m.group(1) + zone


# --- age ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgeKey:
    """An age X25519 key pair: `identity` is secret (AGE-SECRET-KEY-1...), `recipient` public."""

    identity: str = field(repr=False)
    recipient: str

    def key_file(self, created: datetime | None = None) -> str:
        """The text `age-keygen` writes (what SOPS_AGE_KEY_FILE and Flux's `age.agekey` hold)."""
        when = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"# created: {when}\n# public key: {self.recipient}\n{self.identity}\n"


def generate_age_key() -> AgeKey:
    """A new age X25519 key pair (for `ksecrets keygen` of a sops stack)."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    return AgeKey(identity=str(identity), recipient=str(identity.to_public()))


def identities_from_key_file(text: str, source: str) -> list[str]:
    """The AGE-SECRET-KEY-1 lines of an age key file (comments and blank lines skipped)."""
    out = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    for n, line in enumerate(out, 1):
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise SopsError(f"{source}: key {n}: not an age X25519 identity (AGE-SECRET-KEY-1...)")
    if not out:
        raise SopsError(f"{source}: holds no age identity")
    return out


def _recipient(text: str, where: str) -> Any:
    from pyrage import x25519

    try:
        return x25519.Recipient.from_str(text.strip())
    except Exception:
        raise SopsError(f"{where}: not an age X25519 recipient (age1...)") from None


def _armor(data: bytes) -> str:
    body = textwrap.wrap(base64.b64encode(data).decode(), 64)
    return "\n".join([_ARMOR_BEGIN, *body, _ARMOR_END]) + "\n"


def _dearmor(text: str, where: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise SopsError(f"{where}: not an armored age file")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise SopsError(f"{where}: armored age data that is not valid base64") from None


def _age_encrypt(data_key: bytes, recipient: str, where: str) -> dict[str, str]:
    import pyrage

    return {"recipient": recipient.strip(), "enc": _armor(pyrage.encrypt(data_key, [_recipient(recipient, where)]))}


# --- the document ---------------------------------------------------------------------------------


@dataclass
class SopsFile:
    """A parsed SOPS file: `tree` as in the file (ciphertexts where encrypted), `meta` the `sops`
    mapping as read (other master keys and unknown fields are kept as they are)."""

    source: str
    tree: dict[str, Any]
    meta: dict[str, Any]

    @property
    def rules(self) -> Rules:
        return _rules(self.meta, self.source)

    @property
    def recipients(self) -> list[str]:
        return [str(k.get("recipient", "")) for k in self.meta.get("age") or [] if isinstance(k, dict)]

    def render(self) -> str:
        return yamlio.dump_quoting({**self.tree, METADATA_KEY: _ordered_meta(self.meta)}, go_needs_quotes)


def _ordered_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata keys sorted by name, as sops writes them (stores.goToSops)."""
    return {k: meta[k] for k in sorted(meta)}


def parse(text: str, source: str) -> SopsFile:
    """Read a SOPS-encrypted YAML file (no key needed)."""
    tree = _read_tree(text, source)
    meta = tree.pop(METADATA_KEY, None)
    if meta is None:
        raise SopsError(f"{source}: not a SOPS file (no top-level `sops` metadata)")
    if not isinstance(meta, dict):
        raise SopsError(f"{source}: sops: not a mapping")
    for name in ("mac", "lastmodified"):
        if not isinstance(meta.get(name), str):
            raise SopsError(f"{source}: sops.{name}: missing or not a string")
    if meta.get("key_groups"):
        raise SopsError(
            f"{source}: sops.key_groups (Shamir key groups) are not supported; use one list of age recipients"
        )
    _rules(meta, source)
    return SopsFile(source=source, tree=tree, meta=meta)


def data_key(doc: SopsFile, identities: Sequence[str]) -> bytes:
    """The file's data key, from the first age stanza one of `identities` opens."""
    import pyrage
    from pyrage import x25519

    try:
        ids = [x25519.Identity.from_str(i.strip()) for i in identities]
    except Exception:
        raise SopsError(f"{doc.source}: an age identity that does not parse") from None
    stanzas = [k for k in doc.meta.get("age") or [] if isinstance(k, dict)]
    if not stanzas:
        raise SopsError(f"{doc.source}: sops.age: no age recipient in the file")
    for n, stanza in enumerate(stanzas):
        blob = _dearmor(str(stanza.get("enc", "")), f"{doc.source}: sops.age[{n}].enc")
        try:
            key = pyrage.decrypt(blob, ids)
        except Exception:
            continue
        if len(key) != 32:
            raise SopsError(f"{doc.source}: sops.age[{n}]: the data key is not 32 bytes")
        return bytes(key)
    raise SopsError(
        f"{doc.source}: none of the given age identities is a recipient of this file ({len(stanzas)} recipient(s))"
    )


def _decrypt_tree(doc: SopsFile, key: bytes) -> dict[str, Any]:
    rules = doc.rules

    def leaf(path: tuple[str, ...], value: Any) -> Any:
        if not rules.encrypted(path):
            return value
        where = f"{doc.source}: {_path_text(path)}"
        if not isinstance(value, str):
            raise SopsError(f"{where}: not an encrypted value although the file's rules say it is encrypted")
        return _decrypt_value(value, key, _aad(path), where)

    return _map_leaves(doc.tree, leaf)


def _verify_mac(doc: SopsFile, key: bytes, plain: Mapping[str, Any]) -> None:
    lastmodified = _go_rfc3339(doc.meta["lastmodified"], f"{doc.source}: sops.lastmodified")
    try:
        stored = _decrypt_value(doc.meta["mac"], key, lastmodified, f"{doc.source}: sops.mac")
    except SopsError:
        raise SopsError(
            f"{doc.source}: MAC mismatch: the MAC does not decrypt (its lastmodified or the MAC was changed)"
        ) from None
    if stored != compute_mac(plain, doc.rules):
        raise SopsError(
            f"{doc.source}: MAC mismatch: the values or their order differ from what the MAC covers (changed outside sops)"
        )


def decrypt(text: str, identities: Sequence[str], source: str) -> dict[str, Any]:
    """The plaintext document (without `sops`), after verifying the MAC."""
    doc = parse(text, source)
    key = data_key(doc, identities)
    plain = _decrypt_tree(doc, key)
    _verify_mac(doc, key, plain)
    return plain


def _seal(
    tree: dict[str, Any], rules: Rules, key: bytes, meta: dict[str, Any], *, now: datetime | None
) -> dict[str, Any]:
    """`meta` with a fresh lastmodified and the MAC of `tree` (plaintext) encrypted under it."""
    lastmodified = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**meta, "lastmodified": lastmodified, "mac": _encrypt_value(compute_mac(tree, rules), key, lastmodified)}


def encrypt(
    plain: Mapping[str, Any],
    recipients: Sequence[str],
    source: str,
    *,
    encrypted_regex: str | None = SECRET_ENCRYPTED_REGEX,
    now: datetime | None = None,
) -> str:
    """A new SOPS file of `plain` for the age `recipients` (`sops -e` with an encrypted_regex, or
    with sops's default rule, `unencrypted_suffix: _unencrypted`, when it is None)."""
    if not recipients:
        raise SopsError(f"{source}: no age recipient to encrypt for")
    if METADATA_KEY in plain:
        raise SopsError(f"{source}: {METADATA_KEY}: a reserved key (the SOPS metadata)")
    rule: dict[str, Any] = (
        {"encrypted_regex": encrypted_regex} if encrypted_regex else {"unencrypted_suffix": DEFAULT_UNENCRYPTED_SUFFIX}
    )
    rules = Rules(**rule)
    key = os.urandom(32)
    tree = _check_plain(dict(plain), source)
    enc = _map_leaves(tree, lambda p, v: _encrypt_value(v, key, _aad(p)) if rules.encrypted(p) else v)
    meta: dict[str, Any] = {
        "age": [_age_encrypt(key, r, f"{source}: recipient {n + 1}") for n, r in enumerate(recipients)],
        **rule,
        "version": FORMAT_VERSION,
    }
    return SopsFile(source, enc, _seal(tree, rules, key, meta, now=now)).render()


def _check_plain(tree: dict[str, Any], source: str) -> dict[str, Any]:
    def leaf(path: tuple[str, ...], value: Any) -> Any:
        if not isinstance(value, (str, int, float, bool)):
            raise SopsError(f"{source}: {_path_text(path)}: a value of type {type(value).__name__} cannot be encrypted")
        return value

    def keys(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise SopsError(f"{source}: {_path_text(path)}: a key that is not a string")
                keys(v, (*path, k))
        elif isinstance(node, list):
            for item in node:
                keys(item, path)

    keys(tree, ())
    return _map_leaves(tree, leaf)


def encrypt_secret(
    manifest: Mapping[str, Any], recipients: Sequence[str], source: str, *, now: datetime | None = None
) -> str:
    """A Kubernetes Secret manifest as a SOPS file encrypting only `data`/`stringData` values, as
    Flux's kustomize-controller decrypts it."""
    if manifest.get("kind") != "Secret":
        raise SopsError(f"{source}: kind: not a Secret")
    for name in ("data", "stringData"):
        values = manifest.get(name)
        if values is not None and not (isinstance(values, dict) and all(isinstance(v, str) for v in values.values())):
            raise SopsError(f"{source}: {name}: must map keys to strings")
    return encrypt(manifest, recipients, source, encrypted_regex=SECRET_ENCRYPTED_REGEX, now=now)


def edit(
    text: str,
    identities: Sequence[str],
    source: str,
    *,
    set_values: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
    field: str = "data",
    now: datetime | None = None,
) -> str:
    """Set and remove keys of one top-level mapping (`data` or `stringData` of a Secret). Every
    other value keeps its ciphertext byte for byte; the MAC is verified first and written anew.
    A key that `field`'s rules would leave unencrypted is refused (it would be written in clear)."""
    doc = parse(text, source)
    rules = doc.rules
    set_values = dict(set_values or {})
    remove = list(remove)
    for k in [*set_values, *remove]:
        if not isinstance(k, str) or not k:
            raise SopsError(f"{source}: {field}: an empty key")
        if not rules.encrypted((field, k)):
            raise SopsError(f"{source}: {field}.{k}: the file's rules leave this key unencrypted; refused")
    for k, v in set_values.items():
        if not isinstance(v, str):
            raise SopsError(f"{source}: {field}.{k}: the value must be a string")
    key = data_key(doc, identities)
    plain = _decrypt_tree(doc, key)
    _verify_mac(doc, key, plain)
    section = doc.tree.get(field)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise SopsError(f"{source}: {field}: not a mapping")
    missing = [k for k in remove if k not in section]
    if missing:
        raise SopsError(f"{source}: {field}: no key {', '.join(sorted(missing))} to remove")
    new_section = dict(section)
    new_plain_section = dict(plain.get(field) or {})
    for k in remove:
        del new_section[k]
        del new_plain_section[k]
    for k, v in set_values.items():
        if k in section and new_plain_section.get(k) == v:
            continue  # unchanged: keep the ciphertext
        new_section[k] = _encrypt_value(v, key, _aad((field, k)))
        new_plain_section[k] = v
    tree = dict(doc.tree)
    plain = dict(plain)
    if new_section or field in tree:
        tree[field] = new_section
        plain[field] = new_plain_section
    return SopsFile(source, tree, _seal(plain, rules, key, doc.meta, now=now)).render()


def updatekeys(text: str, identities: Sequence[str], recipients: Sequence[str], source: str) -> str:
    """Re-encrypt the data key for exactly `recipients` (age); values, MAC and lastmodified stay
    as they are (`sops updatekeys`). The MAC is verified first: a tampered file is not re-keyed."""
    doc = parse(text, source)
    if not recipients:
        raise SopsError(f"{source}: no age recipient to re-key for")
    key = data_key(doc, identities)
    _verify_mac(doc, key, _decrypt_tree(doc, key))
    meta = dict(doc.meta)
    meta["age"] = [_age_encrypt(key, r, f"{source}: recipient {n + 1}") for n, r in enumerate(recipients)]
    return SopsFile(source, doc.tree, meta).render()


def secret_values(text: str, identities: Sequence[str], source: str) -> dict[str, bytes]:
    """A SOPS Secret's values as bytes, as the API server stores them: `data` base64-decoded,
    `stringData` as UTF-8 (winning over `data`, as the API server merges them)."""
    plain = decrypt(text, identities, source)
    out: dict[str, bytes] = {}
    for k, v in (plain.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise SopsError(f"{source}: data.{k}: not valid base64") from None
    for k, v in (plain.get("stringData") or {}).items():
        out[k] = str(v).encode("utf-8")
    return out


# --- the age key as a Kubernetes Secret (Flux's `decryption.secretRef`) ---------------------------

# kustomize-controller reads every data key of the decryption Secret ending in `.agekey`.
AGE_KEY_SUFFIX = ".agekey"
KEY_SECRET_DATA_KEY = "age" + AGE_KEY_SUFFIX


def key_secret_manifest(key_file: str, name: str, namespace: str) -> dict[str, Any]:
    """The Secret kustomize-controller decrypts a stack's SOPS files with (`age.agekey`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {KEY_SECRET_DATA_KEY: base64.b64encode(key_file.encode("utf-8")).decode("ascii")},
    }


def is_key_secret(secret: Mapping[str, Any]) -> bool:
    """A Secret holding age keys the way Flux reads them (a data key ending in `.agekey`)."""
    data = secret.get("data")
    return isinstance(data, Mapping) and any(isinstance(k, str) and k.endswith(AGE_KEY_SUFFIX) for k in data)


def key_secret_identities(secret: Mapping[str, Any], source: str) -> list[str]:
    """Every age identity of an age key Secret (each `*.agekey` value an age key file)."""
    data = secret.get("data") or {}
    out: list[str] = []
    for k in sorted(data):
        if not k.endswith(AGE_KEY_SUFFIX):
            continue
        try:
            text = base64.b64decode(str(data[k]), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SopsError(f"{source}: data.{k}: not a base64 age key file") from None
        out += identities_from_key_file(text, f"{source}: data.{k}")
    if not out:
        raise SopsError(f"{source}: no data key ending in {AGE_KEY_SUFFIX}")
    return out


def recipient_of(identity: str, source: str) -> str:
    """The public key (age1...) of an identity."""
    from pyrage import x25519

    try:
        return str(x25519.Identity.from_str(identity.strip()).to_public())
    except Exception:
        raise SopsError(f"{source}: an age identity that does not parse") from None


# --- three-way merge and the diff view (the git drivers of `secrets/<stack>/*.sops.yaml`) ---------


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types and key order (`1`, `1.0` and `True` differ, as the MAC sees)."""
    return type(a) is type(b) and repr(a) == repr(b)


def _merge_plain(b: Any, o: Any, t: Any, path: tuple[str, ...], conflicts: list[str]) -> Any:
    """Three-way merge of plaintext trees: mappings key by key, anything else as a whole; both
    sides changing one value differently is a conflict (ours is kept in the returned tree)."""
    if _same(o, t) or _same(b, t):
        return o
    if _same(b, o):
        return t
    if isinstance(o, dict) and isinstance(t, dict) and (isinstance(b, dict) or b is _NONE):
        base = b if isinstance(b, dict) else {}
        out: dict[str, Any] = {}
        for k in dict.fromkeys([*o, *t]):
            v = _merge_plain(base.get(k, _NONE), o.get(k, _NONE), t.get(k, _NONE), (*path, k), conflicts)
            if v is not _NONE:
                out[k] = v
        return out
    what = "removed on one branch and changed on the other" if _NONE in (o, t) else "changed on both branches"
    conflicts.append(f"{_path_text(path)}: {what}")
    return o


class _None:
    def __repr__(self) -> str:
        return "<absent>"


_NONE: Any = _None()


def _reuse(
    merged: Any, plain: Any, enc: Any, rules: Rules, key: bytes, path: tuple[str, ...], sides: Sequence[tuple[Any, Any]]
) -> Any:
    """The file tree of `merged`: a subtree equal to a side's plaintext keeps that side's
    ciphertexts (sides under the data key used); anything else is encrypted anew under `key`."""
    for side_plain, side_enc in sides:
        if side_enc is not _NONE and _same(merged, side_plain):
            return side_enc
    if isinstance(merged, dict):
        return {
            k: _reuse(
                v,
                None,
                None,
                rules,
                key,
                (*path, k),
                [
                    (sp.get(k, _NONE), se.get(k, _NONE))
                    for sp, se in sides
                    if isinstance(sp, dict) and isinstance(se, dict)
                ],
            )
            for k, v in merged.items()
        }
    return _map_leaves(merged, lambda p, v: _encrypt_value(v, key, _aad(p)) if rules.encrypted(p) else v, path)


@dataclass
class MergeResult:
    text: str | None  # None: a conflict (the caller keeps ours as it is)
    conflicts: list[str] = field(default_factory=list)


def merge(
    base: str, ours: str, theirs: str, identities: Sequence[str], source: str, *, now: datetime | None = None
) -> MergeResult:
    """Three-way merge of SOPS files by value: every side is decrypted and MAC-verified, the
    plaintexts are merged key by key, and the result is written under ours' data key (ours'
    ciphertexts kept where a value is ours', theirs' where the data key is the same) with a new
    MAC, for the recipients merged three ways (a file created on both branches: both lists). What cannot be merged without losing a value (the
    same key changed on both sides, no identity for a side, different encryption rules) is a
    conflict naming the key path, never a value; the result is decrypted again and checked."""
    if ours == theirs or theirs == base:
        return MergeResult(ours)
    if ours == base:
        return MergeResult(theirs)
    names = ("base", "ours", "theirs")
    docs: dict[str, SopsFile | None] = {}
    try:
        for name, text in zip(names, (base, ours, theirs)):
            docs[name] = parse(text, f"{source} ({name})") if text.strip() else None
    except SopsError as exc:
        return MergeResult(None, [str(exc)])
    o, t, b = docs["ours"], docs["theirs"], docs["base"]
    if o is None or t is None:
        return MergeResult(None, [f"{source}: empty on one branch and changed on the other"])
    rules = o.rules
    if any(d is not None and d.rules != rules for d in (b, t)):
        return MergeResult(None, [f"{source}: the encryption rules (sops.*_regex/_suffix) differ between the branches"])
    if not identities:
        return MergeResult(
            None, [f"{source}: changed on both branches; merging needs an age key (SOPS_AGE_KEY_FILE), none given"]
        )
    keys: dict[str, bytes] = {}
    plains: dict[str, Any] = {}
    try:
        for name in names:
            d = docs[name]
            if d is None:
                plains[name] = {}
                continue
            keys[name] = data_key(d, identities)
            plains[name] = _decrypt_tree(d, keys[name])
            _verify_mac(d, keys[name], plains[name])
    except SopsError as exc:
        return MergeResult(None, [str(exc)])
    conflicts: list[str] = []
    merged = _merge_plain(plains["base"], plains["ours"], plains["theirs"], (), conflicts)
    rb, ro, rt = (b.recipients if b is not None else None), o.recipients, t.recipients
    if ro != rt and rb is not None and rb != ro and rb != rt:
        conflicts.append("sops.age: the recipients changed on both branches")
    if conflicts:
        return MergeResult(None, [f"{source}: {c}" for c in conflicts])
    key = keys["ours"]
    sides = [(plains["ours"], o.tree)]
    if keys["theirs"] == key:
        sides.append((plains["theirs"], t.tree))
    tree = _reuse(merged, None, None, rules, key, (), sides)
    meta = dict(o.meta)
    if rb is None:  # created on both branches: every recipient either gave the file
        target = [*ro, *(r for r in rt if r not in ro)]
    else:
        target = rt if ro == rb and rt != ro else ro
    if target != ro:
        meta["age"] = [_age_encrypt(key, r, f"{source}: recipient {n + 1}") for n, r in enumerate(target)]
    text = SopsFile(source, tree, _seal(merged, rules, key, meta, now=now)).render()
    again = decrypt(text, identities, source)  # the MAC and every value, read back
    if not _same(again, merged):
        return MergeResult(None, [f"{source}: the merged file does not read back as merged"])
    return MergeResult(text)


def diff_view(text: str, source: str) -> str:
    """What `git diff` shows of a SOPS file: its keys, each encrypted value as `enc:<8 hex>` (a
    hash of the ciphertext, so a re-encryption shows as a change of that key and an untouched
    value as none), and of the metadata only the recipients and rules. No value is decrypted; a
    value the rules say is encrypted but is not is shown as NOT ENCRYPTED, without the value."""
    doc = parse(text, source)
    rules = doc.rules

    def leaf(path: tuple[str, ...], value: Any) -> Any:
        if not rules.encrypted(path):
            return value
        if value == "":
            return ""
        if is_ciphertext(value):
            return f"enc:{hashlib.sha256(str(value).encode()).hexdigest()[:8]}"
        return "NOT ENCRYPTED (value hidden)"

    meta = {k: v for k, v in doc.meta.items() if k not in ("age", "mac", "lastmodified", *_OTHER_MASTER_KEYS)}
    meta["age recipients"] = doc.recipients
    others = [k for k in _OTHER_MASTER_KEYS if doc.meta.get(k)]
    if others:
        meta["other master keys"] = others
    return yamlio.dump_quoting({**_map_leaves(doc.tree, leaf), METADATA_KEY: _ordered_meta(meta)}, go_needs_quotes)

"""In-place edits of `Pulumi.<stack>.yaml`, keeping comments, key order, quoting and indentation.

`update_stack_file(path, mutate)` loads the file with ruamel.yaml's round-trip loader, hands the
`config:` map to `mutate`, and writes the result atomically: a failed run (an exception in
`mutate` or in `check`) leaves the file as it was. Helpers below edit the `k8s-secrets:` keys that
`ksecrets seal`, `reseal` and `keygen` own; other commands can reuse the generic function.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ksecrets.config import includes
from ksecrets.config.load import check_stack_name, read_stack_bytes, stack_path  # noqa: F401 (re-exported)
from ksecrets.config.names import PREFIX
from ksecrets.errors import ConfigError, KsecretsError
from ksecrets.fileio import Transaction, atomic_write_bytes, editable_target, locked
from ksecrets.yamlio import load_round_trip as load_round_trip_text
from ksecrets.yamlio import round_trip_yaml

SEALED = PREFIX + "sealed"
SEALED_SECRETS = PREFIX + "sealedSecrets"
APPS = PREFIX + "apps"
BACKEND = PREFIX + "backend"


def _guess_style(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset) as the file already uses them; defaults: 2 and 2."""
    mapping = offset = None
    parent = None  # indent of the previous `key:` line that opens a block
    for raw in text.splitlines():
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        col = len(raw) - len(stripped)
        if mapping is None and col > 0 and not stripped.startswith("- "):
            mapping = col
        if offset is None and stripped.startswith("- ") and parent is not None and col >= parent:
            offset = col - parent
        parent = col if stripped.rstrip().endswith(":") and not stripped.startswith("- ") else None
        if mapping is not None and offset is not None:
            break
    return mapping or 2, 2 if offset is None else offset


def _yaml(text: str) -> Any:
    y = round_trip_yaml()
    mapping, offset = _guess_style(text)
    y.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return y


def load_round_trip(path: Path, source: str | None = None) -> tuple[Any, Any, str]:
    source = source or path.name
    data = read_stack_bytes(path, source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KsecretsError(f"{source}: not UTF-8 text") from None
    # ruamel works on LF text without a BOM; `PendingWrite.commit` puts both back as they were.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    y = _yaml(text)
    doc = load_round_trip_text(y, text, source)  # bounded: size, depth, aliases (yamlio)
    return doc, y, text


@dataclass
class PendingWrite:
    """A validated new content for a stack file, not yet written (`commit()` writes it)."""

    path: Path  # the file itself (a symlinked stack file's target)
    old: str
    new: str
    mode: int
    raw: bytes = b""  # the file's bytes as read: its BOM and line endings are kept
    included: list["PendingWrite"] = field(default_factory=list)  # files `sealed`/`apps` name
    shown: str = ""  # the file as messages name it: `Pulumi.staging.yaml`, `stacks/staging/sealed.yaml`

    @property
    def changed(self) -> bool:
        return self.new != self.old or any(w.changed for w in self.included)

    @property
    def changed_files(self) -> list[str]:
        """The files this write changes, as messages name them (an included file, after `stack
        split`, rather than the stack file that only names it)."""
        out = [w.shown for w in self.included if w.changed]
        return out + ([self.shown] if self.new != self.old else [])

    def where(self) -> str:
        """What a message about this edit names: the changed files, else the stack file."""
        return " and ".join(self.changed_files) or self.shown

    def commit(self) -> bool:
        """Write, atomically. Callers hold the file's lock (`fileio.locked`) since before the read.
        Included files first: each is written whole or not at all, and only through its stack."""
        if not self.changed:
            return False
        # A stack file that fails to be written after its included file was: both as they were.
        writing = self.path
        try:
            with Transaction() as tx:
                for w in self.included:
                    writing = w.path
                    tx.keep(w.path)
                    w.commit()
                if self.new != self.old:
                    writing = self.path
                    tx.keep(self.path)
                    atomic_write_bytes(self.path, _as_original(self.new, self.raw), self.mode)
        except OSError as exc:  # a full disk, a read-only folder: one line, the files as they were
            raise KsecretsError(f"{writing.name}: cannot write it ({exc.strerror or exc}); nothing changed") from None
        return True

    def files(self) -> list[Path]:
        """Every file `commit` may write (the stack file's target and its included files)."""
        return [w.path for w in self.included] + [self.path]


def _as_original(text: str, original: bytes) -> bytes:
    """`text` (LF, no BOM) with the original file's BOM and line endings (CRLF when it used them)."""
    if b"\r\n" in original and original.count(b"\r\n") * 2 >= original.count(b"\n"):
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if original.startswith(b"\xef\xbb\xbf") else data


def prepare_stack_update(
    path: str | os.PathLike[str], mutate: Callable[[CommentedMap], None], *, check: Callable[[str], None] | None = None
) -> PendingWrite:
    """Apply `mutate` to the stack file's `config:` map in memory and validate the result.

    Several files can be prepared first and committed after, so that a failure in any of them
    leaves every file as it was.
    """
    p = Path(path)
    real = editable_target(p, "stack file", source=p.name)  # symlink followed; read-only refused
    doc, y, old = load_round_trip(real, p.name)
    raw = real.read_bytes()  # a regular file (load_round_trip checked it); we hold its lock
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ConfigError(p.name, "", "must be a mapping")
    config = doc.get("config")
    if config is None:
        config = doc["config"] = CommentedMap()
    if not isinstance(config, CommentedMap):
        raise ConfigError(p.name, "config", "must be a mapping")
    opened = _open_included(config, p)
    mutate(config)
    included = _close_included(config, opened)
    buf = io.StringIO()
    y.dump(doc, buf)
    new = buf.getvalue()
    if check is not None:
        with includes.pending({str(w.path): w.new for w in included}):
            check(new)
    return PendingWrite(real, old, new, real.stat().st_mode & 0o777, raw, included, p.name)


# --- keys kept in files of their own (`k8s-secrets:sealed: stacks/staging/sealed.yaml`) ----------


@dataclass
class _Opened:
    key: str
    ref: Any  # the reference as written (its quoting kept)
    path: Path
    doc: Any
    yaml: Any
    text: str
    raw: bytes


def _open_included(config: CommentedMap, stack_file: Path) -> list[_Opened]:
    """Put each included file's content (round-trip, comments kept) where its reference is, so
    every writer edits it as if it were inline; `_close_included` puts the references back."""
    opened = []
    for name in includes.INCLUDABLE:
        key = PREFIX + name
        ref = config.get(key)
        if not includes.is_reference(name, ref):
            continue
        path = includes.target(str(ref), key=name, source=stack_file.name, root=os.path.abspath(stack_file.parent))
        includes.check_not_shared(path, key=name, source=stack_file.name, root=os.path.abspath(stack_file.parent))
        shown = os.path.normpath(str(ref))
        if not path.is_file():
            raise ConfigError(stack_file.name, name, f"{shown!r}: no such file")
        if not os.access(path, os.W_OK):
            raise KsecretsError(f"{shown}: is read-only; not changed (make it writable to edit it)")
        doc, y, text = load_round_trip(path, shown)
        raw = path.read_bytes()
        if doc is None:
            doc = CommentedSeq()
        if not isinstance(doc, CommentedSeq):
            raise ConfigError(shown, name, f"must be a list, not {type(doc).__name__}")
        _top_level_sequence_style(y, text)
        opened.append(_Opened(key, ref, path, doc, y, text, raw))
        config[key] = doc
    return opened


def _top_level_sequence_style(y: Any, text: str) -> None:
    """A file whose items start at column 0 (`- name: ...`) keeps them there."""
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if first.startswith("- "):
        mapping, _ = _guess_style(text)
        y.indent(mapping=mapping, sequence=mapping, offset=0)


def _close_included(config: CommentedMap, opened: list[_Opened]) -> list[PendingWrite]:
    out = []
    for o in opened:
        if o.key not in config:
            continue  # the writer removed the key: the file is left as it is
        value = config[o.key]
        if isinstance(value, str):
            continue  # the writer set a (new) reference itself
        config[o.key] = o.ref
        buf = io.StringIO()
        o.yaml.dump(value, buf)
        shown = os.path.normpath(str(o.ref))
        out.append(PendingWrite(o.path, o.text, buf.getvalue(), o.path.stat().st_mode & 0o777, o.raw, shown=shown))
    return out


def update_stack_file(
    path: str | os.PathLike[str], mutate: Callable[[CommentedMap], None], *, check: Callable[[str], None] | None = None
) -> bool:
    """Apply `mutate` to the stack file's `config:` map and write it atomically.

    `check(new_text)` may validate the result (e.g. with the config loader) and raise to abort.
    Returns False (and writes nothing) when the bytes would not change. The file is locked from
    the read to the write (and re-read under the lock), so parallel edits serialise.
    """
    return bool(edit_stack_file(path, mutate, check=check))


def edit_stack_file(
    path: str | os.PathLike[str], mutate: Callable[[CommentedMap], None], *, check: Callable[[str], None] | None = None
) -> list[str]:
    """`update_stack_file`, returning the files it changed as messages name them (none: nothing
    written): after `stack split`, an edit of the sealed values changes the included file only."""
    p = Path(path)
    with locked(p, "stack file", source=p.name):
        pending = prepare_stack_update(p, mutate, check=check)
        changed = pending.changed_files
        pending.commit()
        return changed


# --- helpers for the sealed-secrets keys ---------------------------------------------------------


def sealed_list(config: CommentedMap, create: bool = True) -> CommentedSeq | None:
    seq = config.get(SEALED)
    if seq is None and create:
        seq = config[SEALED] = CommentedSeq()
    return seq


def find_sealed_entry(config: Mapping[str, Any], name: str, namespace: str) -> tuple[int, Any] | tuple[None, None]:
    for i, entry in enumerate(config.get(SEALED) or []):
        if isinstance(entry, Mapping) and entry.get("name") == name and (entry.get("namespace") or "") == namespace:
            return i, entry
    return None, None


def _string_map(items: Mapping[str, str]) -> CommentedMap:
    out = CommentedMap()
    for key in sorted(items):
        out[key] = items[key]
    return out


def upsert_sealed_secret(
    config: CommentedMap,
    *,
    name: str,
    namespace: str,
    scope: str,
    encrypted_data: Mapping[str, str],
    certificate_fingerprint: str,
    digests: Mapping[str, str] | None = None,
    fleet_digests: Mapping[str, str] | None = None,
    secret_type: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    immutable: bool | None = None,
) -> int:
    """Insert or update one `k8s-secrets:sealed` entry in place; returns its index.

    An existing entry keeps its position, its comments and any field not named here; its
    `encryptedData` and `digests` are replaced by the given maps (keys sorted). An empty `digests`
    removes the field. Non-empty `labels`/`annotations` replace the entry's; `immutable` is set
    when given (None: left as it is).
    """
    seq = sealed_list(config)
    assert seq is not None  # created when missing
    index, entry = find_sealed_entry(config, name, namespace)
    if entry is None:
        entry = CommentedMap()
        entry["name"] = name
        entry["namespace"] = namespace
        seq.append(entry)
        index = len(seq) - 1
    _set_in_order(entry, "scope", scope)
    if secret_type is not None and (secret_type != "Opaque" or "type" in entry):
        _set_in_order(entry, "type", secret_type)
    _set_in_order(entry, "certificateFingerprint", certificate_fingerprint)
    for field_name, items in (("labels", labels), ("annotations", annotations)):
        if items:
            _replace_map(entry, field_name, items)
    if immutable is not None:
        _set_in_order(entry, "immutable", immutable)
    _replace_map(entry, "encryptedData", encrypted_data)
    if digests:
        _replace_map(entry, "digests", digests)
    elif "digests" in entry:
        del entry["digests"]
    if fleet_digests:  # none given: the values may have changed, so the old ones go
        _replace_map(entry, "fleetDigests", fleet_digests)
    elif "fleetDigests" in entry:
        del entry["fleetDigests"]
    _keep_trailing_comment_last(entry)
    assert index is not None
    return index


def _trailing_token(m: Any) -> tuple[Any, Any] | None:
    """(key, comment token) when the map's last key carries comment lines after it (no EOL comment)."""
    if not isinstance(m, CommentedMap) or not len(m):
        return None
    last = list(m)[-1]
    item = m.ca.items.get(last)
    token = item[2] if item and len(item) > 2 else None
    if token is not None and str(getattr(token, "value", "")).startswith("\n"):
        return last, token
    return None


def _keep_trailing_comment_last(entry: CommentedMap) -> None:
    """Comment lines after an entry stay after it when a map (digests) is added behind encryptedData."""
    names = [
        k
        for k in ("encryptedData", "digests", "fleetDigests")
        if isinstance(entry.get(k), CommentedMap) and len(entry[k])
    ]
    if len(names) < 2 or names[0] != "encryptedData" or list(entry)[-1] != names[-1]:
        return
    first, final = entry[names[0]], entry[names[-1]]
    found = _trailing_token(first)
    if found is None or _trailing_token(final) is not None:
        return
    key, token = found
    first.ca.items[key][2] = None
    last = list(final)[-1]
    item = final.ca.items.setdefault(last, [None, None, None, None])
    if item[2] is None:
        item[2] = token


_ENTRY_ORDER = (
    "name",
    "namespace",
    "scope",
    "type",
    "labels",
    "annotations",
    "immutable",
    "certificateFingerprint",
    "encryptedData",
    "digests",
    "fleetDigests",
)


def _set_in_order(entry: CommentedMap, key: str, value: Any) -> None:
    """Set `key`; a new key goes where the schema lists it, not at the end of the entry."""
    if key in entry:
        if entry[key] != value:
            entry[key] = value
        return
    later = _ENTRY_ORDER[_ENTRY_ORDER.index(key) + 1 :]
    keys = list(entry)
    pos = next((i for i, k in enumerate(keys) if k in later), len(keys))
    entry.insert(pos, key, value)


def _replace_map(entry: CommentedMap, field: str, items: Mapping[str, str]) -> None:
    """Replace a map's content while keeping the existing node (and its comments) when present."""
    current = entry.get(field)
    if isinstance(current, CommentedMap):
        # Comment lines after a map's last key belong to that key in ruamel; keep them at the end.
        tail = current.ca.items.get(list(current)[-1]) if len(current) else None
        for key in [k for k in current if k not in items]:
            del current[key]
        for key in sorted(items):
            if current.get(key) != items[key]:
                current[key] = items[key]
        # Keep keys sorted: rebuild the order only when it is off (rare: a new key was appended).
        if list(current) != sorted(current):
            ordered = [(k, current[k]) for k in sorted(current)]
            for k, _ in ordered:
                del current[k]
            for k, v in ordered:
                current[k] = v
        if tail is not None and len(current):
            last = list(current)[-1]
            for key in list(current.ca.items):
                if key != last and current.ca.items[key] is tail:
                    del current.ca.items[key]
            current.ca.items.setdefault(last, tail)
    else:
        _set_in_order(entry, field, _string_map(items))


def set_certificate_path(config: CommentedMap, path: str) -> None:
    section = config.get(SEALED_SECRETS)
    if section is None:
        section = config[SEALED_SECRETS] = CommentedMap()
    if not isinstance(section, CommentedMap):
        raise KsecretsError(f"config: {SEALED_SECRETS}: must be a mapping")
    section["certificate"] = path


def app_namespaces_for_secret(config: Mapping[str, Any], secret_name: str) -> list[str]:
    """Namespaces of the apps whose `secretName` is `secret_name` (no duplicates, file order)."""
    out: list[str] = []
    for app in config.get(APPS) or []:
        if isinstance(app, Mapping) and app.get("secretName") == secret_name:
            ns = app.get("namespace")
            if isinstance(ns, str) and ns not in out:
                out.append(ns)
    return out


def stack_file_path(stack: str, root: str | os.PathLike[str] = ".") -> Path:
    return stack_path(stack, root)

"""Git drivers for stack files (`Pulumi.<stack>.yaml`) and the files they include: a merge driver
that keeps every value of both sides or stops, and a textconv that shows sealed values as ids.

Merge (`merge_texts`), in three steps:
1. The file with its `k8s-secrets:sealed` block replaced by one placeholder line (the same line on
   every side) is merged by the real `git merge-file`: comments, apps, labels, any key the model
   has or will have, line by line.
2. The sealed value is merged as data, three ways. Inline lists are merged per Secret
   (namespace/name) and, inside an entry, generically: every field the entry has (`scope`,
   `type`, `labels`, `annotations`, `immutable`, fields that do not exist yet), mappings key by key,
   anything else as a whole; a key's ciphertext travels with its digest. A value only decrypts
   under the scope and certificate it was sealed with, so every value the merge keeps must come
   from a side whose entry has the merged entry's scope and certificate: a scope changed on one
   branch and a key sealed on the other is a conflict, never a clean merge of a Secret the
   controller would refuse. A reference (`k8s-secrets:sealed: stacks/S/sealed.yaml`, from
   `ksecrets stack split`) against an inline list is merged as a value: kept when the other side
   left the list alone, a conflict when it changed it.
3. The merged text is read back and checked against the three sides: every key changed on one
   side holds that side's value, the sealed value is exactly the merged one. Anything else (a
   text merge that lost a change, YAML that no longer parses) is a conflict.

A conflict is one line per problem naming the entry and key (never a value), exit code 1 so that
git marks the file conflicted. A conflict inside sealed entries keeps our ciphertext and leaves a
valid file (`ksecrets seal --stack` settles it); any other conflict leaves git's markers. Line
endings (CRLF) and a BOM are kept. Nothing is decrypted: no private key is needed or read.

Textconv: every ciphertext becomes `sealed:<8 hex>`, the keyed digest when there is one (so a
re-encryption of the same value shows no change) else a hash of the ciphertext; `digests` lines
are dropped. A value that is not well-formed ciphertext is shown as it is (it would reach the
cluster that way), as is a reference to an included file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ksecrets.errors import KsecretsError
from ksecrets.gitattributes import ATTRIBUTES_LINE, DRIVERS, add_included_attributes, attributes_pattern

SEALED_KEY = "k8s-secrets:sealed"
_SEALED_LINE = re.compile(r"^(?P<indent>[ ]*)(?P<q>['\"]?)k8s-secrets:sealed(?P=q)[ ]*:(?P<rest>.*)$")
PLACEHOLDER = "__ksecrets_merge_sealed_block__"
# The fields that decide how a value decrypts besides the entry's identity (namespace/name, the
# key of every merge here): the scope picks the label, the certificate the key pair.
BINDING = ("scope", "certificateFingerprint")
# One key's ciphertext, its keyed digest and its fleet digest (ksecrets drift) travel together.
_PAIRED = ("encryptedData", "digests", "fleetDigests")
_MISSING: Any = object()


class MergeConflict(Exception):
    """A merge that cannot keep every value: the file gets git's markers."""


# --- text: line endings, the sealed block ---------------------------------------------------------


@dataclass
class Text:
    """A side of the merge: LF text without a BOM, and how the file wrote its lines."""

    text: str
    crlf: bool = False
    bom: bool = False

    @classmethod
    def decode(cls, data: bytes) -> "Text":
        text = data.decode("utf-8")
        bom = text.startswith("\ufeff")
        text = text.removeprefix("\ufeff")
        crlf = "\r\n" in text and text.count("\r\n") * 2 >= text.count("\n")
        return cls(text.replace("\r\n", "\n") if crlf else text, crlf, bom)

    def encode(self, text: str) -> bytes:
        if self.crlf:
            text = text.replace("\n", "\r\n")
        return (b"\xef\xbb\xbf" if self.bom else b"") + text.encode("utf-8")


def _pick(base: Any, ours: Any, theirs: Any) -> Any:
    """Three-way choice of one value: a change on one side wins, ours when both changed."""
    return theirs if ours == base and theirs != base else ours


@dataclass
class Block:
    """Where a file's `k8s-secrets:sealed` value sits: `rest` is the file with that block replaced
    by the placeholder line; `block` the block's own lines (key line included)."""

    rest: str
    block: str
    indent: str


def locate_sealed_block(text: str) -> Block | None:
    """The sealed block of a stack file, found through the YAML parser's marks (block, flow or
    scalar style alike); None when the file has no such key under `config:`. Raises
    MergeConflict when the key is there but not on lines of its own (e.g. a flow `config:`)."""
    from ksecrets import yamlio

    try:
        root = yamlio.compose_checked(text, "stack file")
    except yamlio.YAMLError:
        raise MergeConflict("not valid YAML") from None
    except KsecretsError as exc:
        raise MergeConflict(str(exc)) from None
    if not isinstance(root, yamlio.MappingNode):
        return None
    config = next((v for k, v in root.value if isinstance(k, yamlio.ScalarNode) and k.value == "config"), None)
    if not isinstance(config, yamlio.MappingNode):
        return None
    found = [(k, v) for k, v in config.value if isinstance(k, yamlio.ScalarNode) and k.value == SEALED_KEY]
    if not found:
        return None
    (key, value), *more = found
    lines = text.splitlines(keepends=True)
    first = key.start_mark.line
    if more or config.flow_style or first >= len(lines):
        raise MergeConflict(f"{SEALED_KEY} is not a block of its own lines")
    m = _SEALED_LINE.match(lines[first].rstrip("\n"))
    if not m or len(m.group("indent")) != key.start_mark.column:
        raise MergeConflict(f"{SEALED_KEY} is not a block of its own lines")
    indent = m.group("indent")
    end_line, end_col = value.end_mark.line, value.end_mark.column
    tail = lines[end_line][end_col:] if end_line < len(lines) else ""
    if end_line >= len(lines) or not lines[end_line][:end_col].strip():
        end = end_line  # a block collection: it ends where the next token starts
    elif not tail.strip() or tail.strip().startswith("#"):
        end = end_line + 1  # a scalar or a flow collection: it ends on this line
    else:
        raise MergeConflict(f"{SEALED_KEY} shares its last line with another key")
    end = max(end, first + 1)
    # Blank lines and comments at the block's end belong to what follows.
    while end > first + 1 and (
        not lines[end - 1].strip()
        or (
            lines[end - 1].lstrip().startswith("#")
            and len(lines[end - 1]) - len(lines[end - 1].lstrip(" ")) <= len(indent)
        )
    ):
        end -= 1
    block = "".join(lines[first:end])
    if not block.endswith("\n"):
        block += "\n"
    rest = "".join(lines[:first]) + f"{indent}{SEALED_KEY}: {PLACEHOLDER}\n" + "".join(lines[end:])
    return Block(rest, block, indent)


def split_sealed_block(text: str) -> tuple[str, str, int]:
    """(text without the sealed block, the block's text, line index it was at); no block:
    (text, "", -1)."""
    try:
        found = locate_sealed_block(text)
    except MergeConflict:
        found = None
    if found is None:
        return text, "", -1
    line = found.rest.splitlines().index(f"{found.indent}{SEALED_KEY}: {PLACEHOLDER}")
    lines = found.rest.splitlines(keepends=True)
    return "".join(lines[:line] + lines[line + 1 :]), found.block, line


def git_merge_file(base: str, ours: str, theirs: str, labels: tuple[str, str, str]) -> tuple[str, bool]:
    """(merged text, clean) from the real `git merge-file`."""
    with tempfile.TemporaryDirectory(prefix="ksecrets-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_bytes(text.encode("utf-8"))
            paths.append(str(p))
        res = subprocess.run(
            ["git", "merge-file", "-p", "-L", labels[0], "-L", labels[1], "-L", labels[2], *paths], capture_output=True
        )
    if res.returncode < 0 or res.returncode > 127:
        raise KsecretsError(f"git merge-file failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode("utf-8"), res.returncode == 0


# --- the sealed value, merged as data -------------------------------------------------------------


def _load_doc(text: str) -> Mapping[str, Any]:
    from ksecrets import yamlio

    doc = yamlio.load(text, "stack file") if text.strip() else {}
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise KsecretsError("not a mapping")
    config = doc.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise KsecretsError("config is not a mapping")
    return doc


def _load(text: str) -> Mapping[str, Any]:
    return _load_doc(text).get("config") or {}


def _ident(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise MergeConflict(f"{SEALED_KEY}: an entry without a name")
    ns = entry.get("namespace")
    return (ns if isinstance(ns, str) else "", entry["name"])


def _entries(value: Any) -> dict[tuple[str, str], dict]:
    """A sealed list as {(namespace, name): entry}; None and absent are no entries."""
    if value is _MISSING or value is None:
        return {}
    if not isinstance(value, list):
        raise MergeConflict(f"{SEALED_KEY}: not a list")
    out: dict[tuple[str, str], dict] = {}
    for e in value:
        ident = _ident(e)
        if ident in out:
            raise MergeConflict(f"{SEALED_KEY}: {ident[0]}/{ident[1]} is listed twice")
        out[ident] = dict(e)
    return out


def binding(entry: Mapping[str, Any]) -> tuple[Any, Any]:
    return (entry.get("scope") or "strict", entry.get("certificateFingerprint") or None)


@dataclass
class SealedMerge:
    value: Any  # the merged `k8s-secrets:sealed` value (_MISSING: no key)
    conflicts: list[str] = field(default_factory=list)


def _where(ident: tuple[str, str]) -> str:
    return f"{ident[0]}/{ident[1]}"


def merge_sealed_value(base: Any, ours: Any, theirs: Any) -> SealedMerge:
    """Three-way merge of the `k8s-secrets:sealed` value. Raises MergeConflict for what cannot be
    kept in one valid file (a reference on one side and a changed list on the other...)."""
    if ours == theirs or theirs == base:
        return SealedMerge(ours)
    if ours == base:
        return SealedMerge(theirs)
    kinds = {type(v) for v in (base, ours, theirs) if v is not _MISSING and v is not None}
    if kinds != {list}:
        if any(isinstance(v, str) for v in (base, ours, theirs)):
            raise MergeConflict(
                f"{SEALED_KEY}: moved into an included file on one branch (ksecrets stack split) and changed on the "
                "other; take the included file's side and seal the other branch's keys again into it "
                "(ksecrets seal --stack ...)"
            )
        raise MergeConflict(f"{SEALED_KEY}: changed on both branches and not a list on every side")
    b, o, t = _entries(base), _entries(ours), _entries(theirs)
    result = SealedMerge(None)
    merged: dict[tuple[str, str], dict] = {}
    taken: list[tuple[tuple[str, str], str, dict]] = []  # (entry, key, the side's entry it came from)
    for ident in dict.fromkeys([*o, *t, *b]):
        be, oe, te = b.get(ident), o.get(ident), t.get(ident)
        where = _where(ident)
        if oe == te or be == te:
            if oe is not None:
                merged[ident] = oe
        elif be == oe:
            if te is not None:
                merged[ident] = te
        elif oe is None or te is None:
            kept = oe if oe is not None else te
            assert kept is not None
            merged[ident] = kept
            result.conflicts.append(f"{where}: removed on one branch and changed on the other (kept the changed entry)")
        else:
            merged[ident] = _merge_entry(where, ident, be or {}, oe, te, result.conflicts, taken)
    _check_certificates(b, o, t, merged, result.conflicts)
    for ident, key, src in taken:
        if binding(src) != binding(merged[ident]):
            result.conflicts.append(_binding_conflict(ident, key, src, merged[ident]))
    order = [ident for ident in o if ident in merged] + [ident for ident in t if ident in merged and ident not in o]
    result.value = [merged[ident] for ident in order]
    return result


def _binding_conflict(ident: tuple[str, str], key: str, src: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    (s_scope, s_cert), (m_scope, m_cert) = binding(src), binding(entry)
    what = (
        f"sealed with scope {s_scope} on one branch, but the entry's scope is {m_scope} after the merge"
        if s_scope != m_scope
        else f"sealed for certificate {s_cert} on one branch, but the entry is for {m_cert} after the merge"
    )
    return f"{_where(ident)} key {key}: {what}; the controller would refuse the Secret"


def _merge_entry(
    where: str,
    ident: tuple[str, str],
    b: dict,
    o: dict,
    t: dict,
    conflicts: list[str],
    taken: list[tuple[tuple[str, str], str, dict]],
) -> dict:
    """Both branches changed this entry: every field three ways, generically."""
    merged: dict[str, Any] = {}
    fields = list(dict.fromkeys([*o, *t, *b]))
    for f in fields:
        if f in _PAIRED:
            continue
        bv, ov, tv = b.get(f, _MISSING), o.get(f, _MISSING), t.get(f, _MISSING)
        if all(isinstance(v, Mapping) or v is _MISSING or v is None for v in (bv, ov, tv)) and f not in BINDING:
            bm, om, tm = (dict(v) if isinstance(v, Mapping) else {} for v in (bv, ov, tv))
            value = _merge_map(f"{where} {f}", bm, om, tm, conflicts)
            if value or (ov is not _MISSING and ov is not None) or (tv is not _MISSING and tv is not None and ov == bv):
                merged[f] = value
            continue
        if ov == tv or bv == tv:
            value = ov
        elif bv == ov:
            value = tv
        else:
            value = ov
            conflicts.append(f"{where}: {f} changed on both branches; kept ours")
        if value is not _MISSING:
            merged[f] = value
    # A key's ciphertext and digest, from the side that changed the key.
    bd, od, td = (_pairs(e) for e in (b, o, t))
    enc: dict[str, Any] = {}
    dig: dict[str, Any] = {}
    fleet: dict[str, Any] = {}
    for key in sorted({*bd, *od, *td}, key=str):
        bv, ov, tv = bd.get(key), od.get(key), td.get(key)
        if ov == tv or (ov is not None and tv is not None and ov[0] == tv[0]):
            pair, sources = ov, [o, t]
        elif bv == tv or (bv is not None and tv is not None and bv[0] == tv[0]):
            pair, sources = ov, [o]
        elif bv == ov or (bv is not None and ov is not None and bv[0] == ov[0]):
            pair, sources = tv, [t]
        elif ov is not None and tv is not None and ov[1] and ov[1] == tv[1] and binding(o) == binding(t):
            pair, sources = ov, [o, t]  # the same value (keyed digest), encrypted twice
        else:
            what = (
                "changed on both branches"
                if ov is not None and tv is not None
                else "removed on one branch and changed on the other"
            )
            conflicts.append(f"{where} key {key}: {what}; kept {'ours' if ov is not None else 'theirs'}")
            pair, sources = (ov, [o]) if ov is not None else (tv, [t])
        if pair is None:
            continue
        enc[key] = pair[0]
        if pair[1] is not None:
            dig[key] = pair[1]
        if pair[2] is not None:
            fleet[key] = pair[2]
        if not any(binding(s) == _binding_of(merged) for s in sources):
            taken.append((ident, key, sources[0]))
    for f, items in (("encryptedData", enc), ("digests", dig), ("fleetDigests", fleet)):
        present = any(f in e for e in (o, t))
        if items or (f == "encryptedData" and present):
            merged[f] = items
    return {f: merged[f] for f in [*fields] if f in merged}


def _binding_of(entry: Mapping[str, Any]) -> tuple[Any, Any]:
    return binding(entry)


def _pairs(entry: Mapping[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    enc = entry.get("encryptedData") or {}
    dig = entry.get("digests") or {}
    fleet = entry.get("fleetDigests") or {}
    if not isinstance(enc, Mapping) or not isinstance(dig, Mapping) or not isinstance(fleet, Mapping):
        raise MergeConflict("encryptedData, digests or fleetDigests is not a mapping")
    return {k: (v, dig.get(k), fleet.get(k)) for k, v in enc.items()}


def _merge_map(where: str, b: dict, o: dict, t: dict, conflicts: list[str]) -> dict:
    out: dict[str, Any] = {}
    for key in dict.fromkeys([*o, *t, *b]):
        bv, ov, tv = b.get(key, _MISSING), o.get(key, _MISSING), t.get(key, _MISSING)
        if ov == tv or bv == tv:
            value = ov
        elif bv == ov:
            value = tv
        else:
            value = ov
            conflicts.append(
                f"{where}: {key} changed on both branches; kept {'ours' if ov is not _MISSING else 'none'}"
            )
        if value is not _MISSING:
            out[key] = value
    return out


def _check_certificates(b: dict, o: dict, t: dict, merged: dict, conflicts: list[str]) -> None:
    """A value sealed on one branch for a certificate the other branch moved its entries away
    from (`ksecrets reseal --set-certificate`) would not unseal on the cluster the merge targets."""
    for side, other, name, other_name in ((o, t, "ours", "theirs"), (t, o, "theirs", "ours")):
        retired = {
            binding(be)[1]
            for ident, be in b.items()
            if ident in other and binding(be)[1] and binding(be)[1] != binding(other[ident])[1]
        }
        if not retired:
            continue
        for ident, e in side.items():
            if ident not in merged or binding(e)[1] not in retired or e == b.get(ident):
                continue
            if binding(merged[ident])[1] in retired and merged[ident] == e:
                conflicts.append(
                    f"{_where(ident)}: sealed on {name} for certificate {binding(e)[1]}, which {other_name} replaced "
                    "(ksecrets reseal --set-certificate); seal it again for the new certificate"
                )


# --- the merged text ------------------------------------------------------------------------------


def _compose_block(merged: Any, values: list[Any], blocks: list[Block | None], ours_text: str) -> str:
    """The sealed block's text for the merged value: a side's own block when the value is that
    side's, else ours edited in place (comments and style kept)."""
    for i in (1, 2):
        if blocks[i] is not None and values[i] == merged and values[i] is not _MISSING:
            return blocks[i].block  # type: ignore[union-attr]
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from ksecrets.config import stackfile

    ob = blocks[1]
    indent = ob.indent if ob is not None else "  "
    y = stackfile._yaml(ours_text)
    if ob is not None and isinstance(values[1], list):
        doc = y.load("config:\n" + ob.block) if indent else y.load(ob.block)
        holder = doc["config"] if indent else doc
        seq = holder[SEALED_KEY]
    else:
        doc = CommentedMap()
        holder = doc["config"] = CommentedMap() if indent else doc
        seq = holder[SEALED_KEY] = CommentedSeq()
    wanted = {_ident(e): e for e in merged}
    for i in reversed(range(len(seq))):
        if _ident(seq[i]) not in wanted:
            del seq[i]
    have = {_ident(e): e for e in seq}
    for ident, e in wanted.items():
        node = have.get(ident)
        if node is None:
            seq.append(_to_node(e))
        else:
            _update_node(node, e)
    buf = io.StringIO()
    y.dump(doc, buf)
    out = buf.getvalue()
    if indent:
        out = out.split("\n", 1)[1]
    return out


def _to_node(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _to_node(v)
        return m
    if isinstance(value, list):
        return CommentedSeq([_to_node(v) for v in value])
    return value


def _update_node(node: Any, value: Mapping[str, Any]) -> None:
    """Make the round-trip map `node` equal `value`, keeping its nodes (comments) where it can."""
    for k in [k for k in node if k not in value]:
        del node[k]
    for k, v in value.items():
        cur = node.get(k, _MISSING)
        if cur is not _MISSING and _plain(cur) == v:
            continue
        if isinstance(cur, Mapping) and isinstance(v, Mapping):
            if k in _PAIRED:
                from ksecrets.config import stackfile

                stackfile._replace_map(node, k, v)
            else:
                _update_node(cur, v)
        elif cur is _MISSING:
            node.insert(len(node), k, _to_node(v))
        else:
            node[k] = _to_node(v)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_three_way(path: str, b: Any, o: Any, t: Any, m: Any, problems: list[str]) -> None:
    """The merged value `m` holds every one-sided change of `b` → `o` / `b` → `t`."""
    if o == t:
        ok = m == o
    elif b == o:
        ok = m == t
    elif b == t:
        ok = m == o
    elif all(isinstance(v, Mapping) or v is _MISSING for v in (b, o, t, m)) and m is not _MISSING:
        for key in dict.fromkeys(
            [
                *(o if o is not _MISSING else {}),
                *(t if t is not _MISSING else {}),
                *(b if b is not _MISSING else {}),
                *m,
            ]
        ):
            get = lambda d: d.get(key, _MISSING) if d is not _MISSING else _MISSING  # noqa: E731
            _check_three_way(f"{path}.{key}" if path else str(key), get(b), get(o), get(t), get(m), problems)
        return
    else:
        ok = True  # both changed (a list edited in different lines): the text merge decided
    if not ok:
        problems.append(path or "the document")


def merge_texts(base: str, ours: str, theirs: str, path: str = "Pulumi.stack.yaml") -> tuple[str, list[str]]:
    """(merged text, conflict lines) of LF texts. A file of sealed entries that a stack names is
    merged as that stack's sealed block; another included list (apps) by `git merge-file`."""
    labels = (f"ours:{path}", f"base:{path}", f"theirs:{path}")
    kind = _included_kind((base, ours, theirs))
    if kind == "list":
        text, clean = git_merge_file(base, ours, theirs, labels)
        return text, [] if clean else [f"{path}: conflicting changes; resolve the markers"]
    if kind == "sealed":
        wrapped = [_wrap(t) if t.strip() else t for t in (base, ours, theirs)]
        text, conflicts = merge_texts(wrapped[0], wrapped[1], wrapped[2], path=path)
        if not text.startswith(_WRAP):
            return text, conflicts
        unwrapped = _unwrap(text)
        try:
            same = yamlio_load(unwrapped) == (_load(text).get(SEALED_KEY) or [])
        except KsecretsError:
            same = False
        if not same:
            text, _ = git_merge_file(base, ours, theirs, labels)
            return text, [f"{path}: merge conflict: the merged entries could not be written back; resolve the markers"]
        return unwrapped, conflicts
    try:
        return _merge_stack_texts(base, ours, theirs, path, labels)
    except MergeConflict as exc:
        text, _ = git_merge_file(base, ours, theirs, labels)
        return text, [f"{path}: merge conflict: {exc}; resolve the markers"]


def _merge_stack_texts(
    base: str, ours: str, theirs: str, path: str, labels: tuple[str, str, str]
) -> tuple[str, list[str]]:
    texts = (base, ours, theirs)
    try:
        docs = [_load_doc(t) for t in texts]
    except KsecretsError:
        raise MergeConflict("not a readable stack file on every side") from None
    values = [(d.get("config") or {}).get(SEALED_KEY, _MISSING) for d in docs]
    blocks = [locate_sealed_block(t) if t.strip() else None for t in texts]
    for v, blk in zip(values, blocks):
        if (v is _MISSING) != (blk is None):
            raise MergeConflict(f"{SEALED_KEY} not found where the parser puts it")
    rests = [blk.rest if blk is not None else t for t, blk in zip(texts, blocks)]
    rest, clean = git_merge_file(rests[0], rests[1], rests[2], labels)
    if not clean:
        raise MergeConflict(f"conflicting changes outside {SEALED_KEY}")
    result = merge_sealed_value(*values)
    placeholder = [i for i, line in enumerate(rest.splitlines(keepends=True)) if PLACEHOLDER in line]
    lines = rest.splitlines(keepends=True)
    if result.value is _MISSING:
        if placeholder:
            raise MergeConflict(f"{SEALED_KEY} removed on one branch and moved on the other")
        text = rest
    else:
        if len(placeholder) != 1:
            raise MergeConflict(f"{SEALED_KEY} moved to different places on the two branches")
        block = _compose_block(result.value, values, blocks, ours)
        text = "".join(lines[: placeholder[0]]) + block + "".join(lines[placeholder[0] + 1 :])
    _verify(text, docs, result.value)
    return text, [f"{path}: merge conflict: {SEALED_KEY} {c}" for c in result.conflicts]


def _verify(text: str, docs: list[Mapping[str, Any]], sealed: Any) -> None:
    try:
        merged = _load_doc(text)
    except KsecretsError:
        raise MergeConflict("the merged file is not valid YAML") from None
    got = (merged.get("config") or {}).get(SEALED_KEY, _MISSING)
    if _plain(got) != sealed:
        raise MergeConflict(f"{SEALED_KEY} could not be written as merged")
    strip = lambda d: {  # noqa: E731
        **d,
        "config": {k: v for k, v in (d.get("config") or {}).items() if k != SEALED_KEY},
    }
    problems: list[str] = []
    _check_three_way("", strip(docs[0]), strip(docs[1]), strip(docs[2]), strip(merged), problems)
    if problems:
        raise MergeConflict(f"the text merge lost a change of {', '.join(problems[:3])}")


def _stack_of(path: str) -> str:
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-3] == "stacks":  # stacks/<stack>/sealed.yaml (`ksecrets stack split`)
        return parts[-2]
    name = os.path.basename(path)
    if name.startswith("Pulumi.") and name.endswith(".yaml"):
        return name[len("Pulumi.") : -len(".yaml")]
    return "STACK"


# --- files a stack names for its big keys (`k8s-secrets:sealed: stacks/staging/sealed.yaml`) ------

_WRAP = f"config:\n  {SEALED_KEY}:\n"


def yamlio_load(text: str) -> Any:
    from ksecrets import yamlio

    return yamlio.load(text, "file") or []


def _included_kind(texts: tuple[str, ...]) -> str | None:
    """ "sealed" when the texts are a file of sealed entries (a top-level list of entries with
    encryptedData), "list" for another top-level list (an apps file), None for a stack file."""
    from ksecrets import yamlio

    kind = None
    for text in texts:
        if not text.strip():
            continue
        try:
            doc = yamlio.load(text, "file")
        except KsecretsError:
            return None
        if not isinstance(doc, list):
            return None
        if any(isinstance(e, Mapping) and "encryptedData" in e for e in doc):
            kind = "sealed"
        kind = kind or "list"
    return kind


def _wrap(text: str) -> str:
    """A sealed-entries file as the stack file it would be inline (4 columns deeper)."""
    return _WRAP + "".join(("    " + line) if line.strip() else line for line in text.splitlines(keepends=True))


def _unwrap(text: str) -> str:
    body = text[len(_WRAP) :] if text.startswith(_WRAP) else text.split("\n", 2)[-1]
    return "".join(
        line[4:] if line.startswith("    ") else line.lstrip(" ") if not line.strip() else line
        for line in body.splitlines(keepends=True)
    )


def _safe(message: str) -> str:
    return message.replace("\n", " ")


def merge_driver(base_path: str, ours_path: str, theirs_path: str, pathname: str) -> tuple[int, list[str]]:
    """git's `%O %A %B %P`: writes the result over %A; (exit code, conflict lines). Never raises:
    whatever goes wrong is a conflict (exit 1) with one line, and %A keeps git's markers or ours."""
    from ksecrets.fileio import atomic_write_bytes

    sides: list[Text] = []
    try:
        for p in (base_path, ours_path, theirs_path):
            try:
                sides.append(Text.decode(Path(p).read_bytes()))
            except FileNotFoundError:
                sides.append(Text(""))
    except (OSError, UnicodeDecodeError) as exc:
        return 1, [
            f"{pathname}: merge conflict: cannot read a side of the merge ({type(exc).__name__}); resolve by hand"
        ]
    if _is_sops(pathname, sides):
        return _merge_sops(sides, ours_path, pathname)
    o = sides[1]
    style = Text(
        "",
        crlf=_pick(sides[0].crlf, o.crlf, sides[2].crlf),
        bom=_pick(sides[0].bom, o.bom, sides[2].bom),
    )
    try:
        merged, conflicts = merge_texts(sides[0].text, o.text, sides[2].text, path=pathname)
    except Exception as exc:  # noqa: BLE001 - any failure is a conflict, never a traceback for git
        detail = str(exc) if isinstance(exc, KsecretsError) else type(exc).__name__
        conflicts = [f"{pathname}: merge conflict: the merge driver failed ({_safe(detail)}); resolve by hand"]
        try:
            labels = (f"ours:{pathname}", f"base:{pathname}", f"theirs:{pathname}")
            merged, _ = git_merge_file(sides[0].text, o.text, sides[2].text, labels)
        except Exception:  # noqa: BLE001
            return 1, conflicts
    mode = Path(ours_path).stat().st_mode & 0o777 if Path(ours_path).exists() else 0o644
    atomic_write_bytes(ours_path, style.encode(merged), mode)
    out = []
    stack = _stack_of(pathname)
    for c in conflicts:
        m = re.search(r"sealed (\S+)/(\S+?)(?::| key )", c)
        if m:
            scope = re.search(r"scope is (\S+) after the merge", c)
            c += (
                f"; re-seal it (ksecrets seal --stack {stack} --name {m.group(2)} "
                f"--namespace {m.group(1)}{f' --scope {scope.group(1)}' if scope else ''} ...), then git add {pathname}"
            )
        out.append(_safe(c))
    return (1 if conflicts else 0), out


# --- SOPS files (`secrets/<stack>/<name>.sops.yaml`, backend sops) ---------------------------------

# Where `sops` (and `ksecrets sops set`) read the age key; merging SOPS files needs it too.
AGE_KEY_FILE_ENV = "SOPS_AGE_KEY_FILE"


def _is_sops(pathname: str, sides: list[Text]) -> bool:
    from ksecrets.backends.sops import FILE_SUFFIX
    from ksecrets.sopsrules import looks_like_sops

    return pathname.endswith(FILE_SUFFIX) or any(looks_like_sops(s.text) for s in sides if s.text.strip())


def _age_identities(pathname: str) -> tuple[list[str], str | None]:
    """The identities of SOPS_AGE_KEY_FILE, or ([], why not)."""
    from ksecrets.sealing import sops

    key_file = os.environ.get(AGE_KEY_FILE_ENV)
    if not key_file:
        return [], None
    try:
        text = Path(key_file).read_text(encoding="utf-8")
        return sops.identities_from_key_file(text, AGE_KEY_FILE_ENV), None
    except (OSError, UnicodeDecodeError):
        return [], f"{pathname}: merge conflict: {AGE_KEY_FILE_ENV}: cannot read the age key file"
    except KsecretsError as exc:
        return [], f"{pathname}: merge conflict: {_safe(str(exc))}"


def _merge_sops(sides: list[Text], ours_path: str, pathname: str) -> tuple[int, list[str]]:
    """A SOPS file merged by value (sealing.sops.merge) with the age key of SOPS_AGE_KEY_FILE. A
    conflict leaves ours as it is (a valid file whose MAC verifies; git keeps theirs in
    MERGE_HEAD): markers inside ciphertexts could not be resolved by reading them anyway."""
    from ksecrets.fileio import atomic_write_bytes
    from ksecrets.sealing import sops

    identities, problem = _age_identities(pathname)
    if problem:
        return 1, [problem]
    result = sops.merge(sides[0].text, sides[1].text, sides[2].text, identities, pathname)
    if result.text is None:
        hint = (
            f"; kept ours: take theirs (git checkout --theirs {pathname}) or set the values again "
            f"(ksecrets sops set ...), then git add {pathname}"
        )
        return 1, [_safe(c) + hint for c in result.conflicts]
    style = Text(
        "",
        crlf=_pick(sides[0].crlf, sides[1].crlf, sides[2].crlf),
        bom=_pick(sides[0].bom, sides[1].bom, sides[2].bom),
    )
    mode = Path(ours_path).stat().st_mode & 0o777 if Path(ours_path).exists() else 0o644
    atomic_write_bytes(ours_path, style.encode(result.text), mode)
    return 0, []


# --- textconv -------------------------------------------------------------------------------------


def _short(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value and "\n" not in value else json.dumps(value, default=str)


def textconv(text: str) -> str:
    """The stack file with every ciphertext shown as `sealed:<id>` and `digests` dropped. What is
    not ciphertext (a reference to an included file, a value under `encryptedData` that is not a
    sealed value, any other field) is shown as it is."""
    from ksecrets.sealing.crypto import is_well_formed
    from ksecrets.sopsrules import looks_like_sops

    if looks_like_sops(text):
        from ksecrets.sealing import sops

        try:
            return sops.diff_view(text, "file")
        except KsecretsError:
            return text  # never fail `git diff`
    if _included_kind((text,)) == "sealed":
        text = _wrap(text)
    try:
        config = _load(text)
        found = locate_sealed_block(text)
    except (KsecretsError, MergeConflict):
        return text  # never fail `git diff`: show the file as it is
    value = config.get(SEALED_KEY)
    if found is None or not isinstance(value, list):
        return text  # a reference (`stacks/S/sealed.yaml`), null, or no sealed values: as it is
    indent = found.indent
    out = [f"{indent}{SEALED_KEY}:  # ksecrets: ciphertexts shown as ids (the keyed digest when there is one)\n"]
    for e in value:
        if not isinstance(e, Mapping):
            out.append(f"{indent}  - {_show(e)}\n")
            continue
        out.append(f"{indent}  - {_show(e.get('namespace'))}/{_show(e.get('name'))}")
        fields = [f"{k}={_show(v)}" for k, v in e.items() if k not in ("name", "namespace", *_PAIRED)]
        out.append(f" ({', '.join(fields)})\n" if fields else "\n")
        enc, digests = e.get("encryptedData"), e.get("digests")
        digests = digests if isinstance(digests, Mapping) else {}
        if not isinstance(enc, Mapping):
            if enc is not None:
                out.append(f"{indent}      encryptedData: NOT A MAPPING: {_show(enc)}\n")
            continue
        for key in sorted(enc, key=str):
            v = enc[key]
            if not is_well_formed(v):
                ident = f"NOT CIPHERTEXT: {_show(v)}"
            elif digests.get(key):
                ident = f"digest:{_short(str(digests[key]))}"
            else:
                ident = f"sealed:{_short(v)}"
            out.append(f"{indent}      {key}: {ident}\n")
    return found.rest.replace(f"{indent}{SEALED_KEY}: {PLACEHOLDER}\n", "".join(out), 1)


# --- setup ----------------------------------------------------------------------------------------


def default_command(top: Path) -> str:
    """How git (a shell, any PATH, the repository's top as working directory) runs this very
    ksecrets: the running interpreter by absolute path, `-m ksecrets`, plus PYTHONPATH when that
    interpreter finds ksecrets only through it."""
    import ksecrets

    here = str(Path(ksecrets.__file__).resolve())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import ksecrets; print(ksecrets.__file__)"],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
    )
    command = f"{shlex.quote(sys.executable)} -m ksecrets"
    if probe.returncode != 0 or str(Path(probe.stdout.strip()).resolve()) != here:
        command = f"env PYTHONPATH={shlex.quote(str(Path(here).parent.parent))} {command}"
    return command


def setup(root: str | os.PathLike[str], command: str | None = None) -> list[str]:
    """Install both drivers in the repository at `root`: `.gitattributes` and `git config`."""
    from ksecrets.fileio import atomic_write_text

    root = Path(root)
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        raise KsecretsError(f"{root}: not inside a git work tree")
    top = Path(res.stdout.strip())
    command = command or default_command(top)
    done = []
    settings = {
        "merge.ksecrets.name": "ksecrets: merge sealed values of stack files key by key",
        "merge.ksecrets.driver": f"{command} git merge %O %A %B %P",
        "diff.ksecrets.textconv": f"{command} git textconv",
    }
    for key, value in settings.items():
        subprocess.run(["git", "config", key, value], cwd=top, check=True)
        done.append(f"git config {key} {shlex.quote(value)}")
    attrs = top / ".gitattributes"
    old = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    if ATTRIBUTES_LINE not in old.splitlines():
        new = old + ("" if not old or old.endswith("\n") else "\n") + ATTRIBUTES_LINE + "\n"
        atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777 if attrs.exists() else 0o644)
        done.append(f".gitattributes: added '{ATTRIBUTES_LINE}' (commit it)")
    else:
        done.append(".gitattributes: already has the line")
    done += add_included_attributes(top, root)
    done += add_sops_attributes(top, root)
    from ksecrets import gitrender

    done += gitrender.setup(top, root, command)
    return done


def add_sops_attributes(top: Path, root: Path) -> list[str]:
    """The line that gives a sops stack's files (`secrets/<stack>/*.sops.yaml` under the project
    root) both drivers."""
    from ksecrets.backends.sops import FILE_SUFFIX, SECRETS_DIR
    from ksecrets.fileio import atomic_write_text

    attrs = top / ".gitattributes"
    old = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    rel = os.path.relpath(os.path.abspath(root), top)
    tail = f"/{SECRETS_DIR}/*/*{FILE_SUFFIX}"
    prefix = "" if rel == "." else attributes_pattern(rel)
    pattern = f'{prefix[:-1]}{tail}"' if prefix.startswith('"') else f"{prefix}{tail}"
    line = f"{pattern} {DRIVERS}"
    if line in old.splitlines():
        return []
    new = old + ("" if not old or old.endswith("\n") else "\n") + line + "\n"
    atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777 if attrs.exists() else 0o644)
    return [f".gitattributes: added '{line}' (commit it)"]

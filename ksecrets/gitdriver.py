"""Git drivers for stack files (`Pulumi.<stack>.yaml`): a merge driver that merges sealed values
key by key, and a textconv that shows them as `KEY: sealed <id>` lines instead of ciphertext.

Merge: the file minus its `k8s-secrets:sealed` block is merged by `git merge-file` (real git);
the sealed entries are merged per Secret and per key, three ways (base, ours, theirs), so two
branches sealing different keys into the same Secret merge cleanly. Ciphertexts are random, so a
key whose ciphertext changed on both branches is a conflict (unless the keyed digests of
`KSECRETS_SEAL_KEY` show the same value): the file keeps our ciphertext and stays valid YAML (so
`ksecrets seal --stack` can re-seal it), one line per conflict names the entry and key, and the
exit code is 1 so that git marks the file conflicted. Nothing is decrypted: no private key is
needed or read.

Textconv: every ciphertext becomes `sealed:<8 hex>`, the keyed digest when there is one (so a
re-encryption of the same value shows no change) else a hash of the ciphertext; `digests` lines
are dropped. `git diff` then shows a sealed key as an added (+), removed (-) or changed (-/+) line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ksecrets.errors import KsecretsError

SEALED_KEY = "k8s-secrets:sealed"
ATTRIBUTES_LINE = "Pulumi.*.yaml merge=ksecrets diff=ksecrets"
_SEALED_LINE = re.compile(r"^(?P<indent>[ ]*)(?P<q>['\"]?)k8s-secrets:sealed(?P=q)[ ]*:(?P<rest>.*)$")
_ENTRY_FIELDS = ("scope", "type", "certificateFingerprint")


# --- text: the file without its sealed block ------------------------------------------------------


def split_sealed_block(text: str) -> tuple[str, str, int]:
    """(text without the `k8s-secrets:sealed:` block, the block's text, line index it was at).

    The block is its key line plus every following line that is blank, a comment or indented
    deeper than the key (or a `- ` item at the key's indent). No block: ("text", "", -1).
    """
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = _SEALED_LINE.match(line.rstrip("\r\n"))
        if not m:
            continue
        indent = len(m.group("indent"))
        j = i + 1
        if m.group("rest").strip() not in ("", "[]") and not m.group("rest").strip().startswith("#"):
            j = i + 1  # a flow value on the key line: the block is that one line
        else:
            while j < len(lines):
                stripped = lines[j].strip()
                col = len(lines[j]) - len(lines[j].lstrip(" "))
                if not stripped or (col > indent) or (col == indent and stripped.startswith("- ")):
                    j += 1
                    continue
                break
            # Blank lines and comments at the block's end belong to what follows.
            while j > i + 1 and (
                not lines[j - 1].strip()
                or (
                    lines[j - 1].lstrip().startswith("#")
                    and len(lines[j - 1]) - len(lines[j - 1].lstrip(" ")) <= indent
                )
            ):
                j -= 1
        return "".join(lines[:i] + lines[j:]), "".join(lines[i:j]), i
    return text, "", -1


def git_merge_file(base: str, ours: str, theirs: str, labels: tuple[str, str, str]) -> tuple[str, bool]:
    """(merged text, clean) from the real `git merge-file`."""
    with tempfile.TemporaryDirectory(prefix="ksecrets-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_text(text, encoding="utf-8")
            paths.append(str(p))
        res = subprocess.run(
            ["git", "merge-file", "-p", "-L", labels[0], "-L", labels[1], "-L", labels[2], *paths], capture_output=True
        )
    if res.returncode < 0 or res.returncode > 127:
        raise KsecretsError(f"git merge-file failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode("utf-8"), res.returncode == 0


# --- the sealed entries ---------------------------------------------------------------------------


def _entries(config: Mapping[str, Any] | None) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for e in (config or {}).get(SEALED_KEY) or []:
        if isinstance(e, Mapping) and isinstance(e.get("name"), str):
            out[(str(e.get("namespace") or ""), e["name"])] = {
                **{f: e.get(f) for f in _ENTRY_FIELDS},
                "encryptedData": dict(e.get("encryptedData") or {}),
                "digests": dict(e.get("digests") or {}),
                "_order": [k for k in e if k not in ("name", "namespace")],
            }
    return out


@dataclass
class MergeResult:
    entries: dict[tuple[str, str], dict | None]  # None: removed
    conflicts: list[str] = field(default_factory=list)


def _same(a: dict | None, b: dict | None) -> bool:
    def key(e):
        return None if e is None else ({f: e.get(f) for f in _ENTRY_FIELDS}, e["encryptedData"], e["digests"])

    return key(a) == key(b)


def merge_sealed(base: dict, ours: dict, theirs: dict) -> MergeResult:
    """Three-way merge of sealed entries keyed by (namespace, name); conflicts as messages."""
    result = MergeResult({})
    idents = list(dict.fromkeys([*ours, *theirs, *base]))
    for ident in idents:
        b, o, t = base.get(ident), ours.get(ident), theirs.get(ident)
        where = f"{ident[0]}/{ident[1]}"
        if _same(o, t):
            result.entries[ident] = o
        elif _same(b, o):
            result.entries[ident] = t
        elif _same(b, t):
            result.entries[ident] = o
        elif o is None or t is None:
            kept = o or t
            result.entries[ident] = kept
            result.conflicts.append(f"{where}: removed on one branch and changed on the other (kept the changed entry)")
        else:
            result.entries[ident] = _merge_entry(where, b, o, t, result.conflicts)
    return result


def _merge_entry(where: str, b: dict | None, o: dict, t: dict, conflicts: list[str]) -> dict:
    b = b or {"encryptedData": {}, "digests": {}}
    merged: dict[str, Any] = {"_order": o["_order"]}
    for f in _ENTRY_FIELDS:
        bv, ov, tv = b.get(f), o.get(f), t.get(f)
        if ov == tv or bv == tv:
            merged[f] = ov
        elif bv == ov:
            merged[f] = tv
        else:
            merged[f] = ov
            conflicts.append(f"{where}: {f} changed on both branches ({ov} and {tv}); kept ours")
    enc: dict[str, str] = {}
    dig: dict[str, str] = {}
    bd, od, td = b.get("encryptedData", {}), o["encryptedData"], t["encryptedData"]
    for key in sorted({*bd, *od, *td}):
        bv, ov, tv = bd.get(key), od.get(key), td.get(key)
        side = None
        if ov == tv or bv == tv:
            side = "o"
        elif bv == ov:
            side = "t"
        elif (
            ov is not None
            and tv is not None
            and o["digests"].get(key)
            and o["digests"].get(key) == t["digests"].get(key)
            and o.get("certificateFingerprint") == t.get("certificateFingerprint")
        ):
            side = "o"  # the same value (keyed digest), encrypted twice
        else:
            what = (
                "changed on both branches"
                if ov is not None and tv is not None
                else "removed on one branch and changed on the other"
            )
            conflicts.append(f"{where} key {key}: {what}; kept {'ours' if ov is not None else 'theirs'}")
            side = "o" if ov is not None else "t"
        src = o if side == "o" else t
        value = src["encryptedData"].get(key)
        if value is None:
            continue
        if src.get("certificateFingerprint") != merged.get("certificateFingerprint"):
            conflicts.append(
                f"{where} key {key}: sealed for {src.get('certificateFingerprint')} on one branch, "
                f"the entry is now {merged.get('certificateFingerprint')}"
            )
        enc[key] = value
        if src["digests"].get(key):
            dig[key] = src["digests"][key]
    merged["encryptedData"] = enc
    merged["digests"] = dig
    return merged


# --- the driver -----------------------------------------------------------------------------------


def _load(text: str):
    from ksecrets import yamlio

    doc = yamlio.load(text, "stack file") if text.strip() else {}
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise KsecretsError("not a mapping")
    config = doc.get("config") or {}
    if not isinstance(config, Mapping):
        raise KsecretsError("config is not a mapping")
    return config


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


def merge_texts(base: str, ours: str, theirs: str, path: str = "Pulumi.stack.yaml") -> tuple[str, list[str]]:
    """(merged text, conflict lines). A textual conflict outside the sealed block falls back to
    git's own markers for the whole file. A file of sealed entries that a stack names is merged
    as that stack's sealed block; another included list (apps) by `git merge-file`."""
    labels = (f"ours:{path}", f"base:{path}", f"theirs:{path}")
    kind = _included_kind((base, ours, theirs))
    if kind == "list":
        text, clean = git_merge_file(base, ours, theirs, labels)
        return text, [] if clean else [f"{path}: conflicting changes; resolve the markers"]
    if kind == "sealed":
        wrapped = [_wrap(t) if t.strip() else t for t in (base, ours, theirs)]
        text, conflicts = merge_texts(wrapped[0], wrapped[1], wrapped[2], path=path)
        return (_unwrap(text) if text.startswith(_WRAP) else text), conflicts
    try:
        configs = [_load(t) for t in (base, ours, theirs)]
    except KsecretsError:
        text, clean = git_merge_file(base, ours, theirs, labels)
        return text, [] if clean else [
            f"{path}: not a readable stack file on every side; merged as text, with conflict markers"
        ]
    rests = [split_sealed_block(t) for t in (base, ours, theirs)]
    rest, clean = git_merge_file(rests[0][0], rests[1][0], rests[2][0], labels)
    if not clean:
        text, clean = git_merge_file(base, ours, theirs, labels)
        return text, [] if clean else [f"{path}: conflicting changes outside k8s-secrets:sealed; resolve the markers"]
    result = merge_sealed(*(_entries(c) for c in configs))
    text = _compose(rest, ours, rests[1][2], result)
    return text, [f"{path}: merge conflict: {SEALED_KEY} {c}" for c in result.conflicts]


def _compose(rest: str, ours: str, ours_line: int, result: MergeResult) -> str:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from ksecrets import yamlio
    from ksecrets.config import stackfile

    wanted = [(ident, e) for ident, e in result.entries.items() if e is not None]
    y = stackfile._yaml(ours)
    if not wanted:
        return rest
    doc = yamlio.load_round_trip(y, rest, "merged stack file") or CommentedMap()
    config = doc.get("config")
    if config is None:
        config = doc["config"] = CommentedMap()
    ours_doc = yamlio.load_round_trip(y, ours, "ours") if ours.strip() else None
    seq = ((ours_doc or {}).get("config") or {}).get(SEALED_KEY)
    if not isinstance(seq, CommentedSeq):
        seq = CommentedSeq()
    # Where the block was in our file: after the config keys that came before it.
    before = 0
    if ours_doc is not None and SEALED_KEY in (ours_doc.get("config") or {}):
        keys = list(ours_doc["config"])
        before_keys = keys[: keys.index(SEALED_KEY)]
        before = max((i + 1 for i, k in enumerate(config) if k in before_keys), default=0)
    config.insert(before, SEALED_KEY, seq)
    keep = {ident for ident, _ in wanted}
    for i in reversed(range(len(seq))):
        e = seq[i]
        if not isinstance(e, Mapping) or (str(e.get("namespace") or ""), e.get("name")) not in keep:
            del seq[i]
    for (ns, name), e in wanted:
        stackfile.upsert_sealed_secret(
            config,
            name=name,
            namespace=ns,
            scope=e.get("scope") or "strict",
            encrypted_data=e["encryptedData"],
            certificate_fingerprint=e.get("certificateFingerprint") or "",
            digests=e["digests"],
            secret_type=e.get("type"),
        )
        if not e.get("certificateFingerprint"):
            _, node = stackfile.find_sealed_entry(config, name, ns)
            if node is not None and not node.get("certificateFingerprint"):
                del node["certificateFingerprint"]
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def merge_driver(base_path: str, ours_path: str, theirs_path: str, pathname: str) -> tuple[int, list[str]]:
    """git's `%O %A %B %P`: writes the result over %A; (exit code, conflict lines)."""
    from ksecrets.fileio import atomic_write_text

    texts = []
    for p in (base_path, ours_path, theirs_path):
        try:
            texts.append(Path(p).read_text(encoding="utf-8"))
        except FileNotFoundError:
            texts.append("")
        except (OSError, UnicodeDecodeError) as exc:
            raise KsecretsError(f"{pathname}: cannot read a side of the merge ({type(exc).__name__})") from None
    merged, conflicts = merge_texts(texts[0], texts[1], texts[2], path=pathname)
    mode = Path(ours_path).stat().st_mode & 0o777 if Path(ours_path).exists() else 0o644
    atomic_write_text(ours_path, merged, mode)
    out = []
    for c in conflicts:
        m = re.search(r"sealed (\S+)/(\S+?)(?::| key )", c)
        if m:
            c += (
                f"; re-seal it (ksecrets seal --stack {_stack_of(pathname)} --name {m.group(2)} "
                f"--namespace {m.group(1)} ...), then git add {pathname}"
            )
        out.append(c)
    return (1 if conflicts else 0), out


# --- textconv -------------------------------------------------------------------------------------


def _short(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def textconv(text: str) -> str:
    """The stack file with every ciphertext shown as `sealed:<id>` and `digests` dropped."""
    if _included_kind((text,)) == "sealed":
        text = _wrap(text)
    try:
        config = _load(text)
    except KsecretsError:
        return text  # never fail `git diff`: show the file as it is
    entries = _entries(config)
    rest, block, line = split_sealed_block(text)
    if line < 0:
        return text
    indent = " " * (len(block) - len(block.lstrip(" ")))
    out = [f"{indent}{SEALED_KEY}:  # ksecrets: ciphertexts shown as ids (the keyed digest when there is one)\n"]
    for (ns, name), e in entries.items():
        out.append(f"{indent}  - {ns}/{name}")
        fields = [f"{f}={e[f]}" for f in _ENTRY_FIELDS if e.get(f)]
        out.append(f" ({', '.join(fields)})\n" if fields else "\n")
        for key, value in sorted(e["encryptedData"].items()):
            digest = e["digests"].get(key)
            ident = f"digest:{_short(digest)}" if digest else f"sealed:{_short(str(value))}"
            out.append(f"{indent}      {key}: {ident}\n")
    lines = rest.splitlines(keepends=True)
    return "".join(lines[:line] + out + lines[line:])


# --- setup ----------------------------------------------------------------------------------------


def setup(root: str | os.PathLike[str], command: str = "ksecrets") -> list[str]:
    """Install both drivers in the repository at `root`: `.gitattributes` and `git config`."""
    from ksecrets.fileio import atomic_write_text

    root = Path(root)
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        raise KsecretsError(f"{root}: not inside a git work tree")
    top = Path(res.stdout.strip())
    done = []
    settings = {
        "merge.ksecrets.name": "ksecrets: merge sealed values of stack files key by key",
        "merge.ksecrets.driver": f"{command} git merge %O %A %B %P",
        "diff.ksecrets.textconv": f"{command} git textconv",
    }
    for key, value in settings.items():
        subprocess.run(["git", "config", key, value], cwd=top, check=True)
        done.append(f"git config {key} '{value}'")
    attrs = top / ".gitattributes"
    old = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    if ATTRIBUTES_LINE not in old.splitlines():
        new = old + ("" if not old or old.endswith("\n") else "\n") + ATTRIBUTES_LINE + "\n"
        atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777 if attrs.exists() else 0o644)
        done.append(f".gitattributes: added '{ATTRIBUTES_LINE}' (commit it)")
    else:
        done.append(".gitattributes: already has the line")
    done += add_included_attributes(top, root)
    return done


def add_included_attributes(top: Path, root: Path) -> list[str]:
    """One `.gitattributes` line per file a stack names for its sealed or apps key, so that git
    merges and diffs them with the drivers too (only where the drivers are set up)."""
    from ksecrets.config import includes
    from ksecrets.fileio import atomic_write_text

    attrs = top / ".gitattributes"
    old = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    if ATTRIBUTES_LINE not in old.splitlines():
        return []
    lines = []
    from ksecrets.config.names import stack_files

    for stack_file in stack_files(root):
        try:
            config = _load(stack_file.read_text(encoding="utf-8"))
        except (KsecretsError, OSError, UnicodeDecodeError):
            continue
        for key in includes.INCLUDABLE:
            ref = config.get(f"k8s-secrets:{key}")
            if includes.is_reference(key, ref):
                rel = os.path.relpath(os.path.join(os.path.abspath(stack_file.parent), str(ref)), top)
                line = f"/{rel} merge=ksecrets diff=ksecrets"
                if line not in old.splitlines() and line not in lines:
                    lines.append(line)
    if not lines:
        return []
    new = old + ("" if old.endswith("\n") else "\n") + "".join(line + "\n" for line in lines)
    atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777)
    return [f".gitattributes: added '{line}' (commit it)" for line in lines]

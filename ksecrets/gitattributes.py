"""The `.gitattributes` lines that route stack files and the files they include through the
ksecrets merge driver and diff textconv: one home for the patterns, below the drivers themselves
(gitdriver.py, gitrender.py) and the use cases that add files (`stack split`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from ksecrets.errors import KsecretsError

DRIVERS = "merge=ksecrets diff=ksecrets"
ATTRIBUTES_LINE = f"Pulumi.*.yaml {DRIVERS}"


def _config(text: str) -> Mapping[str, Any]:
    """A stack file's `config:` map (bounded reader; an unreadable file raises KsecretsError)."""
    from ksecrets import yamlio

    doc = yamlio.load(text, "stack file") if text.strip() else {}
    if not isinstance(doc, Mapping):
        raise KsecretsError("stack file: not a mapping")
    config = doc.get("config") or {}
    return config if isinstance(config, Mapping) else {}


def attributes_pattern(rel: str) -> str:
    """A `.gitattributes` pattern matching exactly the file `rel` (relative to the top): anchored,
    glob characters escaped, C-quoted (as gitattributes reads `"..."`) when it holds a blank, a
    quote or a control character."""
    pattern = "/" + re.sub(r"([*?\[\\])", r"\\\1", rel.replace(os.sep, "/"))
    if not re.search(r'[\s"\x00-\x1f\x7f]', pattern):
        return pattern
    out = []
    for ch in pattern:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


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
            config = _config(stack_file.read_text(encoding="utf-8"))
        except (KsecretsError, OSError, UnicodeDecodeError):
            continue
        for key in includes.INCLUDABLE:
            ref = config.get(f"k8s-secrets:{key}")
            if includes.is_reference(key, ref):
                rel = os.path.relpath(os.path.join(os.path.abspath(stack_file.parent), str(ref)), top)
                line = f"{attributes_pattern(rel)} {DRIVERS}"
                if line not in old.splitlines() and line not in lines:
                    lines.append(line)
    if not lines:
        return []
    new = old + ("" if old.endswith("\n") else "\n") + "".join(line + "\n" for line in lines)
    atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777)
    return [f".gitattributes: added '{line}' (commit it)" for line in lines]

"""`stack split`: a stack's sealed values and apps moved into `stacks/<stack>/<key>.yaml` (comments
kept), the stack file keeping the path (README "Large stacks")."""

from __future__ import annotations

import os
from pathlib import Path

from ksecrets.config.names import PREFIX
from ksecrets.config.stackfile import stack_file_path
from ksecrets.errors import KsecretsError

from ksecrets.usecases.stack_new import validate_text


def stack_split(root: str | os.PathLike[str], stack: str, keys: tuple[str, ...] = ("sealed", "apps")) -> list[str]:
    """Move `k8s-secrets:<key>` of a stack into `stacks/<stack>/<key>.yaml` (comments kept), the
    stack file keeping the path. Returns the files written; a key already in a file is skipped."""
    import io
    import subprocess

    from ksecrets.config import includes
    from ksecrets.config.stackfile import _yaml, prepare_stack_update
    from ksecrets.fileio import atomic_write_bytes, locked

    root = Path(root)
    path = stack_file_path(stack, root)
    for key in keys:
        if key not in includes.INCLUDABLE:
            raise KsecretsError(f"--key {key!r}: not one of {', '.join(includes.INCLUDABLE)}")
    written: list[str] = []
    with locked(path, "stack file", source=path.name):
        texts: dict[str, str] = {}

        def mutate(config) -> None:
            for key in keys:
                value = config.get(PREFIX + key)
                if value is None or isinstance(value, str):
                    continue
                rel = f"stacks/{stack}/{key}.yaml"
                target = root / rel
                if target.exists():
                    raise KsecretsError(f"{rel}: already exists; not overwritten")
                y = _yaml("")
                y.indent(mapping=2, sequence=2, offset=0)
                buf = io.StringIO()
                y.dump(value, buf)
                texts[rel] = buf.getvalue()
                config[PREFIX + key] = rel

        def check(text: str) -> None:
            real = {str(includes.target(rel, key="", source=path.name, root=root)): t for rel, t in texts.items()}
            with includes.pending(real):
                validate_text(text, stack, path.name, str(root))

        pending = prepare_stack_update(path, mutate, check=check)
        for rel, text in texts.items():
            atomic_write_bytes(root / rel, text.encode("utf-8"), 0o644)
            written.append(rel)
        pending.commit()
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if res.returncode == 0 and written:
        from ksecrets.gitattributes import add_included_attributes

        written += add_included_attributes(Path(res.stdout.strip()), root)
    return written

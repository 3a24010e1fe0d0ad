"""`ksecrets adopt PATH --stack S`: from leaky to sealed, the guide's first step.

Takes the plaintext that `scan` finds under PATH, v1 Secret manifests with data and `.env*` files,
and moves it into the stack: sealed into the stack file (sealed-secrets), pushed to the app's
Vault path (vault) or encrypted into the stack's SOPS file `secrets/<stack>/<name>.sops.yaml`
(sops: created for `sops.recipients`, or an existing one edited with the stack's age key, its other
keys keeping their ciphertexts, as `ksecrets sops set`). Only when every value is in does it delete the plaintext files from the
working tree, and it prints how to purge them from Git history, where they stay until rewritten.

Templates (`.env.example`, `*.template`...: `scan.is_template`, the list `scan` uses) hold
placeholders, not values: they are skipped, never sealed nor removed. A manifest's labels,
annotations and `immutable` go into the sealed entry with its values.

Nothing half-done: every file is read and checked, and every target resolved, before anything is
written; if anything fails mid-way, every file written (the stack file and its included files,
through their symlinks) gets its bytes back, and a removed plaintext file is put back; no file is
removed unless all went in. File names are printed with control characters escaped (`shown`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from ksecrets.errors import KsecretsError


@dataclass
class Item:
    """One Secret's values from one plaintext file."""

    source: str
    name: str
    namespace: str | None
    values: dict[str, bytes]
    type: str = "Opaque"
    scope: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    immutable: bool | None = None


@dataclass
class AdoptReport:
    stack: str
    items: list[Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    in_history: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # skipped: placeholders, not values

    def purge_lines(self) -> list[str]:
        out = [f"skipped template (placeholders, not values; left as is): {shown(t)}" for t in self.templates]
        if not self.removed:
            return out
        out.append(f"removed from the working tree: {', '.join(map(shown, self.removed))}")
        if self.in_history:
            paths = " ".join(f"--path {shell_quote(p)}" for p in self.in_history)
            out += [
                f"still in Git history: {', '.join(map(shown, self.in_history))}; "
                "these values are exposed: rotate them, and purge:",
                f"  git filter-repo --invert-paths {paths}",
                "  then force-push every branch and tag, and have every clone re-cloned (old clones keep the values)",
            ]
        else:
            out.append("never committed: nothing to purge from Git history")
        out.append("commit the files named above (and the deletions); keep .env files out of Git (.gitignore)")
        return out


def shown(path: str) -> str:
    """A file name as one printable line: control characters (a newline, ESC) and the backslash
    escaped as Python writes them (`a\\nb`), so a crafted name cannot forge report lines."""
    out = []
    for ch in str(path):
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def shell_quote(path: str) -> str:
    """A path for a shell command line: `shlex.quote`, or bash's `$'...'` when it holds control
    characters (the command stays on one line and still names the file)."""
    if all(ch.isprintable() or ch == " " for ch in path):
        return shlex.quote(path)
    body = "".join(
        ch
        if (ch.isprintable() or ch == " ") and ch not in "'\\"
        else f"\\x{ord(ch):02x}"
        if ord(ch) < 0x100
        else f"\\u{ord(ch):04x}"
        for ch in path
    )
    return f"$'{body}'"


def _is_env_file(path: Path) -> bool:
    return path.name.startswith(".env") or path.suffix == ".env"


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        if os.path.lexists(path):
            raise KsecretsError(f"{shown(str(path))}: not a regular file or a directory")
        raise KsecretsError(f"{shown(str(path))}: no such file or directory")
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".venv", "node_modules", "__pycache__"))
        for f in sorted(filenames):
            if os.path.isfile(os.path.join(dirpath, f)):  # a FIFO, socket or device holds no file to adopt
                out.append(Path(dirpath) / f)
    return out


def collect(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    namespace: str | None = None,
    templates: list[str] | None = None,
    allow_key_names: Collection[str] = (),
) -> list[Item]:
    """Every Secret manifest with data and every env file under `path`, parsed (values in memory).
    Templates are skipped (their names appended to `templates`)."""
    from ksecrets import scan, yamlio
    from ksecrets.envfile import parse_env_file
    from ksecrets.fileio import read_regular
    from ksecrets.sealing.secret_input import SCOPE_ANNOTATIONS, read_secret, scope_from_annotations

    items: list[Item] = []
    for p in _candidates(Path(path)):
        src = str(p)
        if scan.is_template(src):
            if templates is not None:
                templates.append(src)
            continue
        try:
            data = read_regular(p)  # never blocks on a FIFO swapped in since the walk
        except OSError as exc:
            raise KsecretsError(f"{shown(src)}: cannot read it ({exc.strerror})") from None
        if _is_env_file(p):
            values = parse_env_file(data, shown(src), allow_key_names=allow_key_names)
            if not values:
                continue
            if not name:
                raise KsecretsError(f"{shown(src)}: an env file has no Secret name; pass --name (and --namespace)")
            items.append(Item(src, name, namespace, dict(values)))
            continue
        if not scan.looks_like_manifest(src, data) or not list(scan.find_secret_objects(data, shown(src))):
            continue
        text = data.decode("utf-8", "replace")
        docs = yamlio.load_all(text, shown(src))
        kinds = {(d.get("apiVersion"), d.get("kind")) for d in docs if isinstance(d, dict)}
        if kinds != {("v1", "Secret")}:
            raise KsecretsError(
                f"{shown(src)}: holds other objects besides v1 Secrets; move the Secrets to a file of their own "
                "first (adopt removes the file)"
            )
        for i, doc in enumerate(docs):
            secret = read_secret(yamlio.dump(doc), f"{shown(src)}[{i}]" if len(docs) > 1 else shown(src))
            if not secret.data:
                continue
            scope = scope_from_annotations(secret.annotations) if secret.annotations else None
            # The scope annotations become the entry's `scope`; the others travel with the values.
            annotations = {k: v for k, v in secret.annotations.items() if k not in SCOPE_ANNOTATIONS.values()}
            items.append(
                Item(
                    src,
                    secret.name,
                    secret.namespace or namespace,
                    dict(secret.data),
                    secret.type,
                    None if scope == "strict" else scope,
                    dict(secret.labels),
                    annotations,
                    secret.immutable,
                )
            )
    if not items:
        skipped = f" (templates skipped: {', '.join(map(shown, templates))})" if templates else ""
        raise KsecretsError(f"{shown(str(path))}: no Secret manifest with data and no env file found{skipped}")
    seen: dict[tuple[str | None, str], str] = {}
    for it in items:
        key = (it.namespace, it.name)
        if key in seen and seen[key] != it.source:
            raise KsecretsError(
                f"{shown(it.source)}: Secret {it.name} is also in {shown(seen[key])}; adopt them one at a time"
            )
        seen[key] = it.source
    return items


def _committed(paths: list[str], root: Path) -> list[str]:
    res = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        return []
    top = Path(res.stdout.strip())
    out = []
    for p in paths:
        rel = os.path.relpath(Path(p).resolve(), top)
        log = subprocess.run(["git", "log", "--all", "--format=%H", "-n", "1", "--", rel], cwd=top, capture_output=True)
        if log.returncode == 0 and log.stdout.strip():
            out.append(rel)
    return out


def adopt(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    stack: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    keep: bool = False,
    seal_key: bytes | None = None,
    vault_client=None,
    age_key_file: str | os.PathLike[str] | None = None,
    allow_key_names: Collection[str] = (),
) -> AdoptReport:
    from ksecrets.config import load_stack
    from ksecrets.config.stackfile import stack_file_path
    from ksecrets.fileio import Transaction, locked

    cfg = load_stack(stack, root)
    templates: list[str] = []
    items = collect(path, name=name, namespace=namespace, templates=templates, allow_key_names=allow_key_names)
    report = AdoptReport(stack, items, templates=templates)
    files = sorted({it.source for it in items})
    if not cfg.spec.adopts:
        raise KsecretsError(f"{cfg.source}: {cfg.spec.cannot_adopt()}")
    if cfg.spec.seals or cfg.spec.sops_files:
        stack_path = stack_file_path(cfg.stack, root)
        # The stack file stays locked from the first read to the last removal; every file the
        # seals (or encryptions) write, and every plaintext file removed, is restored if anything fails.
        with locked(stack_path, "stack file", source=stack_path.name), Transaction() as tx:
            if cfg.spec.seals:
                _seal(cfg, root, items, report, seal_key, tx)
            else:
                _encrypt(cfg, root, items, report, age_key_file, allow_key_names, tx)
            report.in_history = _committed(files, Path(root))
            if not keep:
                _remove(files, report)
        return report
    _push(cfg, items, report, vault_client)  # vault: Vault keeps versions, nothing to roll back there
    report.in_history = _committed(files, Path(root))
    if not keep:
        _remove(files, report)
    return report


def _remove(files: list[str], report: AdoptReport) -> None:
    """Remove the plaintext files, all or none: each is first renamed aside (a rename keeps a
    symlink a symlink), and a rename that fails puts back those renamed before it."""
    moved: list[tuple[str, str]] = []
    try:
        for f in files:
            aside = os.path.join(os.path.dirname(f), f".{os.path.basename(f)}.ksecrets-adopt-{os.getpid()}")
            os.rename(f, aside)
            moved.append((f, aside))
    except OSError as exc:
        for f, aside in reversed(moved):
            os.rename(aside, f)
        raise KsecretsError(f"{shown(f)}: cannot remove it ({exc.strerror}); nothing changed") from None
    for f, aside in moved:
        os.unlink(aside)
        report.removed.append(f)


def _seal(cfg, root, items: list[Item], report: AdoptReport, seal_key: bytes | None, tx) -> None:
    from ksecrets.usecases import seal_stack
    from ksecrets.usecases.seal_stack import resolve_namespace, stack_certificate

    stack_certificate(cfg)  # a missing or expired certificate fails before anything
    for it in items:
        it.namespace = resolve_namespace(cfg, it.name, it.namespace)
    for f in _stack_files(cfg, root):
        tx.keep(f)  # the stack file and the files it includes, through their symlinks
    for it in items:
        request = seal_stack.SealRequest(
            name=it.name,
            namespace=it.namespace,
            values=it.values,
            scope=it.scope,
            secret_type=it.type,
            seal_key=seal_key,
            labels=it.labels,
            annotations=it.annotations,
            immutable=it.immutable,
        )
        r = seal_stack.seal_into_stack(root, cfg.stack, request)
        report.lines += [f"{shown(it.source)}: " + line for line in r.lines()]


def _encrypt(cfg, root, items: list[Item], report: AdoptReport, key_file, allow_key_names, tx) -> None:
    """Every Secret into its SOPS file: all encrypted (or edited) in memory first, then written."""
    import base64

    from ksecrets.backends.sops import secret_file
    from ksecrets.envfile import check_key_name, config_map_key_problem
    from ksecrets.fileio import atomic_write_text, read_bytes
    from ksecrets.manifests.plan import metadata
    from ksecrets.sealing import sops
    from ksecrets.usecases.seal_stack import resolve_namespace
    from ksecrets.usecases.sops_set import read_identities

    planned: list[tuple[Path, str, str, Item, str]] = []
    identities: list[str] | None = None
    for it in items:
        it.namespace = resolve_namespace(cfg, it.name, it.namespace)
        rel = secret_file(cfg.stack, it.name)
        where = shown(it.source)
        if any(p[1] == rel for p in planned):
            raise KsecretsError(f"{where}: Secret {it.name}: another namespace's Secret of that name goes to {rel}")
        for key, value in it.values.items():
            problem = config_map_key_problem(key)
            if problem:
                raise KsecretsError(f"{where}: data: key {key[:40]}: {problem}")
            check_key_name(key, value, f"{where}: data", allow_key_names)
        encoded = {k: base64.b64encode(it.values[k]).decode("ascii") for k in sorted(it.values)}
        path = Path(root) / rel
        if path.exists():
            identities = identities if identities is not None else read_identities(key_file)
            old = read_bytes(path, "SOPS file", source=rel, regular=True).decode("utf-8", "replace")
            tree = sops.parse(old, rel).tree
            meta = tree.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            if meta.get("namespace") != it.namespace:
                raise KsecretsError(f"{where}: {rel}: metadata.namespace is not {it.namespace}; pass --namespace")
            if (tree.get("type") or "Opaque") != it.type:
                raise KsecretsError(f"{where}: {rel}: type is {tree.get('type') or 'Opaque'}, not {it.type}")
            planned.append((path, rel, sops.edit(old, identities, rel, set_values=encoded), it, "edited"))
            continue
        if not cfg.sops.recipients:
            raise KsecretsError(
                f"{cfg.source}: k8s-secrets:sops.recipients: empty; add the stack's age public key (age1...)"
            )
        manifest: dict = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(it.name, it.namespace, labels=it.labels, annotations=it.annotations),
            "type": it.type,
            "data": encoded,
        }
        if it.immutable is not None:
            manifest["immutable"] = it.immutable
        planned.append((path, rel, sops.encrypt_secret(manifest, list(cfg.sops.recipients), rel), it, "created"))
    for path, rel, text, it, what in planned:
        real = tx.keep(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(real, text, 0o644)
        report.lines.append(f"{shown(it.source)}: {rel}: {what} ({it.namespace}/{it.name}, {len(it.values)} keys)")


def _stack_files(cfg, root) -> list[Path]:
    """The real paths of the stack file and of every file its `sealed`/`apps` keys name."""
    from ksecrets.config import includes
    from ksecrets.config.load import raw_from_stack_file
    from ksecrets.config.stackfile import stack_file_path

    path = stack_file_path(cfg.stack, root)
    out = [Path(os.path.realpath(path))]
    raw = raw_from_stack_file(path)
    for key in includes.INCLUDABLE:
        if includes.is_reference(key, raw.get(key)):
            out.append(includes.target(raw[key], key=key, source=path.name, root=os.path.abspath(path.parent)))
    return out


def _push(cfg, items: list[Item], report: AdoptReport, client) -> None:
    from ksecrets.usecases.vault_push import check_declared_keys, push_values, text_values

    plan = []
    for it in items:
        apps = [
            a for a in cfg.apps if a.secret_name == it.name and (it.namespace is None or a.namespace == it.namespace)
        ]
        if len(apps) != 1:
            raise KsecretsError(
                f"{shown(it.source)}: Secret {it.name}: "
                + ("no app of the stack uses it" if not apps else "several apps use it; pass --namespace")
                + f" ({cfg.source})"
            )
        values = text_values(it.values, shown(it.source))
        check_declared_keys(apps[0], set(values), shown(it.source))
        plan.append((it, apps[0], values))
    if client is None:
        from ksecrets.vault.client import make_client

        client = make_client(cfg.vault)
    for it, app, values in plan:
        result = push_values(client, cfg, app, values, shown(it.source))
        report.lines += [f"{shown(it.source)}: " + line for line in result.lines()]

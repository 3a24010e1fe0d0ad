"""`ksecrets adopt PATH --stack S`: from leaky to sealed, the guide's first step.

Takes the plaintext that `scan` finds under PATH, v1 Secret manifests with data and `.env*` files,
and moves it into the stack: sealed into the stack file (sealed-secrets) or pushed to the app's
Vault path (vault). Only when every value is in does it delete the plaintext files from the
working tree, and it prints how to purge them from Git history, where they stay until rewritten.

Nothing half-done: every file is read and checked, and every target resolved, before anything is
written; a sealed stack file that fails mid-way is restored to its bytes; no file is removed unless
all went in.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class AdoptReport:
    stack: str
    items: list[Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    in_history: list[str] = field(default_factory=list)

    def purge_lines(self) -> list[str]:
        if not self.removed:
            return []
        out = [f"removed from the working tree: {', '.join(self.removed)}"]
        if self.in_history:
            paths = " ".join(f"--path {shlex.quote(p)}" for p in self.in_history)
            out += [
                f"still in Git history: {', '.join(self.in_history)}; these values are exposed: rotate them, and purge:",
                f"  git filter-repo --invert-paths {paths}",
                "  then force-push every branch and tag, and have every clone re-cloned (old clones keep the values)",
            ]
        else:
            out.append("never committed: nothing to purge from Git history")
        out.append("commit the files named above (and the deletions); keep .env files out of Git (.gitignore)")
        return out


def _is_env_file(path: Path) -> bool:
    return path.name.startswith(".env") or path.suffix == ".env"


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise KsecretsError(f"{path}: no such file or directory")
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".venv", "node_modules", "__pycache__"))
        for f in sorted(filenames):
            out.append(Path(dirpath) / f)
    return out


def collect(path: str | os.PathLike[str], *, name: str | None = None, namespace: str | None = None) -> list[Item]:
    """Every Secret manifest with data and every env file under `path`, parsed (values in memory)."""
    from ksecrets import scan
    from ksecrets.fileio import read_bytes
    from ksecrets.envfile import parse_env_file
    from ksecrets.sealing.secret_input import read_secret

    items: list[Item] = []
    for p in _candidates(Path(path)):
        data = read_bytes(p, "file")
        src = str(p)
        if _is_env_file(p):
            values = parse_env_file(data, src)
            if not values:
                continue
            if not name:
                raise KsecretsError(f"{src}: an env file has no Secret name; pass --name (and --namespace)")
            items.append(Item(src, name, namespace, dict(values)))
            continue
        if not scan.looks_like_manifest(src, data) or not list(scan.find_secret_objects(data, src)):
            continue
        from ksecrets import yamlio

        text = data.decode("utf-8", "replace")
        docs = yamlio.load_all(text, src)
        kinds = {(d.get("apiVersion"), d.get("kind")) for d in docs if isinstance(d, dict)}
        if kinds != {("v1", "Secret")}:
            raise KsecretsError(
                f"{src}: holds other objects besides v1 Secrets; move the Secrets to a file of their own "
                "first (adopt removes the file)"
            )
        for i, doc in enumerate(docs):
            secret = read_secret(yamlio.dump(doc), f"{src}[{i}]" if len(docs) > 1 else src)
            if not secret.data:
                continue
            from ksecrets.sealing.secret_input import scope_from_annotations

            scope = scope_from_annotations(secret.annotations) if secret.annotations else None
            items.append(
                Item(
                    src,
                    secret.name,
                    secret.namespace or namespace,
                    dict(secret.data),
                    secret.type,
                    None if scope == "strict" else scope,
                )
            )
    if not items:
        raise KsecretsError(f"{path}: no Secret manifest with data and no env file found")
    seen: dict[tuple[str | None, str], str] = {}
    for it in items:
        key = (it.namespace, it.name)
        if key in seen and seen[key] != it.source:
            raise KsecretsError(f"{it.source}: Secret {it.name} is also in {seen[key]}; adopt them one at a time")
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
        log = subprocess.run(
            ["git", "log", "--all", "--format=%H", "-n", "1", "--", rel], cwd=top, capture_output=True, text=True
        )
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
) -> AdoptReport:
    from ksecrets.config import load_stack

    cfg = load_stack(stack, root)
    items = collect(path, name=name, namespace=namespace)
    report = AdoptReport(stack, items)
    if cfg.backend == "sealed-secrets":
        _seal(cfg, root, items, report, seal_key)
    elif cfg.backend == "vault":
        _push(cfg, items, report, vault_client)
    else:
        raise KsecretsError(
            f"{cfg.source}: backend manual keeps values in Pulumi config; "
            "adopt seals (sealed-secrets) or pushes (vault)"
        )
    files = sorted({it.source for it in items})
    report.in_history = _committed(files, Path(root))
    if not keep:
        for f in files:
            os.unlink(f)
            report.removed.append(f)
    return report


def _seal(cfg, root, items: list[Item], report: AdoptReport, seal_key: bytes | None) -> None:
    from ksecrets.config.stackfile import stack_file_path
    from ksecrets.fileio import atomic_write_bytes
    from ksecrets.usecases.seal_stack import resolve_namespace, seal_into_stack, stack_certificate

    stack_certificate(cfg)  # a missing or expired certificate fails before anything
    for it in items:
        it.namespace = resolve_namespace(cfg, it.name, it.namespace)
    path = stack_file_path(cfg.stack, root)
    original = path.read_bytes()
    mode = path.stat().st_mode & 0o777
    try:
        for it in items:
            r = seal_into_stack(
                root,
                cfg.stack,
                name=it.name,
                namespace=it.namespace,
                values=it.values,
                scope=it.scope,
                secret_type=it.type,
                seal_key=seal_key,
            )
            report.lines += [f"{it.source}: " + line for line in r.lines()]
    except BaseException:
        atomic_write_bytes(path, original, mode)  # nothing half-done: the stack file as it was
        raise


def _push(cfg, items: list[Item], report: AdoptReport, client) -> None:
    from ksecrets.usecases.vault_push import check_declared_keys, push_values, text_values

    plan = []
    for it in items:
        apps = [
            a for a in cfg.apps if a.secret_name == it.name and (it.namespace is None or a.namespace == it.namespace)
        ]
        if len(apps) != 1:
            raise KsecretsError(
                f"{it.source}: Secret {it.name}: "
                + ("no app of the stack uses it" if not apps else "several apps use it; pass --namespace")
                + f" ({cfg.source})"
            )
        values = text_values(it.values, it.source)
        check_declared_keys(apps[0], set(values), it.source)
        plan.append((it, apps[0], values))
    if client is None:
        from ksecrets.vault.client import make_client

        client = make_client(cfg.vault)
    for it, app, values in plan:
        result = push_values(client, cfg, app, values, it.source)
        report.lines += [f"{it.source}: " + line for line in result.lines()]

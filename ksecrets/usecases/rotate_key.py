"""Rotate one key of one Secret, the stack's backend's way (`ksecrets rotate`).

- sealed-secrets: a new random value is sealed into Pulumi.<stack>.yaml under the stack file's
  lock (the other keys keep their ciphertexts); the caller then renders and commits.
- vault: the CronJob's rotation, once (kv-v2 random value, or a PostgreSQL password with the admin
  credentials the request carries).
- otherwise: the stack model says why the key cannot be rotated here.

The new value is never returned: only the lines that say which key changed and what to do next.
Imports beyond the standard library happen inside the functions: `ksecrets rotate --help` imports
this module for DEFAULT_LENGTH (tests/cli/test_startup.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ksecrets.errors import KsecretsError

if TYPE_CHECKING:
    from ksecrets.config.model import App, RotationSpec, StackConfig

DEFAULT_LENGTH = 32


@dataclass(frozen=True)
class RotateRequest:
    root: Path
    stack: str
    name: str  # the Secret's name (an app's secretName)
    key: str
    namespace: str | None = None  # default: from the app
    length: int | None = None  # default: the key's rotation.length, else DEFAULT_LENGTH
    force: bool = False  # vault, postgres dual: ignore rotation.minInterval
    pgadmin: tuple[str, str] = ("", "")  # postgres: the admin that may ALTER ROLE (user, password)


@dataclass
class Rotated:
    lines: list[str] = field(default_factory=list)  # for stdout
    warnings: list[str] = field(default_factory=list)  # for stderr, each starting with "warning: "


def rotate_key(req: RotateRequest) -> Rotated:
    from ksecrets.config.load import load_stack

    cfg = load_stack(req.stack, req.root)
    app = _app_for(cfg, req.name, req.namespace)
    spec = _spec_for(app, req.key)
    length = _length(req.length, spec)
    if cfg.spec.seals:
        from ksecrets.config.load import stack_path
        from ksecrets.fileio import locked

        path = stack_path(req.stack, req.root)
        with locked(path, "stack file", source=path.name):
            cfg = load_stack(req.stack, req.root)  # again, under the lock
            app = _app_for(cfg, req.name, req.namespace)
            return _rotate_sealed(req, cfg, app, length)
    if cfg.spec.vault:
        return _rotate_vault(req, cfg, app, spec, length)
    raise KsecretsError(f"{cfg.source}: {cfg.spec.cannot_rotate(req.name, req.key)}")


def _app_for(cfg: StackConfig, name: str, namespace: str | None) -> App | None:
    found = [a for a in cfg.apps if a.secret_name == name and (namespace is None or a.namespace == namespace)]
    if len(found) > 1:
        raise KsecretsError(
            f"{cfg.source}: apps in namespaces {', '.join(sorted(a.namespace for a in found))} "
            f"use secretName {name}; pass --namespace"
        )
    return found[0] if found else None


def _spec_for(app: App | None, key: str) -> RotationSpec | None:
    return next((r for r in app.rotation if r.key == key), None) if app else None


def _length(asked: int | None, spec: RotationSpec | None) -> int:
    from ksecrets.jobs.rotate import MAX_LENGTH, MIN_LENGTH

    length = asked if asked is not None else (spec.length if spec else DEFAULT_LENGTH)
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise KsecretsError(f"--length: {length} is out of range ({MIN_LENGTH} to {MAX_LENGTH})")
    return length


def _rotate_sealed(req: RotateRequest, cfg: StackConfig, app: App | None, length: int) -> Rotated:
    from ksecrets.jobs.rotate import generate
    from ksecrets.sealing import churn
    from ksecrets.usecases.seal_stack import SealRequest, resolve_namespace, seal_into_stack

    namespace = req.namespace or (app.namespace if app else resolve_namespace(cfg, req.name, None))
    entry = cfg.sealed_entry(namespace, req.name)
    if entry is None:
        raise KsecretsError(
            f"{cfg.source}: {namespace}/{req.name} has no sealed values to rotate; "
            f"seal them first (ksecrets seal --stack {cfg.stack} --name {req.name} ...)"
        )
    if req.key not in entry.keys:
        raise KsecretsError(
            f"{cfg.source}: {namespace}/{req.name} has no key {req.key!r} "
            f"(keys: {', '.join(entry.keys)}); rotation replaces an existing key"
        )
    value = generate(length).encode("ascii")
    request = SealRequest(
        name=req.name, namespace=namespace, values={req.key: value}, seal_key=churn.seal_key_from_env()
    )
    report = seal_into_stack(req.root, cfg.stack, request)
    del value
    out = Rotated(warnings=[line for line in report.lines() if line.startswith("warning: ")])
    out.lines.append(
        f"{report.source}: {namespace}/{req.name}: rotated {req.key} ({length} characters, sealed for "
        f"{report.fingerprint}); other keys kept"
    )
    out.lines.append(
        f"next: make render, then commit {report.source} and k8s/{cfg.stack}/; Flux applies the new "
        "SealedSecret and the Deployments roll on the changed ciphertext"
    )
    return out


def _rotate_vault(
    req: RotateRequest, cfg: StackConfig, app: App | None, spec: RotationSpec | None, length: int
) -> Rotated:
    from ksecrets.jobs.rotate import Plan, Postgres, PostgresItem, Target, rotate_app, rotate_postgres, rotate_random
    from ksecrets.vault.client import make_client

    if app is None or app.vault is None or cfg.vault is None:
        raise KsecretsError(
            f"{cfg.source}: no app with secretName {req.name}"
            + (f" in namespace {req.namespace}" if req.namespace else "")
            + "; the Vault path comes from the app's vault.path"
        )
    if app.keys and req.key not in app.keys:
        raise KsecretsError(
            f"{cfg.source}: {req.key!r} is not a key of Secret {req.name} (keys: {', '.join(app.keys)})"
        )
    target = Target(mount=cfg.vault.kv_mount, path=app.vault.path, key=req.key)
    client = make_client(cfg.vault)
    min_interval = 0 if req.force else cfg.rotation.min_interval_seconds
    out = Rotated()
    if spec is not None and spec.generator == "postgres" and spec.postgres is not None:
        user, password = req.pgadmin
        if not user or not password:
            raise KsecretsError(
                f"{req.key} is a PostgreSQL password (rotation generator postgres): "
                "set PGADMIN_USER and PGADMIN_PASSWORD for the admin that may ALTER ROLE"
            )
        pg = spec.postgres
        db = Postgres(pg.host, pg.port, pg.database, pg.role, user, password)
        if pg.mode == "dual":
            # Dual logins rely on the minimum interval (the previous pair must outlive consumers' refresh).
            item = PostgresItem(req.key, db, length, pg.mode, pg.username_key or None)
            outcome = rotate_app(client, Plan(target.mount, target.path, postgres=item, min_interval=min_interval))
            _skipped(outcome)
            version, done = outcome.version, f"login {pg.role}_a/_b switched"
        else:
            version, done = rotate_postgres(client, target, db, length), f"ALTER ROLE {pg.role} committed"
        out.lines.append(f"{target.where}: rotated (kv-v2 version {version}) and {done}")
    else:
        version = rotate_random(client, target, length)
        out.lines.append(f"{target.where}: rotated (kv-v2 version {version})")
    out.lines.append(
        f"next: nothing to commit; the Vault Secrets Operator syncs {app.namespace}/{req.name} within "
        f"refreshAfter ({app.vault.refresh_after}) and restarts its Deployments"
    )
    return out


def _skipped(outcome) -> None:
    from ksecrets.jobs.rotate import RotationFailed

    if outcome.version is None:
        raise RotationFailed(f"not rotated: {outcome.skipped} (rotation.minInterval); --force rotates anyway")

"""`ksecrets rotate`: rotate one key of one Secret, by the stack's backend.

    ksecrets rotate --stack staging --name my-app-secrets --key API_KEY [--length 48]

- sealed-secrets: a controller cannot make a SealedSecret (only the holder of the certificate can,
  and the result must be committed), so rotation is semi-automated: a new random value is sealed
  into Pulumi.<stack>.yaml (the other keys keep their ciphertexts), then `make render` and a
  commit; Flux applies it and the changed ciphertext rolls the Deployments.
- vault: the same rotation as the CronJob, once, from the workstation: Vault from `VAULT_ADDR`
  (else the stack's address) with `VAULT_TOKEN` or `~/.vault-token`; for a `postgres` key the
  admin credentials come from `PGADMIN_USER`/`PGADMIN_PASSWORD`.
- manual: values are Pulumi config secrets; rotate with `pulumi config set --secret`.

The new value is never printed: only which key changed and what to do next.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ksecrets.cli.flags import add_root_flag, add_stack_flag
from ksecrets.errors import KsecretsError

if TYPE_CHECKING:
    from ksecrets.config.model import App, RotationSpec, StackConfig

DEFAULT_LENGTH = 32
MIN_LENGTH, MAX_LENGTH = 16, 256  # ksecrets.rotate's (a test keeps them equal)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rotate",
        help="rotate one key of a Secret (sealed-secrets: re-seal into the stack; vault: write Vault)",
        description="Make a new random value for one key and store it the stack's way: re-sealed into "
        "Pulumi.<stack>.yaml (sealed-secrets) or a new kv-v2 version in Vault (vault).",
    )
    add_stack_flag(p)
    p.add_argument("--name", required=True, help="the Secret's name (an app's secretName)")
    p.add_argument("--namespace", "-n", help="the Secret's namespace (default: from the app)")
    p.add_argument("--key", required=True, help="the key to rotate")
    p.add_argument(
        "--length",
        type=int,
        help=f"characters of the new value ({MIN_LENGTH} to {MAX_LENGTH}; default: the key's "
        f"rotation.length in the stack, else {DEFAULT_LENGTH})",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="vault, postgres mode dual: rotate even if the last rotation is younger than rotation.minInterval",
    )
    add_root_flag(p)
    p.set_defaults(func=run)


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


def _length(args: argparse.Namespace, spec: RotationSpec | None) -> int:
    from ksecrets.jobs.rotate import MAX_LENGTH, MIN_LENGTH

    length = args.length if args.length is not None else (spec.length if spec else DEFAULT_LENGTH)
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise KsecretsError(f"--length: {length} is out of range ({MIN_LENGTH} to {MAX_LENGTH})")
    return length


def run(args: argparse.Namespace) -> int:
    from ksecrets.config.load import load_stack

    cfg = load_stack(args.stack, args.root)
    app = _app_for(cfg, args.name, args.namespace)
    spec = _spec_for(app, args.key)
    length = _length(args, spec)
    if cfg.spec.seals:
        from ksecrets.config.load import stack_path
        from ksecrets.fileio import locked

        path = stack_path(args.stack, args.root)
        with locked(path, "stack file", source=path.name):
            cfg = load_stack(args.stack, args.root)  # again, under the lock
            app = _app_for(cfg, args.name, args.namespace)
            return _rotate_sealed(args, cfg, app, length)
    if cfg.spec.vault:
        return _rotate_vault(args, cfg, app, spec, length)
    raise KsecretsError(f"{cfg.source}: {cfg.spec.cannot_rotate(args.name, args.key)}")


def _rotate_sealed(args: argparse.Namespace, cfg: StackConfig, app: App | None, length: int) -> int:
    from ksecrets.jobs.rotate import generate

    from ksecrets.sealing import churn
    from ksecrets.usecases.seal_stack import resolve_namespace, seal_into_stack

    namespace = args.namespace or (app.namespace if app else resolve_namespace(cfg, args.name, None))
    entry = cfg.sealed_entry(namespace, args.name)
    if entry is None:
        raise KsecretsError(
            f"{cfg.source}: {namespace}/{args.name} has no sealed values to rotate; "
            f"seal them first (ksecrets seal --stack {cfg.stack} --name {args.name} ...)"
        )
    if args.key not in entry.keys:
        raise KsecretsError(
            f"{cfg.source}: {namespace}/{args.name} has no key {args.key!r} "
            f"(keys: {', '.join(entry.keys)}); rotation replaces an existing key"
        )
    value = generate(length).encode("ascii")
    report = seal_into_stack(
        args.root,
        cfg.stack,
        name=args.name,
        namespace=namespace,
        values={args.key: value},
        seal_key=churn.seal_key_from_env(),
    )
    del value
    for line in report.lines():
        if line.startswith("warning: "):
            sys.stderr.write(line + "\n")
    print(
        f"{report.source}: {namespace}/{args.name}: rotated {args.key} ({length} characters, sealed for "
        f"{report.fingerprint}); other keys kept"
    )
    print(
        f"next: make render, then commit {report.source} and k8s/{cfg.stack}/; Flux applies the new "
        "SealedSecret and the Deployments roll on the changed ciphertext"
    )
    return 0


def _rotate_vault(
    args: argparse.Namespace, cfg: StackConfig, app: App | None, spec: RotationSpec | None, length: int
) -> int:
    from ksecrets.jobs.rotate import Plan, Postgres, PostgresItem, Target, rotate_app, rotate_postgres, rotate_random
    from ksecrets.vault.client import make_client

    if app is None or app.vault is None or cfg.vault is None:
        raise KsecretsError(
            f"{cfg.source}: no app with secretName {args.name}"
            + (f" in namespace {args.namespace}" if args.namespace else "")
            + "; the Vault path comes from the app's vault.path"
        )
    if app.keys and args.key not in app.keys:
        raise KsecretsError(
            f"{cfg.source}: {args.key!r} is not a key of Secret {args.name} (keys: {', '.join(app.keys)})"
        )
    target = Target(mount=cfg.vault.kv_mount, path=app.vault.path, key=args.key)
    client = make_client(cfg.vault)
    min_interval = 0 if args.force else cfg.rotation.min_interval_seconds
    if spec is not None and spec.generator == "postgres" and spec.postgres is not None:
        user, password = os.environ.get("PGADMIN_USER", ""), os.environ.get("PGADMIN_PASSWORD", "")
        if not user or not password:
            raise KsecretsError(
                f"{args.key} is a PostgreSQL password (rotation generator postgres): "
                "set PGADMIN_USER and PGADMIN_PASSWORD for the admin that may ALTER ROLE"
            )
        pg = spec.postgres
        db = Postgres(pg.host, pg.port, pg.database, pg.role, user, password)
        if pg.mode == "dual":
            # Dual logins rely on the minimum interval (the previous pair must outlive consumers' refresh).
            item = PostgresItem(args.key, db, length, pg.mode, pg.username_key or None)
            outcome = rotate_app(client, Plan(target.mount, target.path, postgres=item, min_interval=min_interval))
            _skipped(outcome)
            version, done = outcome.version, f"login {pg.role}_a/_b switched"
        else:
            version, done = rotate_postgres(client, target, db, length), f"ALTER ROLE {pg.role} committed"
        print(f"{target.where}: rotated (kv-v2 version {version}) and {done}")
    else:
        version = rotate_random(client, target, length)
        print(f"{target.where}: rotated (kv-v2 version {version})")
    print(
        f"next: nothing to commit; the Vault Secrets Operator syncs {app.namespace}/{args.name} within "
        f"refreshAfter ({app.vault.refresh_after}) and restarts its Deployments"
    )
    return 0


def _skipped(outcome) -> None:
    from ksecrets.jobs.rotate import RotationFailed

    if outcome.version is None:
        raise RotationFailed(f"not rotated: {outcome.skipped} (rotation.minInterval); --force rotates anyway")

"""The rotator program (`python -m ksecrets.rotate`, the rotation CronJob's command): flags in,
one rotation out. Its Vault login is the Vault port's (`ksecrets.vault.login`).

What to rotate comes as flags (the CronJob's args). The CronJob of one app and one schedule
rotates all its keys in one kv-v2 version:

    --mount secret --path my-app --min-interval 3600 --random API_KEY:48 --random TOKEN:32 \
      --postgres DB_PASSWORD:32 --pg-mode dual --pg-username-key DB_USER --pg-host ... --pg-role app

`--key K --generator random|postgres --length L` (one key, no minimum interval) is the older
form, still accepted.

How to reach Vault and the database comes from the environment, never from flags (a flag is visible in `ps` and in the pod spec):

    VAULT_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, VAULT_NAMESPACE   as for the Vault CLI
    VAULT_TOKEN                       when set, used as is (a workstation run)
    KSECRETS_VAULT_ROLE               otherwise: log in with the Kubernetes auth method as this role,
    KSECRETS_VAULT_AUTH_MOUNT         at this auth mount (default kubernetes),
    KSECRETS_VAULT_TOKEN_FILE         with this projected service-account token
    PGADMIN_USER, PGADMIN_PASSWORD    the PostgreSQL admin (generator postgres), from a Secret

Exit codes: 0 rotated, 1 failed with the old value intact, 2 bad input, 3 the database and
Vault may disagree (see `ksecrets.jobs.rotate`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Mapping, NoReturn, Sequence

from ksecrets import validators as validate
from ksecrets.errors import KsecretsError
from ksecrets.jobs.rotate import (
    EXIT_OK,
    MAX_LENGTH,
    MIN_LENGTH,
    Plan,
    Postgres,
    PostgresItem,
    Target,
    rotate_app,
    rotate_postgres,
    rotate_random,
)
from ksecrets.vault.login import check_names, vault_login


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"ksecrets.rotate: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m ksecrets.rotate", description="Rotate keys of one Vault kv-v2 secret, in one new version."
    )
    p.add_argument("--mount", required=True, help="kv-v2 mount (e.g. secret)")
    p.add_argument("--path", required=True, help="secret path under the mount (e.g. my-app)")
    p.add_argument("--key", help="(one-key form) the key whose value is rotated")
    p.add_argument("--generator", choices=("random", "postgres"), default="random", help="(one-key form)")
    p.add_argument("--length", type=int, default=32, help=f"(one-key form) characters ({MIN_LENGTH} to {MAX_LENGTH})")
    p.add_argument(
        "--random",
        action="append",
        default=[],
        metavar="KEY[:LENGTH]",
        help="a key that gets a new random value (repeatable); all keys change in one version",
    )
    p.add_argument("--postgres", metavar="KEY[:LENGTH]", help="the key holding a PostgreSQL password (at most one)")
    p.add_argument(
        "--pg-mode",
        choices=("single", "dual"),
        default="single",
        help="single: ALTER the role's password; dual: alternate logins <role>_a/<role>_b",
    )
    p.add_argument("--pg-username-key", help="dual mode: the key that holds the login's name")
    p.add_argument(
        "--min-interval",
        type=int,
        default=0,
        metavar="SECONDS",
        help="skip (exit 0) while the last rotation of this secret is younger than this",
    )
    p.add_argument("--pg-host")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-database", default="postgres")
    p.add_argument("--pg-role", help="the PostgreSQL role whose password the key holds")
    return p


def _postgres(args: argparse.Namespace, env: Mapping[str, str]) -> Postgres:
    missing = [flag for flag, value in (("--pg-host", args.pg_host), ("--pg-role", args.pg_role)) if not value]
    if missing:
        raise KsecretsError(f"generator postgres needs {' and '.join(missing)}")
    user = (env.get("PGADMIN_USER") or "").strip()
    password = env.get("PGADMIN_PASSWORD") or ""
    if not user or not password:
        raise KsecretsError("generator postgres needs PGADMIN_USER and PGADMIN_PASSWORD (from the admin Secret)")
    return Postgres(
        host=args.pg_host,
        port=args.pg_port,
        database=args.pg_database,
        role=args.pg_role,
        admin_user=user,
        admin_password=password,
    )


def _key_length(text: str, flag: str) -> tuple[str, int]:
    key, _, length = text.partition(":")
    if not key:
        raise KsecretsError(f"{flag}: {text!r}: expected KEY or KEY:LENGTH")
    if not length:
        return key, 32
    if not (length.isascii() and length.isdigit()) or not MIN_LENGTH <= int(length) <= MAX_LENGTH:
        raise KsecretsError(f"{flag}: {text!r}: the length must be a number from {MIN_LENGTH} to {MAX_LENGTH}")
    return key, int(length)


def plan_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Plan:
    randoms = tuple(_key_length(r, "--random") for r in args.random)
    item = None
    if args.postgres:
        key, length = _key_length(args.postgres, "--postgres")
        if args.pg_mode == "dual" and not args.pg_username_key:
            raise KsecretsError("--pg-mode dual needs --pg-username-key")
        item = PostgresItem(
            key=key, pg=_postgres(args, env), length=length, mode=args.pg_mode, username_key=args.pg_username_key
        )
    keys = [k for k, _ in randoms] + ([item.key] if item else [])
    if len(set(keys)) != len(keys):
        raise KsecretsError(f"a key is given twice: {', '.join(keys)}")
    if args.min_interval < 0:
        raise KsecretsError("--min-interval: must be 0 or more seconds")
    return Plan(
        mount=args.mount.strip("/"),
        path=args.path.strip("/"),
        random=randoms,
        postgres=item,
        min_interval=args.min_interval,
    )


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    if args.key is None:
        if not args.random and not args.postgres:
            raise KsecretsError("nothing to rotate: give --random KEY, --postgres KEY or --key KEY")
        plan = plan_from_args(args, env)
        rotate_app(vault_login(env), plan)
        return EXIT_OK
    if args.random or args.postgres:
        raise KsecretsError("--key (one-key form) cannot be combined with --random or --postgres")
    target = Target(mount=args.mount.strip("/"), path=args.path.strip("/"), key=args.key)
    check_names(("--mount", target.mount, validate.vault_mount), ("--path", target.path, validate.vault_path))
    if args.generator == "postgres":
        pg = _postgres(args, env)
        client = vault_login(env)
        rotate_postgres(client, target, pg, args.length)
    else:
        client = vault_login(env)
        rotate_random(client, target, args.length)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="ksecrets.rotate: %(message)s", stream=sys.stderr)
    try:
        return run(argv, env)
    except KsecretsError as exc:
        sys.stderr.write(f"ksecrets.rotate: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())

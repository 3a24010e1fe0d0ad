"""`python -m ksecrets.rotate`: the entry point of the rotation CronJob's container.

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
Vault may disagree (see `ksecrets.rotate`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, NoReturn, Sequence

import hvac

from ksecrets.config import validate
from ksecrets.errors import KsecretsError
from ksecrets.rotate import (
    EXIT_OK,
    MAX_LENGTH,
    MIN_LENGTH,
    Plan,
    Postgres,
    PostgresItem,
    Target,
    log,
    rotate_app,
    rotate_postgres,
    rotate_random,
)

DEFAULT_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"


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


def _check_vault_names(*items: tuple[str, str, Callable[[str], str | None]]) -> None:
    """The names that go into Vault request paths, checked with the stack file's own rules."""
    for where, value, check in items:
        problem = check(value)
        if problem:
            raise KsecretsError(f"{where}: {problem}")


def vault_login(env: Mapping[str, str]) -> hvac.Client:
    """A Vault client: `VAULT_TOKEN` when set, else a Kubernetes-auth login with the pod's token."""
    from ksecrets.vault import client as vc

    if (env.get("VAULT_TOKEN") or "").strip():
        return vc.make_client(env=env)
    role = (env.get("KSECRETS_VAULT_ROLE") or "").strip()
    if not role:
        raise KsecretsError("no Vault credentials: set VAULT_TOKEN, or KSECRETS_VAULT_ROLE for Kubernetes auth")
    mount = (env.get("KSECRETS_VAULT_AUTH_MOUNT") or "kubernetes").strip().strip("/")
    _check_vault_names(
        ("KSECRETS_VAULT_ROLE", role, validate.vault_name), ("KSECRETS_VAULT_AUTH_MOUNT", mount, validate.vault_mount)
    )
    token_file = Path(env.get("KSECRETS_VAULT_TOKEN_FILE") or DEFAULT_TOKEN_FILE)
    try:
        jwt = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KsecretsError(f"{token_file}: cannot read the service-account token ({exc.strerror})") from None
    if not jwt:
        raise KsecretsError(f"{token_file}: the service-account token is empty")
    address = vc.resolve_address(None, env)
    # Same TLS rules as make_client (VAULT_CACERT, VAULT_SKIP_VERIFY); the token comes from the login.
    client = vc.new_client(
        address,
        token=None,
        verify=vc.tls_verify(env),
        namespace=(env.get("VAULT_NAMESPACE") or None),
        timeout=vc.client_timeout(env),
    )
    with vc.vault_errors(client, f"auth/{mount}/login"):
        try:
            client.auth.kubernetes.login(role=role, jwt=jwt, mount_point=mount)
        except (KeyError, TypeError):  # a 200 without `auth.client_token`: not Vault's login answer
            raise vc.VaultError(
                address,
                f"auth/{mount}/login",
                "the answer is not Vault's (no auth.client_token): is this address a Vault server?",
            ) from None
    log.info("logged in to Vault %s as role %s (auth/%s)", address, role, mount)
    return client


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
    _check_vault_names(("--mount", target.mount, validate.vault_mount), ("--path", target.path, validate.vault_path))
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

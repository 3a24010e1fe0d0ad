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

The new value is never printed: only which key changed and what to do next. The workflow (the
backend dispatch, the stack file's lock) is ksecrets/usecases/rotate_key.py; this module parses and
prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from ksecrets.cli.flags import add_root_flag, add_stack_flag
from ksecrets.usecases.rotate_key import DEFAULT_LENGTH

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


def run(args: argparse.Namespace) -> int:
    from ksecrets.usecases.rotate_key import RotateRequest, rotate_key

    request = RotateRequest(
        root=args.root,
        stack=args.stack,
        name=args.name,
        key=args.key,
        namespace=args.namespace,
        length=args.length,
        force=args.force,
        pgadmin=(os.environ.get("PGADMIN_USER", ""), os.environ.get("PGADMIN_PASSWORD", "")),
    )
    rotated = rotate_key(request)
    for line in rotated.warnings:
        sys.stderr.write(line + "\n")
    for line in rotated.lines:
        print(line)
    return 0

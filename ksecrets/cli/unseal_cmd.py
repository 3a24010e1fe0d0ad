"""`ksecrets unseal`: a SealedSecret (stdin) back to its Secret, offline, like `kubeseal --recovery-unseal`."""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_format_flag, add_optional_stack_flag, add_recovery_flags, add_root_flag
from ksecrets.errors import KsecretsError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "unseal",
        help="decrypt a SealedSecret (stdin) with recovery keys; prints the Secret",
        description="Print the Secret of a SealedSecret read on stdin, decrypting with the given private "
        "keys or backups (every key is tried). The output holds plaintext: handle it like one.",
    )
    add_recovery_flags(p)
    add_format_flag(p, default="json")
    add_optional_stack_flag(p, "unseal an entry of Pulumi.<stack>.yaml instead of stdin (needs --name)")
    p.add_argument("--name", help="--stack: the Secret's name")
    p.add_argument("--namespace", "-n", help="--stack: the Secret's namespace (default: from the app)")
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.cli.util import read_stdin_text, recovery_keys, render
    from ksecrets.sealing.sealedsecret import parse_sealed_secret, unseal

    keys = recovery_keys(args)
    if args.stack:
        obj, source = _from_stack(args)
    else:
        if args.name or args.namespace:
            raise KsecretsError("--name and --namespace need --stack")
        obj, source = parse_sealed_secret(read_stdin_text("stdin"), "stdin"), "stdin"
    sys.stdout.write(render(unseal(obj, keys, source), args.format))
    return 0


def _from_stack(args: argparse.Namespace) -> tuple[dict, str]:
    from ksecrets.config import load_stack
    from ksecrets.config.stackfile import SEALED
    from ksecrets.manifests.sealed_secrets import sealed_secret
    from ksecrets.usecases.seal_stack import resolve_namespace

    if not args.name:
        raise KsecretsError("--stack needs --name (the Secret's name)")
    cfg = load_stack(args.stack, args.root)
    ns = resolve_namespace(cfg, args.name, args.namespace)
    entry = cfg.sealed_entry(ns, args.name)
    if entry is None:
        raise KsecretsError(f"{cfg.source}: {SEALED}: no entry for {ns}/{args.name}")
    obj = sealed_secret(cfg, entry)  # the exporter's own object: template labels, annotations, immutable
    return obj, f"{cfg.source}: {SEALED}[{cfg.sealed.index(entry)}]"

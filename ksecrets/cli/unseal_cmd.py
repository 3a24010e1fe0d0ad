"""`ksecrets unseal`: a SealedSecret (stdin) back to its Secret, offline, like `kubeseal --recovery-unseal`."""

from __future__ import annotations

import argparse
import sys

from ksecrets.sealing.cliutil import add_format_flag, add_recovery_flags, read_stdin_text, recovery_keys, render
from ksecrets.sealing.sealedsecret import parse_sealed_secret, unseal


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "unseal", help="decrypt a SealedSecret (stdin) with recovery keys; prints the Secret",
        description="Print the Secret of a SealedSecret read on stdin, decrypting with the given private "
                    "keys or backups (every key is tried). The output holds plaintext: handle it like one.")
    add_recovery_flags(p)
    add_format_flag(p, default="json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    keys = recovery_keys(args)
    obj = parse_sealed_secret(read_stdin_text("stdin"), "stdin")
    sys.stdout.write(render(unseal(obj, keys, "stdin"), args.format))
    return 0

"""`ksecrets verify`: offline, for CI: which sealed values were sealed for another certificate, and
when each stack's certificate expires. Exit 1 on a stale entry, an expired or missing certificate
or a damaged ciphertext; a certificate expiring within 30 days is a warning."""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_root_flag, add_selector_flags, selected_stacks
from ksecrets.errors import CheckFailed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="check sealed values against each stack's current certificate", description=__doc__
    )
    add_selector_flags(p)
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.usecases.seal_stack import verify_stacks

    result = verify_stacks(args.root, selected_stacks(args))
    for line in result.lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if result.problems:
        raise CheckFailed(f"verify: {result.problems} problem(s) found")
    return 0

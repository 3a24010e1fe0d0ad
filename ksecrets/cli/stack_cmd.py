"""`ksecrets stack new NAME --backend B [--from STACK]`: a new environment's stack file.

Copies the apps and settings of --from (never its values: sealed ciphertexts belong to the other
cluster's key), adds the stack to CI's preview matrix, and prints the next steps (certificate,
values, doctor).
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.backends import BACKENDS  # standard library only


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser("stack", help=SUBCOMMANDS["stack"][1], description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="stack_command", required=True, parser_class=type(p))
    n = ssub.add_parser("new", help="write Pulumi.<NAME>.yaml for a new environment")
    n.add_argument("name", metavar="NAME")
    n.add_argument("--backend", required=True, choices=BACKENDS)
    n.add_argument("--from", dest="source", metavar="STACK", help="copy apps and settings (no values) from this stack")
    n.add_argument("--root", default=".", help="directory of the stack files (default .)")
    n.set_defaults(func=run_new)


def run_new(args: argparse.Namespace) -> int:
    from ksecrets.stacks import stack_new

    result = stack_new(args.root, args.name, args.backend, args.source)
    print(f"{result.path.name}: written" + (" and added to CI's preview matrix" if result.ci_updated else ""))
    for step in result.next_steps:
        print(f"next: {step}")
    sys.stdout.flush()
    return 0

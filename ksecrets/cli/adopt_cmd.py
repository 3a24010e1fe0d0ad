"""`ksecrets adopt PATH --stack S [--name N] [--namespace NS] [--keep]`: from leaky to sealed.

Seals (sealed-secrets stacks), pushes (vault stacks) or encrypts into secrets/<stack>/<name>.sops.yaml
(sops stacks; editing an existing file needs the age key) the plaintext that `ksecrets scan` finds
under PATH, v1 Secret manifests with data and `.env*` files, then deletes those files from the
working tree and prints how to purge them from Git history. An env file needs --name (the Secret
it holds). Nothing is deleted unless every value went in.
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_allow_key_name_flag, add_root_flag, add_stack_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "adopt", help=SUBCOMMANDS["adopt"][1], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("path", metavar="PATH", help="a Secret manifest, an env file, or a directory of them")
    add_stack_flag(p)
    p.add_argument("--name", help="the Secret an env file's values belong to")
    p.add_argument("--namespace", "-n", help="its namespace (default: from the app that uses it)")
    add_allow_key_name_flag(p)
    p.add_argument(
        "--age-key-file",
        metavar="FILE",
        help="a sops stack's age key, to edit an existing SOPS file (default: SOPS_AGE_KEY_FILE, as sops reads it)",
    )
    p.add_argument("--keep", action="store_true", help="do not delete the plaintext files")
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ksecrets.cli.sops_cmd import KEY_FILE_ENV
    from ksecrets.usecases.adopt import adopt
    from ksecrets.sealing import churn

    report = adopt(
        args.path,
        args.root,
        args.stack,
        name=args.name,
        namespace=args.namespace,
        keep=args.keep,
        allow_key_names=frozenset(args.allow_key_name),
        seal_key=churn.seal_key_from_env(),
        age_key_file=args.age_key_file or os.environ.get(KEY_FILE_ENV) or None,
    )
    for line in report.lines:
        sys.stderr.write(line + "\n")
    for line in report.purge_lines():
        print(line)
    print(f"next: ksecrets doctor --stack {args.stack}; make render; git add -A and commit")
    return 0

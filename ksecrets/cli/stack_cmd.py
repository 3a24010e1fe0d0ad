"""`ksecrets stack new NAME --backend B [--from STACK]`: a new environment's stack file;
`ksecrets stack new NAME --env ENV`: a new cluster of environment ENV (environments/ENV.yaml).
`ksecrets stack split --stack S`: move the big keys into files (README "Large stacks").

Copies the apps and settings of --from (never its values: sealed ciphertexts belong to the other
cluster's key), writes `kubernetes:context` (--context, default the stack's name), checks that the
new stack renders as `make render` would, and prints the next steps (certificate, values, doctor,
CI's secrets). CI previews and deploys every stack file present (.ci/stacks.py).
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.backends import BACKENDS  # standard library only
from ksecrets.cli.flags import add_root_flag, add_stack_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "stack", help=SUBCOMMANDS["stack"][1], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ssub = p.add_subparsers(dest="stack_command", required=True, parser_class=type(p))
    n = ssub.add_parser("new", help="write Pulumi.<NAME>.yaml for a new environment")
    n.add_argument("name", metavar="NAME")
    n.add_argument("--backend", choices=BACKENDS, help="required unless --env names an environment that has one")
    n.add_argument(
        "--env",
        metavar="ENV",
        help="a cluster of environment ENV: extend environments/ENV.yaml (made from stack ENV when missing)",
    )
    n.add_argument("--from", dest="source", metavar="STACK", help="copy apps and settings (no values) from this stack")
    n.add_argument(
        "--context",
        metavar="CTX",
        help="kubernetes:context: the kubeconfig context of the stack's cluster (default: NAME)",
    )
    n.add_argument(
        "--age-recipient",
        dest="age_recipients",
        action="append",
        default=[],
        metavar="AGE1...",
        help="backend sops: an age public key the stack's SOPS files are encrypted for (repeatable)",
    )
    add_root_flag(n)
    n.set_defaults(func=run_new)
    s = ssub.add_parser(
        "split",
        help="move k8s-secrets:sealed and apps into stacks/<STACK>/<key>.yaml "
        "(for stacks over the engine's 128 KiB config limit)",
    )
    add_stack_flag(s)
    s.add_argument(
        "--key",
        dest="keys",
        action="append",
        choices=("sealed", "apps"),
        help="only this key (repeatable; default: both)",
    )
    add_root_flag(s)
    s.set_defaults(func=run_split)


def run_new(args: argparse.Namespace) -> int:
    from ksecrets.errors import KsecretsError
    from ksecrets.usecases.stack_new import stack_new, stack_new_in_env

    if args.env:
        if args.source:
            raise KsecretsError("--env takes the apps and settings from the environment; --from does not apply")
        if args.age_recipients:
            raise KsecretsError(
                "--age-recipient: not with --env yet; set k8s-secrets:sops.recipients in the stack file"
            )
        result = stack_new_in_env(args.root, args.name, args.env, args.backend, args.context)
    elif not args.backend:
        raise KsecretsError("stack new needs --backend (or --env ENV)")
    else:
        result = stack_new(
            args.root, args.name, args.backend, args.source, args.context, age_recipients=args.age_recipients
        )
    print(f"{result.path.name}: written (kubernetes:context: {result.context})")
    for step in result.next_steps:
        print(f"next: {step}")
    sys.stdout.flush()
    return 0


def run_split(args: argparse.Namespace) -> int:
    from ksecrets.config.load import check_stack_name
    from ksecrets.usecases.stack_split import stack_split

    written = stack_split(args.root, check_stack_name(args.stack), tuple(args.keys or ("sealed", "apps")))
    for rel in written:
        print(
            rel
            if rel.startswith(".gitattributes")
            else f"{rel}: written; Pulumi.{args.stack}.yaml now names it (commit both)"
        )
    if not written:
        print(f"Pulumi.{args.stack}.yaml: nothing to move")
    sys.stdout.flush()
    return 0

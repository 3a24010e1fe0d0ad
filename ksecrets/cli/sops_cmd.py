"""`ksecrets sops set --stack S --name SECRET --from-env-file F`: put values into a sops stack's
SOPS-encrypted Secret (`secrets/<stack>/<SECRET>.sops.yaml`). Creating needs only the stack's age
recipients; editing needs its age key (`--age-key-file`, or SOPS_AGE_KEY_FILE as for `sops`).

`ksecrets sops updatekeys [--stack S | --env E | --all-stacks]`: every SOPS file of those stacks
re-keyed for its stack's current `sops.recipients` (after `keygen --add` or removing a person),
values untouched, all files or none."""

from __future__ import annotations

import argparse
import os

from ksecrets.cli.flags import add_allow_key_name_flag, add_root_flag, add_selector_flags, add_stack_flag

KEY_FILE_ENV = "SOPS_AGE_KEY_FILE"  # the same name as usecases.sops_set's (kept cheap to import)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sops", help="write a sops stack's SOPS-encrypted Secrets (age), no sops binary needed")
    ssub = p.add_subparsers(dest="sops_command", required=True, parser_class=type(p))
    s = ssub.add_parser(
        "set",
        help="create or edit secrets/<stack>/<name>.sops.yaml from an env file (other keys untouched)",
        allow_abbrev=False,
    )
    add_stack_flag(s, "the stack (Pulumi.<NAME>.yaml), backend sops")
    s.add_argument("--name", required=True, help="the Secret's name (an app's secretName)")
    s.add_argument("--namespace", default=None, help="default: the namespace of the app with that secretName")
    s.add_argument("--from-env-file", required=True, metavar="FILE", help="KEY=value lines, as kubectl reads them")
    s.add_argument(
        "--age-key-file",
        default=None,
        metavar="FILE",
        help=f"the stack's age key, to edit an existing file (default ${KEY_FILE_ENV})",
    )
    add_allow_key_name_flag(s)
    add_root_flag(s)
    s.set_defaults(func=run_set)
    u = ssub.add_parser(
        "updatekeys",
        help="re-encrypt every SOPS file's data key for its stack's sops.recipients (values untouched), "
        "all files or none",
        allow_abbrev=False,
    )
    add_selector_flags(u, "every sops stack")
    u.add_argument(
        "--age-key-file",
        default=None,
        metavar="FILE",
        help=f"an age key the files are encrypted for now (default ${KEY_FILE_ENV})",
    )
    add_root_flag(u)
    u.set_defaults(func=run_updatekeys)


def run_set(args: argparse.Namespace) -> int:
    from ksecrets.usecases.sops_set import sops_set_env_file

    report = sops_set_env_file(
        args.root,
        args.stack,
        name=args.name,
        env_file=args.from_env_file,
        namespace=args.namespace,
        key_file=args.age_key_file or os.environ.get(KEY_FILE_ENV) or None,
        allow_key_names=frozenset(args.allow_key_name),
    )
    for line in report.lines():
        print(line)
    return 0


def run_updatekeys(args: argparse.Namespace) -> int:
    from ksecrets.cli.flags import selected_stacks
    from ksecrets.config.selection import fleet
    from ksecrets.usecases.sops_keys import updatekeys
    from ksecrets.usecases.sops_set import read_identities

    chosen = selected_stacks(args)
    stacks = chosen if chosen is not None else list(fleet(args.root))
    identities = read_identities(args.age_key_file or os.environ.get(KEY_FILE_ENV) or None)
    report = updatekeys(args.root, stacks, identities, explicit=bool(args.stack))
    for line in report.lines():
        print(line)
    return 0

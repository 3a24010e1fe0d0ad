"""Flags shared by several subcommands, each shape defined once with its help text. Imports only
modules that need nothing beyond the standard library: parsers are built at every start-up, so they
must stay cheap (see ksecrets/cli/__init__.py; tests/cli/test_startup.py checks it).

`--root DIR` and `--stack` come in these shapes, and every subcommand uses one of them:
- `add_root_flag`: `--root DIR`, the folder a command works in (default: found from the working directory);
- `add_stack_flag`: `--stack NAME`, required, the one stack a command works on;
- `add_optional_stack_flag`: `--stack NAME`, optional (omitted: the command's own default);
- `add_stacks_flag`: `--stack NAME`, repeatable, with `--all-stacks` and `--env` when the command has them
  (`add_selector_flags` is the full selector, resolved by ksecrets.config.selection).
"""

from __future__ import annotations

from pathlib import Path

from ksecrets.scopes import SCOPES  # noqa: F401 (the one list; seal_cmd reads it here)

ROOT_DEFAULT = "the nearest folder holding Pulumi.yaml, from . upwards, as git finds its top level"
STACK_FILES = "directory of the stack files"
STACK_HELP = "the stack (Pulumi.<NAME>.yaml)"
STACKS_HELP = "this stack (repeatable)"
ENV_HELP = "every cluster stack of this environment (its `extends` file's name, or a stack's own; repeatable)"


def add_root_flag(parser, help: str = STACK_FILES) -> None:
    """`--root DIR`, the same in every subcommand: given, it is used as is; omitted, `main` finds
    the project folder from the working directory (`ksecrets.project.project_root`)."""
    parser.add_argument("--root", default=None, type=Path, metavar="DIR", help=f"{help} (default: {ROOT_DEFAULT})")


def add_stack_flag(parser, help: str = STACK_HELP) -> None:
    """`--stack NAME`, required: the one stack the command works on."""
    parser.add_argument("--stack", required=True, metavar="NAME", help=help)


def add_optional_stack_flag(parser, help: str) -> None:
    """`--stack NAME`, optional (None when omitted): `help` says what omitting it means."""
    parser.add_argument("--stack", default=None, metavar="NAME", help=help)


def add_stacks_flag(parser, help: str = STACKS_HELP, *, all_stacks: str | None = None, env: bool = False) -> None:
    """`--stack NAME`, repeatable (a list, empty when never given), and, when the command has them,
    `--env ENV` (repeatable) and `--all-stacks` (`all_stacks` is its help). `parser` may be a
    mutually exclusive group."""
    parser.add_argument("--stack", action="append", default=[], metavar="NAME", help=help)
    if env:
        parser.add_argument("--env", action="append", default=[], metavar="ENV", help=ENV_HELP)
    if all_stacks is not None:
        parser.add_argument("--all-stacks", action="store_true", help=all_stacks)


def add_format_flag(parser, default: str | None = "json") -> None:
    parser.add_argument(
        "-o",
        "--format",
        choices=("json", "yaml"),
        default=default,
        help=f"output format (default {default or 'that of the file'}, like kubeseal)",
    )


def add_allow_key_name_flag(parser) -> None:
    """Env files: a key name that looks like a credential (a pasted token) is refused unless named here."""
    parser.add_argument(
        "--allow-key-name",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this exact key name although it looks like a credential (a long random-looking "
        "token); key names are stored in the clear (repeatable)",
    )


def add_allow_future_cert_flag(parser) -> None:
    parser.add_argument(
        "--allow-future-cert",
        action="store_true",
        help="seal with a certificate whose notBefore is in the future (refused by default: a wrong "
        "clock, or not the controller's certificate)",
    )


def add_recovery_flags(parser) -> None:
    parser.add_argument(
        "--recovery-private-key",
        action="append",
        default=[],
        metavar="FILE[,FILE]",
        help="private key (PEM) or key Secret(s) (YAML/JSON); repeatable; every key is tried",
    )
    parser.add_argument(
        "--backup",
        action="append",
        default=[],
        metavar="FILE",
        help="an encrypted backup from `ksecrets backup` or `keygen` (passphrase from "
        "KSECRETS_BACKUP_PASSPHRASE or a prompt)",
    )


def add_selector_flags(parser, what: str = "every Pulumi.<stack>.yaml") -> None:
    """`--stack S` / `--env E` (both repeatable) / `--all-stacks`: resolved by
    ksecrets.config.selection, the one home of which stacks a command works on."""
    add_stacks_flag(parser, all_stacks=f"every stack (the default: {what})", env=True)


def selected_stacks(args, *, default_all: bool = True) -> list[str] | None:
    """The stacks the selector flags name (None: the command's default, every stack)."""
    from ksecrets.config.selection import select, selector_of

    return select(args.root, selector_of(args.stack, args.env, args.all_stacks), default_all=default_all)

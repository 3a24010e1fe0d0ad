"""Flags shared by several subcommands. Imports only modules that need nothing beyond the standard
library: parsers are built at every start-up, so they must stay cheap (see ksecrets/cli/__init__.py)."""

from __future__ import annotations

from ksecrets.scopes import SCOPES  # noqa: F401 (the one list; seal_cmd reads it here)


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
    parser.add_argument("--stack", action="append", default=[], metavar="NAME", help="this stack (repeatable)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="ENV",
        help="every cluster stack of this environment (its `extends` file's name, or a stack's own; repeatable)",
    )
    parser.add_argument("--all-stacks", action="store_true", help=f"every stack (the default: {what})")


def selected_stacks(args, *, default_all: bool = True) -> list[str] | None:
    """The stacks the selector flags name (None: the command's default, every stack)."""
    from ksecrets.config.selection import select, selector_of

    return select(args.root, selector_of(args.stack, args.env, args.all_stacks), default_all=default_all)

"""The `ksecrets` command: one module per subcommand, each with `register(subparsers)`.

A subcommand module adds its parser and sets `func=<callable(args) -> int>`. Errors derived from
`KsecretsError` become one line on stderr (`ksecrets: ...`) and their exit code; nothing else
prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ksecrets.errors import KsecretsError

# Subcommand modules under ksecrets/cli/, in the order `--help` lists them. A module that does not
# exist yet is skipped, so the command works while the project grows.
SUBCOMMANDS = (
    "export",
    "seal",
    "unseal",
    "reseal",
    "verify",
    "keygen",
    "backup",
    "rotate",
    "vault",
    "migrate",
    "scan",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        sys.stderr.write(f"ksecrets: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ksecrets", description="Kubernetes secrets across environments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"ksecrets.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"ksecrets.cli.{name}_cmd":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KsecretsError as exc:
        sys.stderr.write(f"ksecrets: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ksecrets: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


def run() -> None:
    raise SystemExit(main())

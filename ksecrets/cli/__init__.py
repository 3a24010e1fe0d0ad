"""The `ksecrets` command: one module per subcommand, each with `register(subparsers)`.

A subcommand module adds its parser and sets `func=<callable(args) -> int>`. Errors derived from
`KsecretsError` become one line on stderr (`ksecrets: ...`) and their exit code; nothing else
prints a traceback for bad input.

Start-up is kept cheap: `main` imports only the module of the subcommand being run (the others
appear in `--help` from the table below), and each module imports its implementation only when it
runs, not at import time: either inside the function that runs it or, for a module whose work lives
in a module of its own (`backup_cmd.py` -> `backup_run.py`, imports at module level), through
`runs(module, function)`, the one place that defers such an import. `bench/startup.py` measures it. Flags several
subcommands share (`--root`, `--stack` in its shapes, the stack selectors) are defined once, in
`ksecrets/cli/flags.py`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Callable, NoReturn, Sequence

from ksecrets import version
from ksecrets.errors import KsecretsError

# Subcommand → (module under ksecrets/cli/, one-line help), in the order `--help` lists them. A
# module that does not exist yet is skipped, so the command works while the project grows.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init_cmd", "ask the guide's questions, choose a backend per environment, write stacks, keys and CI"),
    "export": ("export_cmd", "write k8s/<stack>/ for Flux from the stack files"),
    "seal": ("seal_cmd", "seal a Secret (stdin) into a SealedSecret, offline; or seal values into stacks"),
    "unseal": ("unseal_cmd", "decrypt a SealedSecret (stdin) with recovery keys; prints the Secret"),
    "reseal": ("reseal_cmd", "re-encrypt all of a stack's sealed values for a new certificate"),
    "verify": ("verify_cmd", "check sealed values against each stack's current certificate"),
    "drift": ("drift_cmd", "what differs between clusters and environments, without decrypting"),
    "report": ("report_cmd", "the fleet as one HTML page and JSON: matrix, certificates, rotation, readers"),
    "keygen": (
        "keygen_cmd",
        "make a stack's key: a sealing key pair (cert in certs/) or a sops age key; the private key in a backup",
    ),
    "backup": (
        "backup_cmd",
        "encrypt the controller's key Secrets (stdin) into a backup file; check, import, offline key",
    ),
    "restore": ("backup_cmd", "print the key Secrets of a backup file, for kubectl apply"),
    "rotate": ("rotate_cmd", "rotate one key of a Secret (sealed-secrets: re-seal into the stack; vault: write Vault)"),
    "vault": ("vault_cmd", "configure Vault for a stack and push values to it"),
    "sops": ("sops_cmd", "write a sops stack's SOPS-encrypted Secrets (age), no sops binary needed"),
    "migrate": ("migrate_cmd", "move a stack's values to another backend with no value lost"),
    "scan": ("scan_cmd", "find secret material that must not be committed"),
    "adopt": ("adopt_cmd", "move plaintext Secret manifests and .env files into a stack, then remove them"),
    "stack": ("stack_cmd", "create a stack file (stack new)"),
    "app": ("app_cmd", "add an app to a stack (app add)"),
    "doctor": ("doctor_cmd", "check a stack's references: namespaces, service accounts, Secrets"),
    "git": ("git_cmd", "git merge and diff drivers for stack files (git setup)"),
    "preview": ("pulumi_cmd", "pulumi preview for several stacks at once (Automation API)"),
    "up": ("pulumi_cmd", "pulumi up for several stacks at once (Automation API)"),
}


def _width() -> int:
    """argparse asks shutil for the terminal width, and shutil imports bz2, lzma and zlib: ask os."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        columns = 80
    return max(columns - 2, 20)


class _Parser(argparse.ArgumentParser):
    def _get_formatter(self):
        return self.formatter_class(prog=self.prog, width=_width())  # type: ignore[call-arg]  # typeshed: prog only

    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        sys.stderr.write(f"ksecrets: {message}\n")
        raise SystemExit(2)


def runs(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand's `func`: `module.function(args)`, imported when the command runs (so `--help`
    and the other subcommands never load the implementation's libraries)."""

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), function)(args) or 0)

    run.__qualname__ = run.__name__ = f"{module}.{function}"
    return run


def _module(name: str):
    modname = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(f"ksecrets.cli.{modname}")
    except ModuleNotFoundError as exc:
        if exc.name == f"ksecrets.cli.{modname}":
            return None
        raise


def _wanted(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


class _Version(argparse.Action):
    """`--version`: the package metadata is read only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(f"ksecrets {version()}\n")
        parser.exit(0)


def build_parser(only: str | None = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """The full parser. With `lazy`, only the subcommand `only` (if any) gets its real parser; the
    others are placeholders (name and help) that cost nothing to build."""
    parser = _Parser(prog="ksecrets", description="Kubernetes secrets across environments.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    only_module = SUBCOMMANDS[only][0] if only else None
    lazy = lazy or only is not None
    # Running a subcommand needs only its own parser; the placeholders are for `ksecrets --help`.
    placeholders = only is None
    registered: set[str] = set()
    for name, (modname, help_text) in SUBCOMMANDS.items():
        if name in registered:
            continue
        if not lazy or modname == only_module:
            module = _module(name)
            if module is None:
                continue
            before = set(sub.choices)
            module.register(sub)
            registered |= set(sub.choices) - before
        elif placeholders and importlib.util.find_spec(f"ksecrets.cli.{modname}") is not None:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_wanted(argv), lazy=True)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "root", False) is None:
            from ksecrets.project import project_root

            args.root = project_root()
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

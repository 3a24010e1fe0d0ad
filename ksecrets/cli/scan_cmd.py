"""`ksecrets scan [PATHS...] [--env-file F...]`: refuse to commit secret material.

Prints `file:line: <kind> (detail)` for each finding on stdout and exits 1; exits 0 when clean and
2 on bad input (a missing path, an invalid env file). With no PATHS it scans what `git ls-files`
lists. Values are never printed: a finding names the key and the env file it came from.
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_allow_key_name_flag, add_root_flag
from ksecrets.errors import CheckFailed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "scan",
        help="find secret material that must not be committed",
        description="Find env-file values, PEM private keys, v1 Secrets with data and unencrypted "
        "sealing-key backups. Exit 1 with file:line: kind for each finding, never the value.",
    )
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or directories to scan (default: the files git tracks)"
    )
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="F",
        help="an env file whose values must appear nowhere (repeatable)",
    )
    add_allow_key_name_flag(p)
    p.add_argument(
        "--env-glob",
        action="append",
        default=[],
        metavar="GLOB",
        help="env files by glob under --root, e.g. '.env*'; none matching is fine (for hooks)",
    )
    p.add_argument(
        "--ignore-file",
        default=None,
        metavar="F",
        help="path globs (and kinds) to allow (default: .ksecrets-scan-ignore if present)",
    )
    add_root_flag(p, "the work tree: git ls-files runs here and ignore globs are relative to it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets import scan as scanner

    findings, short = scanner.scan(
        args.paths,
        args.env_file,
        root=args.root,
        ignore_file=args.ignore_file,
        env_globs=args.env_glob,
        allow_key_names=frozenset(args.allow_key_name),
    )
    if short:
        sys.stderr.write(
            f"ksecrets: scan: {short} env value(s) shorter than {scanner.MIN_VALUE_LENGTH} "
            "bytes not searched (too common to match)\n"
        )
    for finding in findings:
        sys.stdout.write(f"{finding}\n")
    sys.stdout.flush()
    if findings:
        files = len({f.path for f in findings})
        raise CheckFailed(
            f"scan: {len(findings)} finding(s) in {files} file(s); "
            "remove the secret material (or allow a test fixture with '# ksecrets: allow <kind>')"
        )
    return 0

"""`ksecrets export [--stack S | --env E]... [--all-stacks] [--check]`: write k8s/<stack>/ for Flux, or check it."""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_root_flag, add_selector_flags, selected_stacks
from ksecrets.errors import CheckFailed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write k8s/<stack>/ for Flux from the stack files",
        description="Render every stack (or the given ones) into k8s/<stack>/.",
    )
    add_selector_flags(p)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 and list files that differ")
    add_root_flag(p, "the repository root")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.usecases.export import export

    root = args.root.resolve()
    result = export(root, selected_stacks(args), check=args.check)
    lines = result.lines(root)
    if args.check:
        if lines:
            for line in lines:
                print(line)
            raise CheckFailed(f"{len(lines)} file(s) under k8s/ differ from the stack config; run `make render`")
        print(f"k8s/ is up to date ({result.unchanged} files)")
        return 0
    for line in lines:
        print(line.replace("changed:", "wrote:").replace("missing:", "wrote:").replace("stale:", "removed:"))
    print(f"{len(result.write)} written, {len(result.remove)} removed, {result.unchanged} unchanged", file=sys.stderr)
    return 0

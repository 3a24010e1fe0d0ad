"""`ksecrets git setup|merge|textconv`: git drivers for stack files.

ksecrets git setup                 # once per clone: .gitattributes (commit it) and git config
# git then calls, by itself:
ksecrets git merge %O %A %B %P     # merge driver: sealed values merged key by key
ksecrets git textconv FILE         # diff: ciphertexts shown as ids, so `git diff` shows keys
ksecrets git merge-generated %O %A %B %P   # k8s/: no conflict on exported files (rendered again)
ksecrets git render-merge          # hooks post-merge/pre-commit: k8s/ of a merge, rendered from
                                   # the merged stack files and committed (by hand: staged)
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.cli.flags import add_root_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser(
        "git", help=SUBCOMMANDS["git"][1], description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    gsub = p.add_subparsers(dest="git_command", required=True, parser_class=type(p))
    s = gsub.add_parser("setup", help="install the merge and diff drivers in this repository")
    s.add_argument(
        "--command",
        default=None,
        help="how git should call ksecrets, a shell command (default: this interpreter by absolute path, "
        "`-m ksecrets`: works whatever git's PATH)",
    )
    add_root_flag(s, "a directory inside the repository")
    s.set_defaults(func=run_setup)
    m = gsub.add_parser("merge", help="merge driver (git calls it with %%O %%A %%B %%P)")
    for name in ("base", "ours", "theirs"):
        m.add_argument(name)
    m.add_argument("path", nargs="?", default="Pulumi.stack.yaml", help="the file's path in the repository (%%P)")
    m.set_defaults(func=run_merge)
    g = gsub.add_parser("merge-generated", help="merge driver for k8s/ (git calls it with %%O %%A %%B %%P)")
    for name in ("base", "ours", "theirs"):
        g.add_argument(name)
    g.add_argument("path", nargs="?", default="k8s/file.yaml", help="the file's path in the repository (%%P)")
    g.set_defaults(func=run_merge_generated)
    r = gsub.add_parser("render-merge", help="render k8s/ from the stack files in the index and stage it")
    add_root_flag(r, "the project folder (where the stack files are)")
    r.add_argument(
        "--hook",
        choices=("pre-commit", "post-merge"),
        help="as that hook (pre-commit: only while concluding a merge; post-merge: amend the merge commit)",
    )
    r.set_defaults(func=run_render_merge)
    t = gsub.add_parser("textconv", help="diff textconv: print FILE with ciphertexts as ids")
    t.add_argument("file")
    t.set_defaults(func=run_textconv)


def run_setup(args: argparse.Namespace) -> int:
    from ksecrets.gitdriver import setup

    for line in setup(args.root, args.command):
        print(line)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ksecrets.gitdriver import merge_driver

    try:
        code, conflicts = merge_driver(args.base, args.ours, args.theirs, args.path)
    except Exception as exc:  # noqa: BLE001 - git expects a conflict (non-zero), never a traceback
        code, conflicts = (
            1,
            [f"{args.path}: merge conflict: the merge driver failed ({type(exc).__name__}); resolve by hand"],
        )
    for line in conflicts:
        sys.stderr.write(f"ksecrets: {line}\n")
    return code


def run_merge_generated(args: argparse.Namespace) -> int:
    from ksecrets.gitrender import merge_generated

    try:
        code, conflicts = merge_generated(args.base, args.ours, args.theirs, args.path)
    except Exception as exc:  # noqa: BLE001 - git expects a conflict (non-zero), never a traceback
        code, conflicts = 1, [f"{args.path}: merge conflict: the merge driver failed ({type(exc).__name__})"]
    for line in conflicts:
        sys.stderr.write(f"ksecrets: {line}\n")
    return code


def run_render_merge(args: argparse.Namespace) -> int:
    from ksecrets.gitrender import render_merge

    for line in render_merge(args.root, hook=args.hook):
        sys.stderr.write(f"ksecrets: {line}\n")
    return 0


def run_textconv(args: argparse.Namespace) -> int:
    from ksecrets.fileio import read_bytes
    from ksecrets.gitdriver import textconv

    data = read_bytes(args.file, "file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        sys.stdout.buffer.write(data)
        return 0
    sys.stdout.write(textconv(text))
    return 0

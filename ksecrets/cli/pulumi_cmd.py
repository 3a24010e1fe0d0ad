"""`ksecrets preview|up (--stack S... | --all-stacks) [--parallel N]`: `pulumi preview` or `pulumi up`
over several stacks at once, through the Pulumi Automation API.

This module only resolves the selection against the project's stack files: the run itself is
`python -m components.automation` (the Pulumi layer; nothing under `ksecrets/` imports Pulumi),
started in the project folder with this interpreter, its exit code passed on.
"""

from __future__ import annotations

import argparse

from ksecrets.cli.flags import add_root_flag, add_stacks_flag


def register(sub: argparse._SubParsersAction) -> None:
    from ksecrets.cli import SUBCOMMANDS

    for operation, what in (
        ("preview", "show what `pulumi up` would change"),
        ("up", "apply the stacks with `pulumi up` (checkpoints kept unless --no-checkpoints)"),
    ):
        p = sub.add_parser(
            operation,
            help=SUBCOMMANDS[operation][1],
            description=f"{what.capitalize()} for each selected stack, at most --parallel at once; each "
            "stack's output is printed whole when it finishes, then one table; the exit code is the worst stack's.",
        )
        chosen = p.add_mutually_exclusive_group(required=True)
        add_stacks_flag(chosen, all_stacks="every Pulumi.<stack>.yaml in the project")
        p.add_argument("--parallel", type=int, default=2, metavar="N", help="stacks at once (default 2)")
        if operation == "up":
            p.add_argument(
                "--no-checkpoints",
                action="store_true",
                help="skip the engine's per-step checkpoints (fast at 1000s of objects); a run marker makes a "
                "killed run recoverable: the next `up --no-checkpoints` adopts or deletes what it left "
                "(README: Pulumi at a thousand apps)",
            )
        add_root_flag(p, "the project folder")
        p.set_defaults(func=run, operation=operation)


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from ksecrets.config import stack_files
    from ksecrets.config.load import stack_name_from_path
    from ksecrets.errors import KsecretsError

    root = args.root.resolve()
    known = [stack_name_from_path(p) for p in stack_files(root)]
    if args.parallel < 1:
        raise KsecretsError(f"--parallel {args.parallel}: give 1 or more")
    stacks = known if args.all_stacks else list(dict.fromkeys(args.stack))
    unknown = [s for s in stacks if s not in known]
    if unknown:
        raise KsecretsError(f"no stack file Pulumi.{unknown[0]}.yaml in {root} (stacks: {', '.join(known) or 'none'})")
    if not stacks:
        raise KsecretsError(f"no stack files in {root}")
    argv = [sys.executable, "-m", "components.automation", args.operation, "--parallel", str(args.parallel)]
    if getattr(args, "no_checkpoints", False):
        argv.append("--no-checkpoints")
    return subprocess.run([*argv, "--root", str(root), *stacks], cwd=root).returncode

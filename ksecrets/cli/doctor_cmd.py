"""`ksecrets doctor [--stack S]`: references across a stack, offline.

Namespaces the stack's objects live in but nobody creates, ServiceAccounts a Deployment, CronJob,
RoleBinding or VaultAuth names but nobody creates, Secrets (and keys) a workload reads that no
backend provides, sealed entries no app uses. Exit 1 on a problem; warnings alone exit 0.
"""

from __future__ import annotations

import argparse
import sys

from ksecrets.errors import CheckFailed
from ksecrets.cli.flags import add_optional_stack_flag, add_root_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser("doctor", help=SUBCOMMANDS["doctor"][1], description=__doc__)
    add_optional_stack_flag(p, "one stack (default: every Pulumi.<stack>.yaml)")
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.usecases.doctor import doctor_stacks

    report = doctor_stacks(args.root, args.stack)
    for line in report.lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if report.problems:
        raise CheckFailed(f"doctor: {report.problems} problem(s)")
    return 0

"""`ksecrets drift [--stack S | --env E]... [--all-stacks] [--json]`: what differs between the
clusters of each environment (keys, values by their stored fleet digests, rotation schedules) and
between environments (keys), and certificates missing, expired or expiring; never decrypting.
Exit 1 on drift, 2 on bad input.

    ksecrets drift --env production
    ksecrets drift --json
"""

from __future__ import annotations

import argparse
import json
import sys

from ksecrets.cli.flags import add_root_flag, add_selector_flags
from ksecrets.errors import CheckFailed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "drift",
        help="what differs between clusters and environments, without decrypting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selector_flags(p)
    p.add_argument("--json", action="store_true", help="print the findings as JSON (exit codes unchanged)")
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ksecrets.config.selection import selector_of
    from ksecrets.usecases.drift import drift

    result = drift(args.root, selector_of(args.stack, args.env, args.all_stacks))
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        for finding in result.findings:
            sys.stdout.write(finding.line() + "\n")
        envs = result.environments
        sys.stdout.write(
            f"{len(result.clusters)} cluster(s) in {len(envs)} environment(s): {len(result.findings)} finding(s)"
            + (
                f"; {result.not_comparable} key(s) without digests to compare (sealed without KSECRETS_SEAL_KEY)"
                if result.not_comparable
                else ""
            )
            + "\n"
        )
    sys.stdout.flush()
    if result.findings:
        raise CheckFailed(f"drift: {len(result.findings)} finding(s)")
    return 0

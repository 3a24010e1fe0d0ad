"""`ksecrets report [--stack S | --env E]... [--all-stacks] [--out FILE]`: the fleet on one
self-contained HTML page (FILE, default fleet-report.html) and the same data as JSON beside it
(FILE with .json): clusters × secret keys with drift highlighted, certificate expiry and key age,
rotation schedules, and which workloads read each Secret. No value, no network, no script.

    ksecrets report --out fleet-report.html
    ksecrets report --env production --out prod.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ksecrets.cli.flags import add_root_flag, add_selector_flags


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="the fleet as one HTML page and JSON: matrix, certificates, rotation, readers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selector_flags(p)
    p.add_argument(
        "--out", type=Path, default=Path("fleet-report.html"), metavar="FILE", help="the HTML page (JSON beside it)"
    )
    add_root_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ksecrets.config.selection import selector_of
    from ksecrets.errors import KsecretsError
    from ksecrets.fileio import Transaction, atomic_write_text
    from ksecrets.usecases.report import build_report, render_html

    out: Path = args.out
    if out.suffix.lower() not in (".html", ".htm"):
        raise KsecretsError(f"--out {out}: name an .html file (the JSON goes beside it)")
    report = build_report(args.root, selector_of(args.stack, args.env, args.all_stacks))
    data = json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"
    page = render_html(report)
    with Transaction() as tx:
        atomic_write_text(tx.keep(out), page)
        atomic_write_text(tx.keep(out.with_suffix(".json")), data)
    f = report.fleet
    print(f"{out}: {len(f.clusters)} cluster(s), {len(f.slots())} secret key(s), {len(f.findings)} finding(s)")
    print(f"{out.with_suffix('.json')}: the same data")
    sys.stdout.flush()
    return 0

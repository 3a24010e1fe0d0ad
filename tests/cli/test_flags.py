"""`--root` and `--stack` are defined once (ksecrets/cli/flags.py): every subcommand gets them from
there, so their metavar, type and default text are the same everywhere."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ksecrets.cli import build_parser
from ksecrets.cli.flags import ROOT_DEFAULT

CLI = Path(__file__).resolve().parents[2] / "ksecrets" / "cli"


def test_no_subcommand_module_adds_root_or_stack_by_hand():
    by_hand = [
        f"{path.name}:{n}"
        for path in sorted(CLI.glob("*.py"))
        if path.name != "flags.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"""["']--(root|stack)["']\s*[,)]""", line)
        and "add_argument" in line
        or re.fullmatch(r"""\s*["']--(root|stack)["'],\s*""", line)
    ]
    assert by_hand == []


def parsers(parser: argparse.ArgumentParser, prog: str = "ksecrets"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prog} {name}", sub
                yield from parsers(sub, f"{prog} {name}")


def test_every_root_and_stack_flag_has_one_shape():
    roots = stacks = 0
    for prog, parser in parsers(build_parser()):
        for action in parser._actions:
            if "--root" in action.option_strings:
                roots += 1
                assert (action.metavar, action.default) == ("DIR", None), prog
                assert action.type is Path and action.help.endswith(f"(default: {ROOT_DEFAULT})"), prog
            if "--stack" in action.option_strings:
                stacks += 1
                assert action.metavar == "NAME" and action.help, prog
                assert action.required or action.default in (None, []), prog
    assert roots >= 20 and stacks >= 15, (roots, stacks)

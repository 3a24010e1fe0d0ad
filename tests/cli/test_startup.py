"""The command line starts cheaply: only the subcommand being run is imported, and a subcommand
imports its implementation only when it runs. The figures are in bench/startup.py; these tests
pin the mechanism (which modules get loaded), which does not depend on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ksecrets.cli import SUBCOMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "cryptography",
    "yaml",
    "ruamel",
    "jsonschema",
    "kubernetes_validate",
    "hvac",
    "requests",
    "urllib.request",
    "ksecrets.config",
    "ksecrets.usecases.export",
    "ksecrets.validation",
    "ksecrets.manifests",
)
PROBE = """
import json, runpy, sys
sys.argv = ["ksecrets", *json.loads(sys.argv[1])]
try:
    runpy.run_module("ksecrets", run_name="__main__")
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def loaded(*argv: str, stdin: bytes = b"") -> set[str]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], input=stdin, capture_output=True, cwd=ROOT)
    line = [l for l in res.stderr.decode().splitlines() if l.startswith("MODULES ")][-1]
    return set(json.loads(line[len("MODULES ") :]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def present() -> list[str]:
    import importlib.util

    return [n for n, (mod, _) in SUBCOMMANDS.items() if importlib.util.find_spec(f"ksecrets.cli.{mod}")]


@pytest.mark.parametrize("name", present())
def test_help_of_each_subcommand_loads_no_implementation(name):
    modules = loaded(name, "--help")
    assert heavy(modules) == []
    others = {f"ksecrets.cli.{mod}" for n, (mod, _) in SUBCOMMANDS.items() if mod != SUBCOMMANDS[name][0]}
    assert not (modules & others), sorted(modules & others)


def test_top_level_help_lists_every_subcommand_and_loads_none():
    modules = loaded("--help")
    assert heavy(modules) == [] and not any(m.endswith("_cmd") for m in modules)
    res = subprocess.run([sys.executable, "-m", "ksecrets", "--help"], capture_output=True, text=True, cwd=ROOT)
    for name in present():
        assert f"    {name} " in res.stdout or f"    {name}\n" in res.stdout, name


def test_sealing_one_secret_loads_only_what_sealing_needs():
    secret = b"apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {K: value-12345}\n"
    modules = loaded("seal", "--cert", "certs/staging.pem", stdin=secret)
    assert "cryptography.hazmat.primitives.asymmetric.rsa" in modules and "yaml" in modules  # it did seal
    for unwanted in (
        "cryptography.x509",
        "urllib.request",
        "ssl",
        "ruamel",
        "jsonschema",
        "ksecrets.config",
        "ksecrets.cli.export_cmd",
        "tempfile",
    ):
        assert not any(m == unwanted or m.startswith(unwanted + ".") for m in modules), unwanted


def test_full_parser_has_every_subcommand_and_the_same_help():
    """build_parser() without `only` registers the real parsers; their help is the table's."""
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in action._choices_actions}
    for name in present():
        assert name in action.choices
        assert helps[name] == SUBCOMMANDS[name][1], name


def test_rotate_help_bounds_match_the_rotator():
    from ksecrets.jobs import rotate
    from ksecrets.cli import rotate_cmd

    assert (rotate_cmd.MIN_LENGTH, rotate_cmd.MAX_LENGTH) == (rotate.MIN_LENGTH, rotate.MAX_LENGTH)


def test_unknown_subcommand_is_one_line():
    res = subprocess.run([sys.executable, "-m", "ksecrets", "sael"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "invalid choice: 'sael'" in res.stderr


def test_backup_defers_its_imports_in_one_place():
    """`backup_cmd.py` holds the parsers; its work (`backup_run.py`) imports at module level and is
    loaded through `ksecrets.cli.runs` only when a command runs: no import inside a function."""
    import ast

    for name in ("backup_cmd", "backup_run"):
        tree = ast.parse((ROOT / "ksecrets" / "cli" / f"{name}.py").read_text(encoding="utf-8"))
        inside = [
            f"{name}.py:{node.lineno}"
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef)
            for node in ast.walk(fn)
            if isinstance(node, (ast.Import, ast.ImportFrom))
        ]
        assert inside == [], inside
    assert "ksecrets.cli.backup_run" not in loaded("backup", "--help")

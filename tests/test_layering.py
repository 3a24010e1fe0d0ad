"""The layers README's Layout names, checked on the source (every import statement, top-level or
inside a function, read from the AST; no module is imported, no grep):

- nothing under `ksecrets/` imports Pulumi (the adapter is `components/pulumi_source.py`);
- the ports `ksecrets/sealing` (the kubeseal format, certificates, keys, backups) and
  `ksecrets/vault` (hvac) import neither the stack files (`ksecrets.config`), the use cases
  (`ksecrets.usecases`) nor the command line (`ksecrets.cli`);
- the use cases do not import the command line;
- `ksecrets/manifests` is pure: no file I/O (no `open`, no `pathlib`, no `ksecrets.fileio`), and it
  imports neither the ports nor the use cases: facts from files are passed in (`StackFacts`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ksecrets"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in the file (module `name`, by default from its path);
    `from a import b` gives both `a` and `a.b` (b may be a submodule), relative imports resolved
    against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = name or module_name(path)
    package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def files(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offences(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: imports {mod}"
        for path in files(package)
        for line, mod in imports(path)
        if under(mod, forbidden) and not under(mod, allowed)
    ]


def test_the_package_never_imports_pulumi():
    assert offences("ksecrets", ("pulumi", "pulumi_kubernetes", "pulumi_policy")) == []


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """The checker itself: function-level, `from` and relative imports are all found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import pulumi.runtime\n    from ..config import load\n    from . import crypto\n")
    found = {mod for _, mod in imports(sample, "ksecrets.sealing.sample")}
    assert {"pulumi.runtime", "ksecrets.config", "ksecrets.config.load", "ksecrets.sealing.crypto"} <= found


@pytest.mark.parametrize("port", ["ksecrets.sealing", "ksecrets.vault"])
def test_the_ports_read_no_stack_file_and_no_command_line(port):
    assert offences(port, ("ksecrets.config", "ksecrets.usecases", "ksecrets.cli")) == []


def test_the_use_cases_do_not_import_the_command_line():
    assert offences("ksecrets.usecases", ("ksecrets.cli",)) == []


def test_the_builders_do_no_file_io():
    forbidden = (
        "pathlib",
        "io",
        "os",
        "shutil",
        "tempfile",
        "yaml",
        "ruamel",
        "ksecrets.fileio",
        "ksecrets.yamlio",
        "ksecrets.sealing",
        "ksecrets.vault",
        "ksecrets.usecases",
        "ksecrets.cli",
        "ksecrets.validation",
        "ksecrets.export",
        "ksecrets.config.load",
        "ksecrets.config.stackfile",
    )
    # The one sealing module a builder uses: a SealedSecret object's shape is the format's (pure).
    assert offences("ksecrets.manifests", forbidden, allowed=("ksecrets.sealing.sealedsecret",)) == []
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}: calls {node.func.id}()"
        for path in files("ksecrets.manifests")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    assert calls == []


def nodes(package: str):
    for path in files(package):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            yield path.relative_to(ROOT), node


def test_a_name_is_made_once():
    """The rotator's name (`manifests.rotation.rotator_name`: f"{app.name}-rotator") and which
    files are stack files (`config.names.stack_files`: a glob of "Pulumi.*.yaml") each have one home."""
    rotator = [
        f"{p}:{n.lineno}"
        for p, n in nodes("ksecrets")
        if isinstance(n, ast.JoinedStr)
        and n.values
        and isinstance(n.values[-1], ast.Constant)
        and n.values[-1].value == "-rotator"
    ]
    globs = [
        f"{p}:{n.lineno}"
        for p, n in nodes("ksecrets")
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "glob"
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and n.args[0].value == "Pulumi.*.yaml"
    ]
    assert (rotator, globs) == (["ksecrets/manifests/rotation.py:57"], ["ksecrets/config/names.py:15"])

"""The layers README's Layout names, checked on the import graph of the source (`tests/layers.py`:
every import statement, top-level, inside a function or under `TYPE_CHECKING`, read from the AST;
no module is imported, no grep). Rules follow imports transitively: a port that reaches the stack
files through a third module breaks the rule as surely as one that imports them.

- the layer order `tests/layers.py` draws (entry points > use cases > jobs > model and builders >
  ports > base): no import points up, no two units import each other round a loop, no module
  loop at run time, and nothing imports an entry point (`__main__`);
- nothing under `ksecrets/` imports Pulumi (the adapter is `components/pulumi_source.py`);
- the ports `ksecrets/sealing` (the kubeseal format, certificates, keys, backups) and
  `ksecrets/vault` (hvac) reach neither the stack files (`ksecrets.config`), the use cases, the
  jobs nor the command line; only the Vault port imports hvac, and only the ports and
  `ksecrets.s3` speak HTTP through requests;
- the use cases do not reach the command line;
- the rotator (`python -m ksecrets.rotate`) loads nothing its image lacks (pydantic, cryptography,
  ruamel, Pulumi);
- `ksecrets/manifests` is pure: no file I/O (no `open`, no `pathlib`, no `ksecrets.fileio`), and it
  reaches neither the ports nor the use cases: facts from files are passed in (`StackFacts`).

`python -m tests.layers` prints the drawing's counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.layers import LAYERS, ROOT, Graph, imports, loops, under

GRAPH = Graph()


def modules(package: str, *, entries: bool = False) -> list[str]:
    """The modules of `package`, less its entry points (each `__main__` is a unit of its own,
    above everything) unless `entries`."""
    return sorted(m for m in GRAPH.files if under(m, (package,)) and (entries or not GRAPH.is_entry(m)))


def bad(target: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    """Forbidden and not allowed; the packages enclosing an allowed module are allowed too (importing
    it runs their `__init__.py`, whose own imports the chains then follow)."""
    return (
        under(target, forbidden) and not under(target, allowed) and not any(a.startswith(target + ".") for a in allowed)
    )


def offences(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (), *, entries: bool = False
) -> list[str]:
    """Every module of `package` that reaches a forbidden module (of ksecrets or outside it),
    directly or through others, with the chain that gets there. An allowed module is not followed:
    what it loads is its own package's business, under that package's rules."""
    out = []
    for m in modules(package, entries=entries):
        reached = {**GRAPH.reach(m, stop=allowed), **GRAPH.reach_external(m, stop=allowed)}
        out += [" -> ".join(chain) for target, chain in sorted(reached.items()) if bad(target, forbidden, allowed)]
    return out


def direct(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (), *, but: tuple[str, ...] = ()
) -> list[str]:
    """Every module of `package` (`but` those under these) whose own import statements name a
    forbidden module."""
    return [
        f"{m} imports {ext}"
        for m in (n for n in GRAPH.files if under(n, (package,)) and not under(n, but))
        for ext in sorted(GRAPH.external[m] | GRAPH.edges[m])
        if bad(ext, forbidden, allowed)
    ]


def test_the_package_never_imports_pulumi():
    assert offences("ksecrets", ("pulumi", "pulumi_kubernetes", "pulumi_policy"), entries=True) == []


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """The checker itself: function-level, `from` and relative imports are all found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import pulumi.runtime\n    from ..config import load\n    from . import crypto\n")
    found = {mod for mod, _ in imports(sample, "ksecrets.sealing.sample")}
    assert {"pulumi.runtime", "ksecrets.config", "ksecrets.config.load", "ksecrets.sealing.crypto"} <= found
    typed = tmp_path / "typed.py"
    typed.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ksecrets.config import model\n")
    assert ("ksecrets.config.model", True) in imports(typed, "ksecrets.vault.typed")


def _tree(tmp_path: Path, files: dict[str, str]) -> Graph:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Graph(root=tmp_path)


def test_the_drawing_sees_an_arrow_up_a_loop_and_a_chain(tmp_path):
    """The checker itself, on a small tree: a port importing a use case is an arrow up (through a
    function-level import), two base modules importing each other are a loop, a port reaching
    the stack files through a base module is found with its chain, and a `__main__` entry module
    may call up."""
    g = _tree(
        tmp_path,
        {
            "ksecrets/__init__.py": "",
            "ksecrets/errors.py": "from ksecrets import fileio\n",
            "ksecrets/fileio.py": "from ksecrets.errors import X\n",
            "ksecrets/s3.py": "import ksecrets.config.model\n",
            "ksecrets/config/__init__.py": "",
            "ksecrets/config/model.py": "",
            "ksecrets/usecases/__init__.py": "",
            "ksecrets/usecases/push.py": "from ksecrets.vault import kv\n",
            "ksecrets/vault/__init__.py": "",
            "ksecrets/vault/kv.py": "def f():\n    from ksecrets.usecases.push import g\n",
            "ksecrets/vault/snap.py": "from ksecrets import s3\n",
            "ksecrets/vault/job/__init__.py": "",
            "ksecrets/vault/job/__main__.py": "from ksecrets.usecases import push\n",
        },
    )
    assert g.upward() == [
        "ksecrets.s3 (base) -> ksecrets.config (model and builders)",
        "ksecrets.s3 (base) -> ksecrets.config.model (model and builders)",
        "ksecrets.vault.kv (ports) -> ksecrets.usecases (use cases)",
        "ksecrets.vault.kv (ports) -> ksecrets.usecases.push (use cases)",
    ]
    assert ["ksecrets.errors", "ksecrets.fileio"] in loops(g.units)
    assert g.reach("ksecrets.vault.snap")["ksecrets.config.model"] == [
        "ksecrets.vault.snap",
        "ksecrets.s3",
        "ksecrets.config.model",
    ]
    assert g.unit("ksecrets.vault.job.__main__") == "ksecrets.vault.job.__main__" and g.entry_imported() == []


def test_every_unit_has_a_layer():
    placed = {u for _, units in LAYERS for u in units}
    assert sorted(u for u in GRAPH.units if u not in placed and not GRAPH.is_entry(u)) == []


def test_no_import_points_up():
    assert GRAPH.upward() == []


def test_no_loops():
    """Between units (a package under ksecrets/, a top-level module), and between modules as
    Python runs them (an `if TYPE_CHECKING:` import names a type and runs nothing)."""
    assert (loops(GRAPH.units), loops(GRAPH.runtime_edges)) == ([], [])


def test_nothing_imports_an_entry_point():
    assert GRAPH.entry_imported() == []


@pytest.mark.parametrize("port", ["ksecrets.sealing", "ksecrets.vault"])
def test_the_ports_read_no_stack_file_and_no_command_line(port):
    assert offences(port, ("ksecrets.config", "ksecrets.usecases", "ksecrets.cli", "ksecrets.jobs")) == []


def test_only_the_vault_port_speaks_to_vault():
    """hvac only in `ksecrets.vault`; requests only in the ports and `ksecrets.s3` (the workflows,
    the jobs and the command line go through them)."""
    assert direct("ksecrets", ("hvac",), but=("ksecrets.vault",)) == []
    assert direct("ksecrets", ("requests",), but=("ksecrets.vault", "ksecrets.sealing", "ksecrets.s3")) == []


def test_the_use_cases_do_not_import_the_command_line():
    assert offences("ksecrets.usecases", ("ksecrets.cli",)) == []


def test_the_rotator_loads_only_what_its_image_installs():
    """The image installs the package without dependencies, then the `rotate` extra (hvac, PyYAML,
    psycopg): the rotator, and the snapshot CronJob that runs in the same image, reach none of the
    CLI's or the Pulumi program's libraries."""
    heavy = ("pydantic", "cryptography", "ruamel", "jsonschema", "kubernetes_validate", "pulumi", "ksecrets.config")
    assert (
        offences("ksecrets.jobs.rotate", heavy)
        + offences("ksecrets.rotate", heavy, entries=True)
        + offences("ksecrets.jobs.vault_snapshot", heavy)
        + offences("ksecrets.vault.snapshot", heavy, entries=True)
    ) == []


def test_the_builders_do_no_file_io():
    stdlib_io = ("pathlib", "io", "os", "shutil", "tempfile", "yaml", "ruamel")
    forbidden = (
        "ksecrets.fileio",
        "ksecrets.yamlio",
        "ksecrets.sealing",
        "ksecrets.vault",
        "ksecrets.usecases",
        "ksecrets.cli",
        "ksecrets.validation",
        "ksecrets.usecases.export",
        "ksecrets.config.load",
        "ksecrets.config.stackfile",
    )
    # The one sealing module a builder uses: a SealedSecret object's shape is the format's (pure
    # functions; the module also holds the port's sealing, so it loads certs and fileio: not followed).
    # And the kubeseal format's one check of what ciphertext is (`crypto.sealed_value_problem`, which
    # the model applies to every `encryptedData` value): standard library only at import.
    allowed = ("ksecrets.sealing.sealedsecret", "ksecrets.sealing.crypto")
    assert direct("ksecrets.manifests", stdlib_io, allowed) + offences("ksecrets.manifests", forbidden, allowed) == []
    calls = [
        f"{path.relative_to(ROOT)}: calls {node.func.id}()"
        for module, path in GRAPH.files.items()
        if under(module, ("ksecrets.manifests",))
        for node in ast.walk(GRAPH.trees[module])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    assert calls == []


def places(package: str):
    """(file, enclosing function or "<module>", node) for every node of the package's modules."""
    for module, tree in GRAPH.trees.items():
        if not under(module, (package,)):
            continue
        path = GRAPH.files[module].relative_to(ROOT)
        todo: list[tuple[ast.AST, str]] = [(tree, "<module>")]
        while todo:
            node, scope = todo.pop()
            yield path, scope, node
            inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            todo.extend((child, inner) for child in ast.iter_child_nodes(node))


def test_a_name_is_made_once():
    """The rotator's name (`manifests.rotation.rotator_name`: f"{app.name}-rotator") and which
    files are stack files (`config.names.stack_files`: a glob of "Pulumi.*.yaml") each have one home."""
    every = list(places("ksecrets"))
    rotator = [
        f"{p}: {scope}"
        for p, scope, n in every
        if isinstance(n, ast.JoinedStr)
        and n.values
        and isinstance(n.values[-1], ast.Constant)
        and n.values[-1].value == "-rotator"
    ]
    globs = [
        f"{p}: {scope}"
        for p, scope, n in every
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "glob"
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and n.args[0].value == "Pulumi.*.yaml"
    ]
    assert (rotator, globs) == (
        ["ksecrets/manifests/rotation.py: rotator_name"],
        ["ksecrets/config/names.py: stack_files"],
    )

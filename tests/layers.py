"""The import graph of `ksecrets/`, drawn from the source, and the layer order it must follow.

Every import statement of every module, top-level or inside a function (and under
`TYPE_CHECKING`), is read from the AST: nothing is imported, nothing is grepped. An edge goes from
a module to the module it names (`from a import b` names `a.b` when `b` is a module, else `a`),
and to that module's enclosing packages (importing `a.b.c` runs `a/__init__.py` and
`a/b/__init__.py` first).

The drawing groups modules into units: a package directly under `ksecrets/` (`ksecrets.vault`)
or a top-level module (`ksecrets.fileio`). A `__main__` module is a unit of its own: it is what
`python -m` runs and nothing imports it, so it may sit inside a low package (`python -m
ksecrets.vault.snapshot`, the snapshot CronJob's command in `k8s/`) and call a job above it; so is
each of ENTRY_MODULES.

    python -m tests.layers          prints the counts: modules, edges, arrows back up, loops

`tests/test_layering.py` holds the rules on this graph.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ksecrets"

# The layer order, top first: a unit imports only units of its own layer or a lower one, and no
# two units import each other (directly or round a loop). Every unit is in exactly one layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("ksecrets.cli", "__main__")),
    (
        "use cases",
        (
            "ksecrets.usecases",
            "ksecrets.gitdriver",
            "ksecrets.gitrender",
            "ksecrets.gitattributes",
        ),
    ),
    ("jobs", ("ksecrets.jobs",)),
    ("model and builders", ("ksecrets.config", "ksecrets.manifests", "ksecrets.validation", "ksecrets.limits")),
    ("ports", ("ksecrets.sealing", "ksecrets.vault")),
    (
        "base",
        (
            "ksecrets",
            "ksecrets.errors",
            "ksecrets.fileio",
            "ksecrets.yamlio",
            "ksecrets.envfile",
            "ksecrets.s3",
            "ksecrets.scan",
            "ksecrets.sopsrules",
            "ksecrets.backends",
            "ksecrets.scopes",
            "ksecrets.validators",
            "ksecrets.tokens",
            "ksecrets.project",
        ),
    ),
)
ENTRY = "__main__"
# Entry modules that are not named `__main__`: `python -m ksecrets.rotate`, the rotation CronJobs'
# command (in k8s/), now calls `ksecrets.jobs.rotate`.
ENTRY_MODULES = ("ksecrets.rotate",)
JOBS = ("ksecrets.jobs",)  # a `__main__` there is a job's own program, in the jobs layer


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Import(NamedTuple):
    module: str
    type_only: bool  # under `if TYPE_CHECKING:`: read by type checkers, never run


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, name: str | None = None, tree: ast.Module | None = None) -> list[Import]:
    """Every module an import statement of the file names; `from a import b` gives both `a` and
    `a.b` (b may be a submodule), relative imports resolved against the file's package."""
    tree = tree or ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = name or module_name(path)
    package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
    out: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend(Import(alias.name, type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append(Import(base, type_only))
            out.extend(Import(f"{base}.{alias.name}", type_only) for alias in node.names)
        elif isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return out


def under(module: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class Graph:
    root: Path = ROOT
    package: str = PACKAGE

    @cached_property
    def files(self) -> dict[str, Path]:
        return {module_name(p, self.root): p for p in sorted((self.root / self.package).rglob("*.py"))}

    @cached_property
    def trees(self) -> dict[str, ast.Module]:
        return {m: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for m, p in self.files.items()}

    @cached_property
    def _read(self) -> dict[str, tuple[set[str], set[str], set[str], set[str]]]:
        """module → (ksecrets modules it imports, those imported at run time, outside names, those
        imported at run time)."""
        out: dict[str, tuple[set[str], set[str], set[str], set[str]]] = {}
        for name, path in self.files.items():
            targets: set[str] = set()
            runtime: set[str] = set()
            external: set[str] = set()
            external_runtime: set[str] = set()
            for mod, type_only in imports(path, name, self.trees[name]):
                if not under(mod, (self.package,)):
                    external.add(mod)
                    if not type_only:
                        external_runtime.add(mod)
                    continue
                target = self.resolve(mod)
                if target is None:
                    continue
                for t in (*ancestors(target), target):
                    if t in self.files and t != name and t not in ancestors(name):
                        targets.add(t)
                        if not type_only:
                            runtime.add(t)
            out[name] = (targets, runtime, external, external_runtime)
        return out

    @property
    def edges(self) -> dict[str, set[str]]:
        """module → the ksecrets modules it imports (explicitly, or as their enclosing packages),
        type-only imports included: a type from a higher layer is a dependency on it too."""
        return {m: r[0] for m, r in self._read.items()}

    @property
    def runtime_edges(self) -> dict[str, set[str]]:
        """The edges Python follows when it runs the code (no `if TYPE_CHECKING:` import)."""
        return {m: r[1] for m, r in self._read.items()}

    @property
    def external(self) -> dict[str, set[str]]:
        return {m: r[2] for m, r in self._read.items()}

    def resolve(self, mod: str) -> str | None:
        """The longest prefix of `mod` that is a module of the package."""
        parts = mod.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in self.files:
                return candidate
        return None

    def reach(self, module: str, stop: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Every module `module` loads when it runs, directly or through others (type-only imports
        load nothing), not following the imports of modules under `stop`: module → one chain to it."""
        chains: dict[str, list[str]] = {module: [module]}
        todo = [module]
        edges = self.runtime_edges
        while todo:
            current = todo.pop()
            if current != module and under(current, stop):
                continue
            for t in sorted(edges[current]):
                if t not in chains:
                    chains[t] = [*chains[current], t]
                    todo.append(t)
        return chains

    def reach_external(self, module: str, stop: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """The outside modules (`hvac`, `pulumi`...) `module` loads: name → the chain that loads it."""
        out: dict[str, list[str]] = {}
        for mod, chain in self.reach(module, stop).items():
            if mod != module and under(mod, stop):
                continue
            for ext in sorted(self._read[mod][3]):
                out.setdefault(ext, [*chain, ext])
        return out

    # --- the drawing: units and layers ---

    def is_entry(self, module: str) -> bool:
        """A `__main__` module outside the jobs, or one of ENTRY_MODULES: what `python -m` runs, a
        unit of its own."""
        return (module.rsplit(".", 1)[-1] == ENTRY and not under(module, JOBS)) or module in ENTRY_MODULES

    def unit(self, module: str) -> str:
        if self.is_entry(module):
            return module
        parts = module.split(".")
        return ".".join(parts[:2])

    def layer(self, unit: str) -> int:
        if self.is_entry(unit):
            return 0
        for i, (_, units) in enumerate(LAYERS):
            if unit in units:
                return i
        raise KeyError(f"{unit} is in no layer of tests/layers.py LAYERS: place it")

    @cached_property
    def units(self) -> dict[str, set[str]]:
        """unit → the units it imports."""
        out: dict[str, set[str]] = {self.unit(m): set() for m in self.files}
        for m, targets in self.edges.items():
            for t in targets:
                if self.unit(t) != self.unit(m):
                    out[self.unit(m)].add(self.unit(t))
        return out

    def upward(self) -> list[str]:
        """Every import of a module by a module in a lower layer: "a (layer) -> b (layer)"."""
        return sorted(
            f"{m} ({LAYERS[self.layer(self.unit(m))][0]}) -> {t} ({LAYERS[self.layer(self.unit(t))][0]})"
            for m, targets in self.edges.items()
            for t in targets
            if self.layer(self.unit(t)) < self.layer(self.unit(m))
        )

    def entry_imported(self) -> list[str]:
        return sorted(f"{m} -> {t}" for m, ts in self.edges.items() for t in ts if self.is_entry(t))


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def counts(g: Graph) -> dict[str, int]:
    unit_edges = sum(len(t) for t in g.units.values())
    return {
        "modules": len(g.files),
        "module edges": sum(len(t) for t in g.edges.values()),
        "units": len(g.units),
        "unit edges": unit_edges,
        "arrows back up": len(g.upward()),
        "unit arrows back up": sum(1 for u, ts in g.units.items() for v in ts if g.layer(v) < g.layer(u)),
        "unit loops": len(loops(g.units)),
        "module loops": len(loops(g.runtime_edges)),
        "module loops, type-only imports too": len(loops(g.edges)),
    }


def main() -> int:
    g = Graph()
    for key, value in counts(g).items():
        print(f"{key:36} {value}")
    for line in g.upward():
        print(f"up:   {line}")
    for comp in loops(g.units):
        print(f"unit loop:   {' <-> '.join(comp)}")
    for comp in loops(g.edges):
        print(
            f"module loop: {' <-> '.join(comp)}{'' if comp in loops(g.runtime_edges) else ' (closed by a type-only import)'}"
        )
    for line in g.entry_imported():
        print(f"imports an entry point: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

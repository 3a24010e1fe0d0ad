"""A backend is one module: `ksecrets/backends/<name>.py`, its tests, one line in the registry.

The places a new backend touches, and nothing else:
1. `ksecrets/backends/<module>.py`: one `BackendSpec` (`BACKEND = ...`): which value mechanisms it
   uses (`seals`, `vault`, `pulumi_values`, `sops_files`), its migration phases, and the texts and `stack new`
   defaults that name its own commands (`base.BackendSpec` lists them);
2. `ksecrets/backends/__init__.py`: its module in `_MODULES`;
3. its tests here.
Everything else (the config model and rules, the builders, `stack new`, `app add`, `doctor`,
`seal`, `verify`, `rotate`, `adopt`, `migrate`, `components/`, the policy pack) asks the stack's
spec (`cfg.spec`, `backends.get/find`): `test_no_backend_comparison_outside_the_package` holds
that, and the fake backends below prove the dispatch points follow the registry, not names.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ksecrets import backends
from ksecrets.backends import manual, sealed_secrets, vault
from ksecrets.backends.base import BackendSpec
from ksecrets.config.load import parse, raw_from_stack_file
from ksecrets.config.names import PREFIX
from ksecrets.errors import KsecretsError

ROOT = Path(__file__).resolve().parents[2]
# Where the code that dispatches on a backend lives (the policy pack runs in the project's venv).
SCANNED = [ROOT / "ksecrets", ROOT / "components", ROOT / "__main__.py", ROOT / "policy", ROOT / "tools"]
PACKAGE = ROOT / "ksecrets" / "backends"


def _python_files() -> list[Path]:
    out: list[Path] = []
    for p in SCANNED:
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(f for f in sorted(p.rglob("*.py")) if PACKAGE not in f.parents)
    return out


def _names_backend(node: ast.expr) -> bool:
    """`backend`, `x.backend`, `x["backend"]`, `x.get("backend")` (or a prefixed key)."""
    if isinstance(node, ast.Name):
        return node.id == "backend"
    if isinstance(node, ast.Attribute):
        return node.attr == "backend"
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.endswith("backend")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return any(isinstance(a, ast.Constant) and str(a.value).endswith("backend") for a in node.args[:1])
    return False


def backend_comparisons(path: Path, root: Path = ROOT) -> list[str]:
    """Every comparison of a backend's name (`==`, `!=`, `in`, `not in`, `match`) in a file, and
    every equality with a backend's name literal (`x == "vault"`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set(backends.BACKENDS)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            eq = any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
            member = any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)
            if (member and any(_names_backend(s) for s in sides)) or (
                eq and any(isinstance(s, ast.Constant) and s.value in names for s in sides)
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Match) and _names_backend(node.subject):
            found.append(f"{path.relative_to(root)}:{node.lineno}: match {ast.unparse(node.subject)}")
    return found


def test_no_backend_comparison_outside_the_package():
    found = [hit for path in _python_files() for hit in backend_comparisons(path)]
    assert not found, "ask the stack's BackendSpec (cfg.spec) instead:\n" + "\n".join(found)


def test_the_scan_sees_comparisons(tmp_path):
    """The scan above can fail: each shape of comparison it forbids is found, a section key is not."""
    src = tmp_path / "x.py"
    src.write_text(
        'a = cfg.backend == "vault"\nb = backend not in ("manual",)\nc = raw["k8s-secrets:backend"] != x\n'
        'd = raw.get("backend") in BACKENDS\ne = kind == "sealed-secrets"\n'
        "match cfg.backend:\n    case _:\n        pass\n"
        'ok = app.get("vault") is None or "vault" in app or backend is None\n'
    )
    lines = sorted(hit.split(":")[1] for hit in backend_comparisons(src, root=tmp_path))
    assert lines == ["1", "2", "3", "4", "5", "6"]


def test_every_module_is_registered_once_under_its_name():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "base"))
    registered = sorted(m.__name__.rsplit(".", 1)[1] for m in backends._MODULES)
    assert modules == registered
    for module in backends._MODULES:
        spec = module.BACKEND
        assert isinstance(spec, BackendSpec)
        assert spec.name.replace("-", "_") == module.__name__.rsplit(".", 1)[1]
        assert backends.get(spec.name) is spec
    assert tuple(backends.BACKENDS) == ("manual", "sealed-secrets", "vault", "sops")
    assert backends.find("gpg") is None and backends.find(None) is None


@pytest.mark.parametrize("spec", backends.all_specs(), ids=lambda s: s.name)
def test_each_backend_says_where_its_values_go(spec):
    """Exactly one value mechanism per backend, and the texts its mechanism reaches are written."""
    assert [spec.seals, spec.vault, spec.pulumi_values, spec.sops_files].count(True) == 1
    assert spec.values_hint("s", "web-secrets")
    if not spec.seals:  # `seal --stack` into it says what does
        how, where = spec.put_values("s", "web-secrets", ["web"])
        assert how and where
    if spec.pulumi_values:  # rotate and adopt cannot write Pulumi config
        assert "pulumi config set" in spec.cannot_rotate("web-secrets", "K")
        assert not spec.adopts and "adopt" in spec.cannot_adopt()
    else:  # adopt seals, pushes or encrypts (tests/cli/test_adopt.py, tests/usecases/test_adopt_sops.py)
        assert spec.adopts


# --- a fake backend: one module's worth of spec, registered for the test only ----------------------


class FakeSealing(sealed_secrets.SealedSecrets):
    """A new backend that seals like sealed-secrets, under another name."""


class FakeVault(vault.Vault):
    """A new backend that keeps values in Vault, under another name."""


@pytest.fixture
def register(monkeypatch):
    def add(spec: BackendSpec) -> BackendSpec:
        monkeypatch.setitem(backends._BY_NAME, spec.name, spec)
        return spec

    return add


def _stack(name: str, backend: str | None = None):
    path = ROOT / f"Pulumi.{name}.yaml"
    raw = raw_from_stack_file(path)
    if backend is not None:
        raw["backend"] = backend
    return parse(raw, stack=name, source=path.name, root=str(ROOT))


def _objects(cfg):
    from ksecrets.usecases.stack_facts import plan_stack

    return [(p.group, p.gitops, p.obj) for p in plan_stack(cfg)]


@pytest.mark.parametrize(
    ("stack", "fake"),
    [
        ("staging", FakeSealing("fake-sealing", seals=True, migration_phases=("install",))),
        ("production", FakeVault("fake-vault", vault=True, migration_phases=("handover",))),
    ],
    ids=["sealing", "vault"],
)
def test_a_registered_backend_is_one_everywhere(register, stack, fake):
    """A backend the registry knows by another name gets the same config checks, the same objects
    from every builder, the same doctor, stack new and app add texts: the dispatch points ask the
    registry, never the name. Unregistered, the same name is refused."""
    real = _stack(stack)
    with pytest.raises(KsecretsError, match=f'"{fake.name}" is not one of manual, sealed-secrets, vault, sops'):
        _stack(stack, fake.name)
    register(fake)
    cfg = _stack(stack, fake.name)
    assert cfg.spec is fake and cfg.installs_vault == real.installs_vault
    assert _objects(cfg) == _objects(real)
    assert [cfg.secret_keys(a) for a in cfg.apps] == [real.secret_keys(a) for a in real.apps]

    from ksecrets.usecases.stack_new import new_stack_config

    source = {PREFIX + k: v for k, v in raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml").items()}
    new, new_real = new_stack_config("fresh", fake.name, source), new_stack_config("fresh", real.backend, source)
    assert new.pop(PREFIX + "backend") == fake.name and new_real.pop(PREFIX + "backend") == real.backend
    assert new == new_real


def test_a_registered_backend_is_a_choice_of_stack_new(register, tmp_path):
    from ksecrets.cli import build_parser

    register(dataclasses.replace(manual.BACKEND, name="fake-manual"))
    args = build_parser().parse_args(["stack", "new", "x", "--backend", "fake-manual"])
    assert args.backend == "fake-manual"

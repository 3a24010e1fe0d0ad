"""The default of an app's `secretName` (`<name>-secrets`) is written once, in the config model
(`default_secret_name`, and `raw_secret_name` for a stack file's raw mapping): `stack new`, `app
add`, `migrate` and the model agree because they call the same function."""

from __future__ import annotations

import ast
from pathlib import Path

from ksecrets.config.model import App, default_secret_name, raw_secret_name

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "ksecrets" / "config" / "model.py"


def _writes_the_default(node: ast.AST) -> bool:
    """An f-string `f"{...}-secrets"`."""
    if not isinstance(node, ast.JoinedStr) or not node.values:
        return False
    last = node.values[-1]
    return isinstance(last, ast.Constant) and last.value == "-secrets"


def test_one_home():
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted([*(ROOT / "ksecrets").rglob("*.py"), *(ROOT / "components").rglob("*.py")])
        if path != HOME
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _writes_the_default(node)
    ]
    assert not found, "call ksecrets.config.model.default_secret_name / raw_secret_name:\n" + "\n".join(found)
    assert sum(_writes_the_default(n) for n in ast.walk(ast.parse(HOME.read_text(encoding="utf-8")))) == 1


def test_the_model_and_raw_config_agree():
    assert App(name="web", namespace="shop").secret_name == default_secret_name("web") == "web-secrets"
    assert raw_secret_name({"name": "web", "namespace": "shop"}) == "web-secrets"
    assert raw_secret_name({"name": "web", "secretName": "db"}) == "db"
    assert App(name="web", namespace="shop", secret_name="db").secret_name == "db"

"""The default of an app's Vault path (the app's name) is written once, in the Vault backend's
module (`ksecrets.backends.vault.default_vault_path`, and `raw_vault_entry` for a stack file's raw
mapping): the model, `stack new`, `app add` and `migrate --to vault` call the same function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ksecrets.backends import get
from ksecrets.backends.vault import default_vault_path, raw_vault_entry
from ksecrets.config.model import App, AppVault

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "ksecrets" / "backends" / "vault.py"


def _writes_the_default(node: ast.AST) -> bool:
    """A `{"path": <something naming the app's name>}` literal, or `<path> or <...name>`."""
    if isinstance(node, ast.Dict):
        return any(
            isinstance(k, ast.Constant) and k.value == "path" and "name" in ast.unparse(v)
            for k, v in zip(node.keys, node.values)
        )
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2:
        first, second = (ast.unparse(v) for v in node.values)
        return bool(re.fullmatch(r"[\w.]*path", first) and re.fullmatch(r"[\w.]*name", second))
    return False


def test_one_home():
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in sorted([*(ROOT / "ksecrets").rglob("*.py"), *(ROOT / "components").rglob("*.py")])
        if path != HOME
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _writes_the_default(node)
    ]
    assert not found, "call ksecrets.backends.vault.default_vault_path / raw_vault_entry:\n" + "\n".join(found)


def test_the_model_stack_new_and_raw_config_agree():
    assert App(name="web", namespace="shop", vault=AppVault()).vault.path == default_vault_path("web") == "web"
    assert App(name="web", namespace="shop", vault=AppVault(path="kv/web")).vault.path == "kv/web"
    assert raw_vault_entry({"name": "web"}) == {"path": "web"}
    assert raw_vault_entry({"name": "web"}, "other") == {"path": "other"}
    config = {"p:apps": [{"name": "web"}, {"name": "db", "vault": {"path": "x"}}]}
    get("vault").stack_new(config, "s", "p:")
    assert [a["vault"] for a in config["p:apps"]] == [{"path": "web"}, {"path": "x"}]

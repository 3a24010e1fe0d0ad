"""Stack configuration: the typed model and its loaders.

`load_stack("staging")` reads `Pulumi.staging.yaml`; `parse(raw, ...)` validates a mapping of
`k8s-secrets:` keys from any source (the Pulumi adapter is `components/pulumi_source.py`).

The names below load on first use: importing one submodule (`ksecrets.config.names`) does not
bring in the model and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ksecrets.config.load import load_stack, load_stack_file, parse
    from ksecrets.config.model import App, StackConfig
    from ksecrets.config.names import stack_files

__all__ = ["App", "StackConfig", "load_stack", "load_stack_file", "parse", "stack_files"]
_HOME = {
    "App": "model",
    "StackConfig": "model",
    "load_stack": "load",
    "load_stack_file": "load",
    "parse": "load",
    "stack_files": "names",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)

"""The backends a stack can use: the one registry (the config model, the builders, `ksecrets stack
new --backend`, the policy pack). A backend is one module here (see `base.BackendSpec`, what differs
between backends); adding one is its module, its tests and one line in `_MODULES`. Standard library
only: the command line imports it while building its parsers.
"""

from __future__ import annotations

from ksecrets.backends import manual, sealed_secrets, vault
from ksecrets.backends.base import BackendSpec

# The registry: one line per backend, in the order `--backend` and the errors list them.
_MODULES = (manual, sealed_secrets, vault)

_BY_NAME: dict[str, BackendSpec] = {m.BACKEND.name: m.BACKEND for m in _MODULES}
BACKENDS: tuple[str, ...] = tuple(_BY_NAME)
Backend = str  # one of BACKENDS (the config model checks it with the list)


def get(name: str) -> BackendSpec:
    """The backend called `name`; KeyError for a name not in BACKENDS (the config model refuses
    those before anything asks)."""
    return _BY_NAME[name]


def find(name: str | None) -> BackendSpec | None:
    """The backend called `name`, or None for a name that is none of BACKENDS (input to check)."""
    return _BY_NAME.get(name) if name is not None else None


def all_specs() -> tuple[BackendSpec, ...]:
    return tuple(_BY_NAME.values())


__all__ = ["BACKENDS", "Backend", "BackendSpec", "all_specs", "find", "get"]

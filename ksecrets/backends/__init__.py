"""The backends a stack can use: the one registry (the config model, the builders, `ksecrets stack
new --backend`, the policy pack). A backend is one module here (see `base.BackendSpec`, what differs
between backends); adding one is its module, its tests and one line in `_MODULES`. Standard library
only: the command line imports it while building its parsers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from ksecrets.backends import manual, sealed_secrets, sops, vault
from ksecrets.backends.base import BackendSpec

# The registry: one line per backend, in the order `--backend` and the errors list them.
_MODULES = (manual, sealed_secrets, vault, sops)

_BY_NAME: dict[str, BackendSpec] = {m.BACKEND.name: m.BACKEND for m in _MODULES}


class _Names(Sequence[str]):
    """The registered names, read from the registry at each use (the config model's check, the
    parsers' choices), so a backend registered later (a test's) is one everywhere."""

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return tuple(_BY_NAME)[index]

    def __len__(self) -> int:
        return len(_BY_NAME)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_BY_NAME))

    def __contains__(self, name: object) -> bool:
        return name in _BY_NAME

    def __repr__(self) -> str:
        return repr(tuple(_BY_NAME))


BACKENDS: Sequence[str] = _Names()
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

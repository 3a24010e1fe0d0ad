"""The backends a stack can use: the one list (the config model, `ksecrets stack new --backend`,
the policy pack). Standard library only: the command line imports it while building its parsers."""

from __future__ import annotations

from typing import Literal, get_args

Backend = Literal["manual", "sealed-secrets", "vault"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

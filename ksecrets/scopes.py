"""The sealing scopes of the sealed-secrets format (upstream `SealingScope`): what the RSA-OAEP label
binds a value to (`ksecrets.sealing.crypto.label_for`). The one list: the sealing port, the config
model's `sealed[].scope` and `ksecrets seal --scope`; below all of them. Standard library only: the
command line imports it while building its parsers, before any cryptography is loaded."""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal["strict", "namespace-wide", "cluster-wide"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

"""The one Pulumi adapter of the config layer: Pulumi config → the same `parse` as the files.

Imported only by `__main__.py` (and tests under mocks); `ksecrets/` never imports Pulumi.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi

from ksecrets.config import model
from ksecrets.config.load import KEYS, check_namespace, parse
from ksecrets.config.names import PROJECT


def _raw_value(key: str) -> Any:
    raw = pulumi.runtime.get_config(f"{PROJECT}:{key}")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw  # a plain string value such as `backend: vault`


def _project_keys() -> list[str]:
    """Every `k8s-secrets:` key the engine delivers (prefix removed), known or not: the engine
    passes the whole stack config (PULUMI_CONFIG), so a misspelt key reaches `parse` and fails
    there as it does in `ksecrets export`, instead of being silently ignored."""
    keys = set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())
    for key in sorted(keys):
        check_namespace(key, "stack config")  # `k8s-secret:apps` is refused, as in the files
    prefix = f"{PROJECT}:"
    return sorted(k[len(prefix) :] for k in keys if k.startswith(prefix))


def load_from_pulumi() -> tuple[model.StackConfig, pulumi.Output[Any] | None]:
    """The stack model, plus the manual values as one secret Output (None when there are none).

    `manualValues` is read for its shape only (secret name → keys); its values never leave the
    secret Output, so they stay encrypted in state and out of logs and error messages.
    """
    stack = pulumi.get_stack()
    raw: dict[str, Any] = {}
    for key in sorted(set(KEYS) | set(_project_keys())):
        value = _raw_value(key)
        if value is None:
            continue
        if key == "manualValues" and isinstance(value, dict):
            value = {name: {k: "" for k in keys} if isinstance(keys, dict) else keys for name, keys in value.items()}
        raw[key] = value
    cfg = parse(raw, stack=stack, source=f"Pulumi.{stack}.yaml", root=os.getcwd())
    manual = None
    if "manualValues" in raw:
        manual = pulumi.Config(PROJECT).require_secret_object("manualValues")
    return cfg, manual


def manual_value_outputs(cfg: model.StackConfig, manual: pulumi.Output[Any] | None) -> dict[str, dict[str, Any]]:
    """secretName → key → secret Output of that one value (never resolved in our code)."""
    if manual is None:
        return {}
    return {name: {k: _one_value(manual, name, k) for k in keys} for name, keys in cfg.manual_keys}


def _one_value(manual: pulumi.Output[Any], name: str, key: str) -> pulumi.Output[str]:
    return manual.apply(lambda values: str(values[name][key]))

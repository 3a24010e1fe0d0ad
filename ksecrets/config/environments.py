"""Clusters as stacks of one environment: `k8s-secrets:extends: environments/production.yaml`.

A fleet runs one environment (production) on several clusters (prod-eu-1, prod-eu-2...), one
Pulumi stack each. What they share (apps, rotation, monitoring, the chart versions) lives ONCE in
an environment file beside the stack files; each cluster's stack file names it with `extends` and
keeps what is its own (its `kubernetes:context`, certificate, Vault address and auth mount, and
its sealed values, which are sealed for that cluster's key).

Why this mechanism and not Pulumi's project-level config: the engine hands the program a stack's
config as one map (`PULUMI_CONFIG`), and `ksecrets export` reads the stack file; both reach the
one `parse` (load.py), and so does this merge, which wraps it (as `includes.resolving` does).
Pulumi's project config (`Pulumi.yaml` `config:` values) is one layer for every stack of the
project, not one per environment, and Pulumi ESC environments need Pulumi Cloud. The `extends`
value is a plain string the engine passes as is, so `pulumi up` and `ksecrets export` resolve the
same file into the same merged config (tests/components/test_fleet_pulumi.py proves it).

The environment file holds what a stack file's `config:` holds, without the `k8s-secrets:`
prefix. The merge: a mapping merges key by key, recursively (a stack overriding
`sealedSecrets.certificate` keeps the environment's `sealedSecrets.chartVersion`); anything else
(a list such as `apps`, a string, a number) is replaced whole by the stack's value. `sealed` and
`manualValues` never come from an environment (values are per cluster), and an environment
extends nothing (one level: what a stack inherits fits in two files).

The environment's name is the file's name without `.yaml`; a stack that extends nothing is its own
environment, named after the stack.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar, cast

from ksecrets.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
EXTENDS = "extends"
FOLDER = "environments"  # where `stack new --env E` writes environments/E.yaml
# Per cluster, never inherited: sealed values are sealed for one cluster's key; manual values are
# one stack's Pulumi secrets; and an environment does not extend another.
NOT_INHERITED = ("sealed", "manualValues", EXTENDS)
# Keys of a section that are each cluster's own: a Vault auth mount is bound to one cluster's API
# server (its host, CA and service accounts), so clusters sharing one would overwrite each
# other's login config. Left out, a cluster's is `kubernetes-<stack>` (model.cluster_auth_mount).
PER_CLUSTER = (("vault", "authMount"),)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`: mappings merged key by key, recursively; anything else replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def environment_name(ref: str) -> str:
    """`environments/production.yaml` → `production`."""
    return Path(ref).name[: -len(".yaml")]


def reference(raw: Mapping[str, Any], *, source: str) -> str | None:
    """The `extends` value of a stack's raw config (prefix removed), checked to be a string."""
    ref = raw.get(EXTENDS)
    if ref is None:
        return None
    if not isinstance(ref, str) or isinstance(ref, bool):
        raise ConfigError(source, EXTENDS, "must be the path of an environment file (environments/<env>.yaml)")
    return ref


def load_environment(
    ref: str, *, source: str, root: str | os.PathLike[str], known: frozenset[str]
) -> tuple[dict[str, Any], str, str]:
    """(the environment's keys, the file as written, its text), checked: a mapping of known,
    inheritable keys. Errors name the environment file and the line."""
    from ksecrets import yamlio
    from ksecrets.config.fields import kind, unknown_key
    from ksecrets.config.includes import line_of, read_text, target

    path = target(ref, key=EXTENDS, source=source, root=root)
    shown = os.path.normpath(ref)
    if not environment_name(shown):
        raise ConfigError(source, EXTENDS, f"{ref!r}: the file's name is the environment's name")
    text = read_text(path, shown=shown, key=EXTENDS, source=source)
    doc = yamlio.load(text, shown)
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping):
        raise ConfigError(shown, "", f"must be a mapping of the keys a stack's config holds, not {kind(doc)}")
    allowed = sorted(known - set(NOT_INHERITED))
    for key in doc:
        at = f"{shown}: line {line_of(text, str(key))}"
        if not isinstance(key, str):
            raise ConfigError(at, "", f'key "{key}" must be a string')
        name = key.removeprefix("k8s-secrets:")
        if name in NOT_INHERITED:
            why = "an environment extends nothing" if name == EXTENDS else "values are per cluster"
            raise ConfigError(at, name, f"cannot be in an environment file ({why}): keep it in each stack file")
        if name not in known:
            raise ConfigError(at, name, unknown_key(name, allowed))
    for section, key in PER_CLUSTER:
        value = doc.get(section, doc.get(f"k8s-secrets:{section}"))
        if isinstance(value, Mapping) and key in value:
            line = line_of(text, f"{section}.{key}")
            raise ConfigError(
                f"{shown}: line {line}" if line else shown,
                f"{section}.{key}",
                "is each cluster's own, not the environment's (every cluster logs in at its own mount, "
                "by default kubernetes-<stack>): set it in a stack file or leave it out",
            )
    return {str(k).removeprefix("k8s-secrets:"): v for k, v in doc.items()}, shown, text


_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def from_environment(path: str, stack_raw: Mapping[str, Any], env_raw: Mapping[str, Any]) -> bool:
    """Whether the value at key path `path` (`monitoring.namespace`, `apps[1].name`) of the
    merged config came from the environment: its first mapping key the stack does not set, the
    environment does."""
    here: Any = stack_raw
    there: Any = env_raw
    for m in _TOKEN.finditer(path):
        if m.group(2) is not None:
            return False  # inside a list: the list came whole from the side that set it (above)
        key = m.group(1)
        if not isinstance(here, Mapping) or key not in here:
            return isinstance(there, Mapping) and key in there
        if not isinstance(here[key], Mapping):
            return False
        here = here[key]
        there = there.get(key) if isinstance(there, Mapping) else None
    return False


def extending(parse: F) -> F:
    """Decorate `parse(raw, *, stack, source, root)`: `extends` resolved and merged under the
    stack's own keys; an error in an inherited value names the environment file and its line."""
    from ksecrets.config.includes import line_of

    @functools.wraps(parse)
    def wrapper(raw: Mapping[str, Any], *, stack: str, source: str, root: str = ".", **kw: Any) -> Any:
        ref = reference(raw, source=source) if isinstance(raw, Mapping) else None
        if ref is None:
            if isinstance(raw, Mapping) and EXTENDS in raw:
                raw = {k: v for k, v in raw.items() if k != EXTENDS}
            return parse(raw, stack=stack, source=source, root=root, **kw)
        known = kw.pop("known", None) or _known()
        own = {k: v for k, v in raw.items() if k != EXTENDS}
        env, shown, text = load_environment(ref, source=source, root=root, known=known)
        try:
            return parse(
                merge(env, own), stack=stack, source=source, root=root, environment=environment_name(shown), **kw
            )
        except ConfigError as exc:
            if exc.source != source or not exc.path or not from_environment(exc.path, own, env):
                raise
            line = line_of(text, exc.path)
            raise ConfigError(f"{shown}: line {line}" if line else shown, exc.path, exc.problem) from None

    return cast(F, wrapper)


@functools.cache
def _known() -> frozenset[str]:
    from ksecrets.config.model import StackConfig

    return frozenset(StackConfig.file_keys())


def environment_of_raw(raw: Mapping[str, Any], stack: str, source: str) -> str:
    """The environment a stack belongs to: its `extends` file's name, else its own name."""
    ref = reference(raw, source=source)
    return environment_name(os.path.normpath(ref)) if ref else stack

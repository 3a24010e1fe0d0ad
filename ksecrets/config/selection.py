"""Which stacks a command works on: `--stack S` (repeatable), `--env E` (repeatable: every
cluster stack of environment E), `--all-stacks`, resolved in one place into stack names.

A stack's environment is the name of the file its `k8s-secrets:extends` names
(`environments/production.yaml` → production), else the stack's own name (environments.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ksecrets.config import environments
from ksecrets.config.load import raw_from_stack_file, stack_name_from_path, stack_path
from ksecrets.config.names import stack_files
from ksecrets.errors import ConfigError, KsecretsError


@dataclass(frozen=True)
class Selector:
    stacks: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    all_stacks: bool = False

    @property
    def empty(self) -> bool:
        return not (self.stacks or self.envs or self.all_stacks)


def environment_of(path: Path) -> str:
    """The environment of the stack file at `path` (errors name the file, as loading does)."""
    stack = stack_name_from_path(path)
    return environments.environment_of_raw(raw_from_stack_file(path), stack, path.name)


def fleet(root: str | os.PathLike[str] = ".") -> dict[str, str]:
    """Every stack of the project → its environment, in stack-name order."""
    return {stack_name_from_path(p): environment_of(p) for p in stack_files(root)}


def by_environment(stack_envs: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stack, env in stack_envs.items():
        out.setdefault(env, []).append(stack)
    return {env: sorted(stacks) for env, stacks in sorted(out.items())}


def select(root: str | os.PathLike[str], selector: Selector, *, default_all: bool = True) -> list[str] | None:
    """The stack names `selector` names, sorted and without repeats; None when it names none and
    `default_all` (the command's default: every stack). Unknown names are one-line errors."""
    if selector.all_stacks and (selector.stacks or selector.envs):
        raise KsecretsError("give --stack/--env or --all-stacks, not both")
    if selector.empty:
        if default_all:
            return None
        raise KsecretsError("name the stacks: --stack NAME, --env ENV (both repeatable) or --all-stacks")
    chosen: set[str] = set()
    for stack in selector.stacks:
        if not stack_path(stack, root).is_file():
            raise ConfigError(stack_path(stack).name, "", "no such stack file")  # as loading says it
        chosen.add(stack)
    if selector.all_stacks or selector.envs:
        if not stack_files(root):
            raise KsecretsError(f"{root}: no stack files (Pulumi.<stack>.yaml)")
        envs = by_environment(fleet(root))
        if selector.all_stacks:
            chosen.update(s for stacks in envs.values() for s in stacks)
        for env in selector.envs:
            if env not in envs:
                raise KsecretsError(f"--env {env}: no stack of that environment (environments: {', '.join(envs)})")
            chosen.update(envs[env])
    return sorted(chosen)


def selector_of(stacks: Sequence[str] | str | None, envs: Sequence[str] | None, all_stacks: bool) -> Selector:
    """A Selector from parsed flags (`--stack` given once or repeatable)."""
    if isinstance(stacks, str):
        stacks = [stacks]
    return Selector(tuple(dict.fromkeys(stacks or ())), tuple(dict.fromkeys(envs or ())), bool(all_stacks))

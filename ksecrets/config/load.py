"""Stack config → `StackConfig`, from a `Pulumi.<stack>.yaml` file or from Pulumi's own config.

Both paths build the same raw mapping (the `k8s-secrets:` keys without their prefix) and go
through `parse`, so the exporter and `pulumi up` see one model (`ksecrets.config.model`, which
holds the checks and every default). Every error names the file and the key path
(`apps[1].secretName`); unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from ksecrets import yamlio
from ksecrets.config import environments, includes
from ksecrets.config import model as m
from ksecrets import validators as v
from ksecrets.config.fields import config_error, did_you_mean, kind, unknown_key
from ksecrets.config.names import PREFIX, PROJECT, stack_files  # noqa: F401 (stack_files: importable from here too)
from ksecrets.errors import ConfigError, KsecretsError

# Top-level keys Pulumi itself writes into stack files.
_STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
# The `k8s-secrets:` keys a stack's config may have (the model's camelCase keys, and `extends`:
# the environment file it inherits from, environments.py).
KEYS = frozenset(m.StackConfig.file_keys()) | {environments.EXTENDS}


def stack_name(value: str) -> str | None:
    """Pulumi accepts `[A-Za-z0-9_.-]` in stack names; the stack's name goes into object names
    (`<stack>-apps`, `k8s-secrets-<stack>`), which Kubernetes wants as lower-case DNS labels."""
    if v.dns_label(value):
        return (
            f'stack name "{value}" cannot be used in Kubernetes object names: use lower-case letters, '
            "digits and '-' (at most 63 characters); rename it with `pulumi stack rename`"
        )
    return None


@environments.extending  # `extends` names an environment file merged under the stack's keys
@includes.resolving  # `sealed`/`apps` may name a file (includes.py); errors there name that file
def parse(raw: Mapping[str, Any], *, stack: str, source: str, root: str = ".", environment: str = "") -> m.StackConfig:
    """Validate the `k8s-secrets:` keys of one stack (prefix removed) into a StackConfig
    (`environment`: given by `environments.extending`, the environment file's name)."""
    problem = stack_name(stack)
    if problem:
        raise ConfigError(source, "", problem)
    try:
        return m.validate_raw(raw, stack=stack, source=source, root=root, environment=environment)
    except ValidationError as exc:
        raise config_error(exc, source) from None


# --- sources -----------------------------------------------------------------------------------


def stack_name_from_path(path: Path) -> str:
    name = path.name
    if not (name.startswith("Pulumi.") and name.endswith(".yaml")) or name == "Pulumi.yaml":
        raise ConfigError(str(path), "", "is not a stack file (Pulumi.<stack>.yaml)")
    return name[len("Pulumi.") : -len(".yaml")]


def read_stack_bytes(path: Path, source: str) -> bytes:
    """A stack file's bytes, for the loader and the editor alike: a FIFO or a device is refused
    before it can block the read; every failure is one ConfigError naming `source`."""
    from ksecrets.fileio import NotRegularFile, read_regular

    try:
        return read_regular(path)
    except FileNotFoundError:
        raise ConfigError(source, "", "no such stack file") from None
    except NotRegularFile as exc:
        raise ConfigError(source, "", f"is {exc.strerror}, not a regular file") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read it ({exc.strerror})") from None


def raw_from_stack_file(path: Path) -> dict[str, Any]:
    source = path.name
    data = read_stack_bytes(path, source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, "", "not UTF-8 text") from None
    return raw_from_text(text, source)


def raw_from_text(text: str, source: str) -> dict[str, Any]:
    """The `k8s-secrets:` keys (prefix removed) of a stack file's text; other sections checked."""
    doc = yamlio.load(text, source)
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping):
        raise ConfigError(source, "", f"must be a mapping, not {kind(doc)}")
    for key in doc:
        if not isinstance(key, str):
            raise ConfigError(source, "", f'key "{key}" must be a string')
        if key not in _STACK_FILE_KEYS:
            raise ConfigError(source, key, unknown_key(key, _STACK_FILE_KEYS))
    config = doc.get("config")
    if config is None:
        raise ConfigError(source, "config", "is required")
    if not isinstance(config, Mapping):
        raise ConfigError(source, "config", "must be a mapping")
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(source, "config", f'key "{key}" must be a string')
        check_namespace(key, source)
        if key.startswith(PREFIX):
            raw[key[len(PREFIX) :]] = value
        elif ":" not in key:
            # Pulumi treats an unprefixed key as the project's own; so do we.
            raw[key] = value
    return raw


def check_namespace(key: str, source: str) -> None:
    """A key of another namespace that is a misspelling of this project's (`k8s-secret:apps`,
    `K8s-Secrets:apps`, `ksecrets:apps`) is refused: it would be ignored without a word."""
    namespace, colon, rest = key.partition(":")
    if not colon or key.startswith(PREFIX):
        return
    if did_you_mean(namespace.lower(), [PROJECT]):
        raise ConfigError(source, key, f'unknown namespace (did you mean "{PREFIX}{rest}"?)')


def load_stack_file(path: str | os.PathLike[str]) -> m.StackConfig:
    p = Path(path)
    stack = stack_name_from_path(p)
    raw = raw_from_stack_file(p)
    # Error messages name the file as the user sees it in the repo: "Pulumi.staging.yaml".
    # The root is where the file is named (a symlinked stack file's repo), not the link's target.
    return parse(raw, stack=stack, source=p.name, root=os.path.abspath(p.parent))


_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_stack_name(stack: str) -> str:
    """Pulumi's stack name characters (letters, digits, `-`, `_`, `.`): never a path."""
    if not _STACK_NAME.fullmatch(stack or "") or ".." in stack:
        shown = stack if len(stack) <= 64 else stack[:64] + "..."
        raise KsecretsError(f"--stack {shown!r}: not a stack name (letters, digits, '-', '_' and '.'; no '/' or '..')")
    return stack


def stack_path(stack: str, root: str | os.PathLike[str] = ".") -> Path:
    """`<root>/Pulumi.<stack>.yaml`, for a stack name that cannot leave `root`."""
    return Path(root) / f"Pulumi.{check_stack_name(stack)}.yaml"


def load_stack(stack: str, root: str | os.PathLike[str] = ".") -> m.StackConfig:
    return load_stack_file(stack_path(stack, root))

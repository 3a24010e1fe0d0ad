"""`ksecrets vault push`: an env file becomes the app's kv-v2 secret, written only when it changed.

The file is parsed with kubectl's `--from-env-file` rules (`ksecrets.envfile`), so the same
file seals for a sealed-secrets stack and pushes for a vault stack. The file is the whole secret:
keys not in it are removed, except keys the rotator owns (the app's `rotation[].key`), which keep
Vault's current value once Vault has one, so an old env file never undoes a rotation.

Output names keys, never values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping

from ksecrets.config.model import App, StackConfig
from ksecrets.errors import KsecretsError
from ksecrets.envfile import parse_env_file
from ksecrets.vault import kv
from ksecrets.vault.client import VaultClient


@dataclass(frozen=True)
class PushResult:
    app: App
    mount: str
    path: str
    result: kv.WriteResult
    kept: tuple[str, ...]  # rotated keys whose Vault value was kept

    def lines(self) -> list[str]:
        where = kv.data_path(self.mount, self.path)
        r = self.result
        if not r.changed:
            out = [f"{where}: unchanged (version {r.version})"]
        else:
            parts = [
                f"{label}: {', '.join(keys)}"
                for label, keys in (("added", r.added), ("changed", r.updated), ("removed", r.removed))
                if keys
            ]
            out = [f"{where}: version {r.version} ({'; '.join(parts)})"]
        if self.kept:
            out.append(f"{where}: kept Vault's value of rotated keys: {', '.join(self.kept)}")
        return out


def find_app(cfg: StackConfig, path_or_name: str) -> App:
    """The vault app whose kv path (or, failing that, name) is `path_or_name`."""
    apps = [a for a in cfg.apps if a.vault is not None]
    for app in apps:
        if app.vault and app.vault.path == path_or_name:
            return app
    named = [a for a in apps if a.name == path_or_name]
    if len(named) == 1:
        return named[0]
    known = ", ".join(sorted(a.vault.path for a in apps if a.vault)) or "none"
    raise KsecretsError(f"--path: {path_or_name!r} is not the Vault path of an app in {cfg.source} (paths: {known})")


def text_values(values: Mapping[str, bytes], source: str) -> dict[str, str]:
    """kv-v2 stores JSON strings: every value must be UTF-8 text."""
    out = {}
    for key in sorted(values):
        try:
            out[key] = values[key].decode("utf-8")
        except UnicodeDecodeError:
            raise KsecretsError(
                f"{source}: key {key}: the value is not UTF-8 text, which Vault kv cannot hold"
            ) from None
    return out


def check_declared_keys(app: App, keys: set[str], source: str) -> None:
    missing = sorted(set(app.keys) - keys)
    if missing:
        raise KsecretsError(f"{source}: missing keys declared for app {app.name}: {', '.join(missing)}")


def push_values(client: VaultClient, cfg: StackConfig, app: App, values: Mapping[str, str], source: str) -> PushResult:
    if cfg.vault is None or app.vault is None:
        raise KsecretsError(f"{cfg.source}: app {app.name} has no vault section")
    check_declared_keys(app, set(values), source)
    rotated = tuple(sorted({r.key for r in app.rotation}))
    result = kv.write_if_changed(client, cfg.vault.kv_mount, app.vault.path, values, keep_existing=rotated)
    return PushResult(app, cfg.vault.kv_mount, app.vault.path, result, result.kept)


def push_env_file(
    client: VaultClient,
    cfg: StackConfig,
    *,
    path: str,
    env_file: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    allow_key_names: Collection[str] = (),
) -> PushResult:
    app = find_app(cfg, path)
    source = str(env_file)
    try:
        data = Path(env_file).read_bytes()
    except OSError as exc:
        raise KsecretsError(f"{source}: cannot read the env file ({exc.strerror})") from None
    values = text_values(parse_env_file(data, source, environ, allow_key_names=allow_key_names), source)
    if not values:
        raise KsecretsError(f"{source}: no keys in the env file; refusing to empty {path}")
    return push_values(client, cfg, app, values, source)

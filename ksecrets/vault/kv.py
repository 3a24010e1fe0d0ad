"""kv-v2 reads and check-and-set writes: the only way ksecrets changes a value in Vault.

A write is made only when a value differs (so `push` twice makes one version, not two) and always
with `options.cas` = the version we read (0 when the secret does not exist yet). If someone else
wrote in between, Vault refuses the write (400, check-and-set mismatch) and we say so instead of
overwriting their value.

A 404 on `<mount>/data/<path>` is ambiguous: no such secret, or a mount that is not kv-v2 (on a
kv-v1 mount `data/<path>` is just another missing key, and a kv-v1 mount would even accept our
write as a key named `data/<path>`). So before treating a 404 as "not there yet" we ask the mount
what it is, as the Vault CLI's kv preflight does (`sys/internal/ui/mounts/<mount>/<path>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import hvac
import hvac.exceptions as hx
import requests

from ksecrets.errors import KsecretsError
from ksecrets.vault.client import (
    VaultError,
    WriteOutcomeUnknown,
    address_of,
    answer_was_lost,
    describe,
    mount_info,
    vault_errors,
)


@dataclass(frozen=True)
class WriteResult:
    """What `write_if_changed` did. Key names only: never values."""

    changed: bool
    version: int  # the current version after the call (unchanged when changed is False)
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # keep_existing keys whose current value won over a different one


def data_path(mount: str, path: str) -> str:
    return f"{mount}/data/{path}"


def metadata_path(mount: str, path: str) -> str:
    return f"{mount}/metadata/{path}"


def _as_str(value: Any) -> str:
    # Values ksecrets writes are strings; a value someone wrote as JSON (a number, a map) is
    # compared and kept in its JSON spelling, which is also what VSO puts in the Secret.
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_kv2_mount(client: hvac.Client, mount: str, path: str) -> None:
    """Raise a one-line error unless `mount` is a kv version 2 mount."""
    info = mount_info(client, f"{mount}/{path}")
    where = data_path(mount, path)
    if info is None or str(info.get("path", "")).rstrip("/") != mount:
        raise VaultError(
            address_of(client), where, f"no kv-v2 mount at {mount}/ (not enabled, or the token may not see it)"
        )
    kind = str(info.get("type", ""))
    version = str((info.get("options") or {}).get("version", "1"))
    if kind != "kv" or version != "2":
        what = f"kv version {version}" if kind == "kv" else f"a {kind or 'unknown'} mount"
        raise VaultError(address_of(client), where, f"wrong mount type: {mount}/ is {what}, not kv version 2")


def _read(client: hvac.Client, mount: str, path: str) -> tuple[dict[str, str] | None, int]:
    """(data, current version); data None when there is no live version; version 0 if never written."""
    where = data_path(mount, path)
    with vault_errors(client, where):
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=False
            )
        except (hx.InvalidPath, hx.UnsupportedOperation, hx.UnexpectedError) as exc:
            # 404 (or 405 on some engines): first make sure this is a kv-v2 mount at all.
            check_kv2_mount(client, mount, path)
            if not isinstance(exc, hx.InvalidPath):
                raise describe(exc, client, where) from None
            # A deleted or destroyed latest version: 404 with the metadata still in the body.
            meta = ((exc.json or {}).get("data") or {}).get("metadata") if isinstance(exc.json, dict) else None
            meta = meta if isinstance(meta, dict) else {}
            return None, _whole(meta.get("version"), client, where, "metadata.version")
    body = response.get("data") if isinstance(response, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        # 200 without kv-v2 metadata: this is not a kv-v2 mount (kv-v1 has a key named data/<path>).
        check_kv2_mount(client, mount, path)
        raise VaultError(address_of(client), where, "unexpected response (no kv-v2 metadata)")
    version = _whole(body["metadata"].get("version"), client, where, "metadata.version")
    data = body.get("data")
    if data is None:  # deleted latest version (hvac returned the 404 body)
        return None, version
    return {str(k): _as_str(v) for k, v in data.items()}, version


def read_current(client: hvac.Client, mount: str, path: str) -> tuple[dict[str, str], int]:
    """The current version's data and its number. KsecretsError when there is no live version."""
    data, version = _read(client, mount, path)
    if data is None:
        reason = f"no such secret (its latest version {version} is deleted)" if version else "no such secret (404)"
        raise VaultError(address_of(client), data_path(mount, path), reason)
    return data, version


class _AnswerLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _cas_write(client: hvac.Client, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
    where = data_path(mount, path)
    try:
        response = client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=dict(data), cas=cas, mount_point=mount
        )
    except hx.InvalidRequest as exc:
        text = " ".join(str(e) for e in (exc.errors or []))
        if "check-and-set" in text:
            raise VaultError(
                address_of(client),
                where,
                f"changed concurrently: check-and-set expected version {cas}; "
                "nothing was overwritten, read it again and retry",
            ) from None
        raise describe(exc, client, where, redact=data.values()) from None
    except requests.RequestException as exc:
        if answer_was_lost(exc):
            raise _AnswerLost(describe(exc, client, where).reason) from None
        raise describe(exc, client, where, redact=data.values()) from None
    except hx.VaultError as exc:
        raise describe(exc, client, where, redact=data.values()) from None
    body = response.get("data") if isinstance(response, dict) else None
    if not isinstance(body, dict) or body.get("version") is None:
        raise VaultError(address_of(client), where, "unexpected response to a kv-v2 write (no version)")
    return _whole(body["version"], client, where, "version")


def _kv_get(mount: str, path: str) -> str:
    return f"`vault kv get -mount={mount} {path}`"


def _write_confirmed(client: hvac.Client, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
    """A check-and-set write that counts only once reading it back shows it: the new version.

    A write whose answer was lost (a timeout after sending, a dropped connection) is read back
    too: it landed, it did not, or, when Vault cannot be read, it *may* have (exit 3, saying how
    to check), never "the old value stays"."""
    where = data_path(mount, path)
    want = dict(data)
    try:
        version = _cas_write(client, mount, path, want, cas)
    except _AnswerLost as lost:
        try:
            back, now = _read(client, mount, path)
        except KsecretsError:
            raise WriteOutcomeUnknown(
                address_of(client),
                where,
                f"the write got no answer ({lost.reason}) and reading back failed: maybe "
                f"written; check with {_kv_get(mount, path)}",
            ) from None
        if now > cas and back == want:
            return now  # it landed; only the answer was lost
        if now == cas:
            raise VaultError(
                address_of(client),
                where,
                f"the write got no answer ({lost.reason}); reading back shows version {now} still current: not written",
            ) from None
        raise WriteOutcomeUnknown(
            address_of(client),
            where,
            f"the write got no answer ({lost.reason}) and version {now} holds other values "
            f"(another writer?): check with {_kv_get(mount, path)}",
        ) from None
    try:
        back, now = _read(client, mount, path)
    except KsecretsError as exc:
        raise WriteOutcomeUnknown(
            address_of(client),
            where,
            f"wrote version {version}, but reading it back failed ({getattr(exc, 'reason', exc)}): "
            f"maybe written; check with {_kv_get(mount, path)}",
        ) from None
    if back != want or now != version:
        raise VaultError(
            address_of(client),
            where,
            f"the write answered version {version}, but reading back shows "
            f"{'version ' + str(now) if back is not None else 'no value'} with other values: "
            "not Vault's kv-v2, or changed concurrently",
        )
    return version


def _check_data(client: hvac.Client, mount: str, path: str, data: Mapping[str, str]) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise VaultError(address_of(client), data_path(mount, path), f"key {key!r}: values must be text (str)")


def write_if_changed(
    client: hvac.Client, mount: str, path: str, data: Mapping[str, str], *, keep_existing: Iterable[str] = ()
) -> WriteResult:
    """Make `data` the secret's content (every key; keys not in `data` go), with check-and-set.

    Keys in `keep_existing` keep the value the current version has, when it has one (a key the
    rotator owns must not go back to an old value from an env file). No request writes when the
    current version already holds exactly the result.
    """
    _check_data(client, mount, path, data)
    current, version = _read(client, mount, path)
    old = current or {}
    new = dict(data)
    kept = tuple(sorted(k for k in set(keep_existing) if k in old and k in new and new[k] != old[k]))
    for key in set(keep_existing):
        if key in old:
            new[key] = old[key]
    if current is not None and old == new:
        return WriteResult(changed=False, version=version, kept=kept)
    added = tuple(sorted(k for k in new if k not in old))
    updated = tuple(sorted(k for k in new if k in old and old[k] != new[k]))
    removed = tuple(sorted(k for k in old if k not in new))
    new_version = _write_confirmed(client, mount, path, new, cas=version)
    return WriteResult(changed=True, version=new_version, added=added, updated=updated, removed=removed, kept=kept)


def rotate_key(client: hvac.Client, mount: str, path: str, key: str, new_value: str) -> int:
    """Replace one key's value (the others are kept), check-and-set on the version read. New version."""
    if not isinstance(new_value, str):
        raise VaultError(address_of(client), data_path(mount, path), f"key {key!r}: the new value must be text")
    data, version = read_current(client, mount, path)
    data[key] = new_value
    return _write_confirmed(client, mount, path, data, cas=version)


def rotate_keys(
    client: hvac.Client, mount: str, path: str, updates: Mapping[str, str], *, cas: int | None = None
) -> int:
    """Replace several keys' values in ONE new version (the other keys are kept), check-and-set.

    `cas` is the version the caller read (and based its decision on); without it the current
    version is read here. Either every key changes in the new version or none does: one version,
    so the Vault Secrets Operator updates the Secret once and restarts the app once.
    """
    _check_data(client, mount, path, updates)
    data, version = read_current(client, mount, path)
    if cas is not None and cas != version:
        raise VaultError(
            address_of(client),
            data_path(mount, path),
            f"changed concurrently: check-and-set expected version {cas}; "
            "nothing was overwritten, read it again and retry",
        )
    data.update(updates)
    return _write_confirmed(client, mount, path, data, cas=version)


@dataclass(frozen=True)
class Metadata:
    """What `<mount>/metadata/<path>` says: the current version, each kept version's creation
    time (Vault's clock, RFC 3339) and the secret's custom_metadata."""

    current_version: int
    created: dict[int, str]
    custom: dict[str, str]


def read_metadata(client: hvac.Client, mount: str, path: str) -> Metadata:
    where = metadata_path(mount, path)
    with vault_errors(client, where):
        try:
            response = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
        except hx.InvalidPath:
            return Metadata(0, {}, {})
    body = response.get("data") if isinstance(response, dict) else None
    if not isinstance(body, dict):
        raise VaultError(address_of(client), where, "unexpected response (no kv-v2 metadata)")
    versions = body.get("versions") or {}
    custom_metadata = body.get("custom_metadata") or {}
    if not isinstance(versions, dict) or not isinstance(custom_metadata, dict):
        raise VaultError(address_of(client), where, "unexpected response (versions or custom_metadata not a map)")
    created = {
        _whole(n, client, where, "versions"): str((v if isinstance(v, dict) else {}).get("created_time") or "")
        for n, v in versions.items()
    }
    custom = {str(k): str(v) for k, v in custom_metadata.items()}
    return Metadata(_whole(body.get("current_version"), client, where, "current_version"), created, custom)


def is_whole(value: object) -> bool:
    """A plain whole number as Vault writes one: a non-negative int (not a bool), or its ASCII
    decimal digits ("²" and "٣" are digits to `str.isdigit`, not to Vault)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18


def _whole(value: object, client: hvac.Client, where: str, field: str) -> int:
    """A version number from the server, or one line saying it is not one (never a traceback)."""
    if value is None:
        return 0
    if not is_whole(value):
        raise VaultError(address_of(client), where, f"unexpected response: {field} is not a whole number")
    return int(value)  # type: ignore[call-overload]


def write_custom_metadata(client: hvac.Client, mount: str, path: str, custom: Mapping[str, str]) -> None:
    """Set the secret's custom_metadata (the whole map: merge with what `read_metadata` gave).

    The body carries only `custom_metadata`, so max_versions, cas_required and
    delete_version_after stay as they are (hvac's update_metadata would also send
    delete_version_after: null)."""
    where = metadata_path(mount, path)
    with vault_errors(client, where):
        client.adapter.post(f"/v1/{mount}/metadata/{path}", json={"custom_metadata": dict(custom)})

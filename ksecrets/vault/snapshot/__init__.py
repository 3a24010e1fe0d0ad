"""Vault raft snapshots: save (the CronJob and `ksecrets vault snapshot save`), restore (the CLI).

A snapshot is what `GET sys/storage/raft/snapshot` streams (a gzip-compressed archive of the raft
state). `save` streams it into a temporary file in the target directory, checks it is gzip and not
empty, fsyncs it and renames it to `vault-raft-<UTC time>.snap`, so a file with that name is always
whole; then it deletes the oldest snapshots beyond `retain`. `restore` posts a file to
`sys/storage/raft/snapshot` (or `-force` when the snapshot came from another cluster with other
unseal keys). The snapshot CronJob's Vault policy allows only `read` on
`sys/storage/raft/snapshot`; restoring needs a root-like token (sudo on that path).

The CronJob's program (log in, save, prune, upload) is `ksecrets.jobs.vault_snapshot`; its command
stays `python -m ksecrets.vault.snapshot --dir /snapshots --retain 14` (this package's `__main__`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import hvac

from ksecrets.errors import KsecretsError
from ksecrets.fileio import read_bytes
from ksecrets.vault.client import address_of, vault_errors

PATH = "sys/storage/raft/snapshot"
PREFIX, SUFFIX = "vault-raft-", ".snap"
GZIP_MAGIC = b"\x1f\x8b"


def snapshot_name(now: float) -> str:
    return PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + SUFFIX


def snapshots(directory: Path) -> list[Path]:
    """The snapshot files in `directory`, oldest first (names sort by time)."""
    return sorted(p for p in directory.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def save(client: hvac.Client, out: Path, *, chunk: int = 1 << 20) -> int:
    """Stream a snapshot into `out` (atomically: temp file in the same directory, fsync, rename).
    Returns its size in bytes."""
    out = Path(out)
    if out.exists():
        raise KsecretsError(f"{out}: exists; a snapshot never overwrites a file")
    # Before asking Vault for anything: a folder that is not there is one line, not a traceback.
    if not out.parent.is_dir():
        raise KsecretsError(f"{out}: no such folder {str(out.parent)!r}; create it first")
    with vault_errors(client, PATH):
        try:
            fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=str(out.parent))
        except OSError as exc:
            raise KsecretsError(f"{out}: cannot write into {str(out.parent)!r} ({exc.strerror})") from None
        try:
            response = client.sys.take_raft_snapshot()
            if response.status_code != 200:
                raise KsecretsError(f"Vault {address_of(client)}: {PATH}: HTTP {response.status_code}")
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                head = b""
                for block in response.iter_content(chunk):
                    if len(head) < 2:
                        head += block[:2]
                    f.write(block)
                    size += len(block)
                f.flush()
                os.fsync(f.fileno())
            if size == 0 or not head.startswith(GZIP_MAGIC):
                raise KsecretsError(
                    f"Vault {address_of(client)}: {PATH}: the answer is not a raft snapshot "
                    f"({size} bytes, not gzip); is the storage raft?"
                )
            os.replace(tmp, out)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    dir_fd = os.open(str(out.parent), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def save_rotating(
    client: hvac.Client, directory: Path, retain: int, now: float | None = None
) -> tuple[Path, int, list[Path]]:
    """A new snapshot in `directory`, then the oldest beyond `retain` deleted. (file, size, deleted)."""
    directory = Path(directory)
    # A run killed mid-stream leaves its temporary file; runs never overlap (concurrencyPolicy Forbid).
    for stale in directory.glob(".snapshot-*"):
        stale.unlink()
    out = directory / snapshot_name(time.time() if now is None else now)
    size = save(client, out)
    existing = snapshots(directory)
    deleted = existing[: max(len(existing) - retain, 0)]
    for old in deleted:
        old.unlink()
    return out, size, deleted


def restore(client: hvac.Client, source: Path, *, force: bool = False) -> None:
    """Install a snapshot. Vault replaces ALL its data with the snapshot's."""
    data = read_bytes(source, "snapshot file")
    if not data.startswith(GZIP_MAGIC):
        raise KsecretsError(f"{source}: not a Vault raft snapshot (not gzip)")
    path = PATH + ("-force" if force else "")
    with vault_errors(client, path):
        if force:
            response = client.sys.force_restore_raft_snapshot(data)
        else:
            response = client.sys.restore_raft_snapshot(data)
    status = getattr(response, "status_code", 204)
    if status not in (200, 204):
        raise KsecretsError(f"Vault {address_of(client)}: {path}: HTTP {status}")

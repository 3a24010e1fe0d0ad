"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The temporary file is created in the target's own directory (so `os.replace` is a rename on one
file system), with the final mode from the start, and removed if anything fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from ksecrets.errors import KsecretsError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *,
                       durable: bool = True) -> None:
    """Write `data` to `path` atomically. `durable=False` skips the fsync: still atomic for every
    reader, but after a power cut the file may be the old one. Fine for files we can regenerate
    (k8s/ exports); stack files and key backups keep the fsync."""
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_bytes(path: str | os.PathLike[str], what: str = "file", *, source: str | None = None) -> bytes:
    """A file's bytes, or one line naming it (never its content) when it cannot be read."""
    name = source or str(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KsecretsError(f"{name}: {what} not found") from None
    except IsADirectoryError:
        raise KsecretsError(f"{name}: is a directory") from None
    except OSError as exc:
        raise KsecretsError(f"{name}: cannot read {what}: {exc.strerror}") from None


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)

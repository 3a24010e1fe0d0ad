"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The temporary file is created in the target's own directory (so `os.replace` is a rename on one
file system), with the final mode from the start, and removed if anything fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from ksecrets.errors import KsecretsError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write `data` to `path` atomically. `durable=False` skips the fsync: still atomic for every
    reader, but after a power cut the file may be the old one. Fine for files we can regenerate
    (k8s/ exports); stack files and key backups keep the fsync."""
    import stat
    import tempfile

    target = Path(path)
    try:
        existing = os.stat(target)  # through a symlink: what the write would replace
    except (FileNotFoundError, NotADirectoryError):
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        # A rename over /dev/null or /dev/stdout (a symlink to a pipe or terminal) would replace the
        # device node itself: as root, a broken machine. A whole file is written or nothing.
        raise KsecretsError(f"{target}: not a regular file (a device, pipe or directory); give the path of a file")
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


def read_bytes(
    path: str | os.PathLike[str], what: str = "file", *, source: str | None = None, regular: bool = False
) -> bytes:
    """A file's bytes, or one line naming it (never its content) when it cannot be read.
    `regular=True` (files a stack file names: certificates, keys) refuses a FIFO, a device or a
    directory before reading (`read_regular`); a path the user gives on the command line may be
    a pipe (`<(kubeseal --fetch-cert)`)."""
    name = source or str(path)
    try:
        return read_regular(path) if regular else Path(path).read_bytes()
    except FileNotFoundError:
        raise KsecretsError(f"{name}: {what} not found") from None
    except NotRegularFile as exc:
        raise KsecretsError(f"{name}: {what} is {exc.strerror}, not a regular file") from None
    except IsADirectoryError:
        raise KsecretsError(f"{name}: is a directory") from None
    except OSError as exc:
        raise KsecretsError(f"{name}: cannot read {what}: {exc.strerror}") from None


class NotRegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file is expected."""


def _kind(mode: int) -> str:
    import stat

    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """A regular file's bytes, refusing anything else before reading it: opened non-blocking (a
    FIFO with no writer would hold the open, a read would wait forever), checked with fstat on
    that descriptor (no race with a rename), then read. Raises OSError (`NotRegularFile` with
    `strerror` "a FIFO", "a directory"...)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(0, _kind(mode), str(path))
        os.set_blocking(fd, True)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


# --- serialised read-modify-write -----------------------------------------------------------------
#
# Every command that edits a file in place (a stack file, a SealedSecret given to --merge-into)
# holds an exclusive `flock` on the file itself from before it reads it until after its write.
# The file is replaced by a rename (a new inode), so a process that waited on the old inode finds,
# once it gets the lock, that the path now names another file: it drops the lock and takes the
# new one, then reads what the previous writer left. No lock file is left beside the user's file.
# Within one process the lock is re-entrant (a command locks, reads, computes and then calls a
# helper that locks again to write).

_held: dict[Path, int] = {}


def editable_target(path: str | os.PathLike[str], what: str = "file", *, source: str | None = None) -> Path:
    """The file an in-place edit of `path` writes: a symlink is followed (the link stays a link and
    its target changes); a file that is not writable is refused rather than replaced."""
    p = Path(path)
    name = source or str(path)
    try:
        real = p.resolve(strict=True)
    except FileNotFoundError:
        # The loader's words for a stack file ("no such stack file"), read_bytes' for the others.
        raise KsecretsError(
            f"{name}: no such stack file" if what == "stack file" else f"{name}: {what} not found"
        ) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise KsecretsError(
            f"{name}: cannot resolve the {what} ({getattr(exc, 'strerror', None) or 'symlink loop'})"
        ) from None
    if not real.is_file():
        raise KsecretsError(f"{name}: {what} is not a regular file")
    mode = real.stat().st_mode
    # root passes os.access whatever the mode, so the mode bits decide as well.
    if not (mode & 0o222) or not os.access(real, os.W_OK):
        raise KsecretsError(f"{name}: {what} is read-only; not changed (make it writable to edit it)")
    return real


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], what: str = "file", *, source: str | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on an existing file (symlinks followed) for a read-modify-write.

    Yields the real path to read and to write (`atomic_write_*`). Blocks while another process
    edits the same file."""
    real = editable_target(path, what, source=source)
    if real in _held:
        _held[real] += 1
        try:
            yield real
        finally:
            _held[real] -= 1
        return
    while True:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KsecretsError(f"{source or path}: {what} not found") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(real).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # replaced while we waited: lock the file that is there now
    _held[real] = 1
    try:
        yield real
    finally:
        del _held[real]
        os.close(fd)


# --- several files as one change ------------------------------------------------------------------


class Transaction:
    """Several atomic writes that stand or fall together: `keep(path)` records a file's bytes and
    mode before it is written; if the block raises, every kept file gets its bytes back (through
    a symlink: the link stays a link, its target is restored) and files created since are removed.

        with Transaction() as tx:
            tx.keep(a); atomic_write_bytes(a, ...)
            tx.keep(b); atomic_write_bytes(b, ...)   # fails: a is restored
    """

    def __init__(self) -> None:
        self._kept: dict[Path, tuple[bytes, int] | None] = {}

    def keep(self, path: str | os.PathLike[str]) -> Path:
        """Record the file's current bytes and mode (once; a missing file is removed on rollback).
        Returns the real path (symlinks resolved) that writes should go to."""
        real = Path(os.path.realpath(path))
        if real not in self._kept:
            try:
                st = real.stat()
                self._kept[real] = (real.read_bytes(), st.st_mode & 0o7777)
            except FileNotFoundError:
                self._kept[real] = None
        return real

    def rollback(self) -> None:
        errors = []
        for real, saved in reversed(list(self._kept.items())):
            try:
                if saved is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(real)
                    continue
                data, mode = saved
                try:
                    same = real.read_bytes() == data and (real.stat().st_mode & 0o7777) == mode
                except OSError:
                    same = False
                if not same:
                    atomic_write_bytes(real, data, mode)
            except OSError as exc:
                errors.append(f"{real}: {exc.strerror}")
        self._kept.clear()
        if errors:
            raise KsecretsError("could not restore " + "; ".join(errors))

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            try:
                self.rollback()
            except KsecretsError as failed:
                raise failed from exc
        else:
            self._kept.clear()

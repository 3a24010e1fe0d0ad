"""`fileio.atomic_write_bytes` replaces a file by rename: never a device, pipe or directory.

A path a user gives (`--age-key-out /dev/stdout`, `--out /dev/null`) renamed over would replace the
node itself: as root, /dev/null became a regular file. The write refuses with one line naming the
path, and leaves the node and its folder as they were (no temp file behind)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_bytes, atomic_write_text


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    return fifo


@pytest.mark.parametrize("how", ["fifo", "symlink to a fifo", "directory"])
def test_a_node_that_is_not_a_regular_file_is_refused_and_kept(tmp_path: Path, how: str):
    if how == "fifo":
        target = _fifo(tmp_path)
    elif how == "symlink to a fifo":
        fifo = _fifo(tmp_path)
        target = tmp_path / "stdout"
        target.symlink_to(fifo)
    else:
        target = tmp_path / "dir"
        target.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for write in (lambda: atomic_write_bytes(target, b"secret-bytes"), lambda: atomic_write_text(target, "x")):
        with pytest.raises(KsecretsError) as err:
            write()
        assert str(err.value) == f"{target}: not a regular file (a device, pipe or directory); give the path of a file"
        assert "secret" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if how != "directory":
        assert stat.S_ISFIFO(os.stat(target).st_mode)
    if how == "symlink to a fifo":
        assert target.is_symlink()


def test_a_regular_file_and_a_new_path_are_written(tmp_path: Path):
    existing = tmp_path / "a"
    existing.write_bytes(b"old")
    atomic_write_bytes(existing, b"new", 0o600)
    atomic_write_bytes(tmp_path / "sub" / "b", b"fresh")
    assert existing.read_bytes() == b"new" and stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert (tmp_path / "sub" / "b").read_bytes() == b"fresh"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "sub"]

"""The project folder: where `Pulumi.yaml` is, and so the stack files, `certs/` and `k8s/`.

Standard library only: every command resolves its default `--root` here, `seal` of one Secret
included (tests/cli/test_startup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_FILE = "Pulumi.yaml"


def project_root(start: str | os.PathLike[str] = ".") -> Path:
    """Found as git finds its top level: `start` or the nearest folder above it holding
    `Pulumi.yaml`, relative to the working directory (so messages stay short); `start` itself when
    no folder above holds one. Every command's default for `--root` (an explicit `--root` wins)."""
    here = Path(os.path.abspath(start))
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return Path(os.path.relpath(folder))
    return Path(start)

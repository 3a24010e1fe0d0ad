"""The names every reader and writer of stack files shares, defined once: the Pulumi project whose
keys a stack file holds (`k8s-secrets:`), and which files are stack files."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = "k8s-secrets"
PREFIX = f"{PROJECT}:"  # a stack file's keys of this project: `k8s-secrets:apps`, ...


def stack_files(root: str | os.PathLike[str] = ".") -> list[Path]:
    """`Pulumi.<stack>.yaml` under `root` (not the project file `Pulumi.yaml`), sorted."""
    return sorted(p for p in Path(root).glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")

#!/usr/bin/env python3
"""The CI preview matrix: one entry per stack file present (Pulumi.<stack>.yaml), never a list
written by hand, so a new stack is previewed from its first pull request.

    python3 .ci/stacks.py            prints matrix=[{"stack": ..., "kubeconfig": ...}, ...] for $GITHUB_OUTPUT
    python3 .ci/stacks.py --context S  prints the kubernetes:context stack S deploys to

Each entry names the repository secret that holds that stack's read-only kubeconfig:
KUBECONFIG_<STACK>_READONLY (upper case, "-" and "." as "_"). Standard library only: the matrix
job installs nothing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stacks() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")


def matrix() -> list[dict[str, str]]:
    return [
        {"stack": s, "kubeconfig": f"KUBECONFIG_{re.sub(r'[^A-Za-z0-9]', '_', s).upper()}_READONLY"} for s in stacks()
    ]


def context(stack: str) -> str:
    for line in (ROOT / f"Pulumi.{stack}.yaml").read_text().splitlines():
        m = re.match(r"^\s+kubernetes:context:\s*(\S+)\s*$", line)
        if m:
            return m.group(1).strip("'\"")
    raise SystemExit(f"stacks.py: Pulumi.{stack}.yaml: kubernetes:context: is required")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--context"] and len(sys.argv) == 3:
        print(context(sys.argv[2]))
    else:
        print("matrix=" + json.dumps(matrix(), separators=(",", ":")))

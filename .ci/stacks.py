#!/usr/bin/env python3
"""CI's stack matrices: one entry per stack file present (Pulumi.<stack>.yaml), never a list
written by hand, so a new stack is previewed from its first pull request and deployed once merged.

    python3 .ci/stacks.py            prints, for $GITHUB_OUTPUT,
                                     matrix=[{"stack": ..., "kubeconfig": ...}, ...] (the preview job) and
                                     up=[{"stack": ...}, ...] (the up job, in deploy order)
    python3 .ci/stacks.py --context S  prints the kubernetes:context stack S deploys to

The up job deploys one stack at a time, in the order of each stack file's `ci:upOrder` (an
integer, default 0; lower first, then by name): staging has 1 and production 2, so production
only goes after staging went through. `ksecrets stack new --from S` copies S's.

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


def up_order(stack: str) -> int:
    for line in (ROOT / f"Pulumi.{stack}.yaml").read_text().splitlines():
        m = re.match(r"^\s+ci:upOrder:\s*['\"]?(-?\d+)['\"]?\s*(#.*)?$", line)
        if m:
            return int(m.group(1))
    return 0


def up() -> list[dict[str, str]]:
    return [{"stack": s} for s in sorted(stacks(), key=lambda s: (up_order(s), s))]


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
        print("up=" + json.dumps(up(), separators=(",", ":")))

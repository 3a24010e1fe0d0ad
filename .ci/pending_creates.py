#!/usr/bin/env python3
"""After a killed `pulumi up`: the `pulumi refresh` arguments that import its creates in flight.

    pulumi stack export | python3 .ci/pending_creates.py | xargs pulumi refresh --yes --clear-pending-creates

With checkpoints, a create the killed run had sent but not seen answered stays in the state as a
pending create: the object may exist on the cluster, yet the state holds no resource for it.
Cleared, it would be an orphan whenever the next program no longer declares it (and with
pulumi-kubernetes 4.29+, which creates client-side, the next `up` fails AlreadyExists where the
program still declares it). Imported, `pulumi refresh` reads it: an object that exists becomes a
resource of the state (the next `up` updates or deletes it like any other), one that does not is
dropped. So each pending create of a Kubernetes object is printed as the pair
`--import-pending-creates <urn>` `--import-pending-creates <id>` (the CLI takes URN and ID as two
values of the flag), one argument per line; the provider's ID is `<namespace>/<name>`, or
`<name>` for a cluster-scoped object. Any other pending create (a provider, which the next `up`
makes again) is left to `--clear-pending-creates`. Nothing printed: no pending create.

Reads `pulumi stack export` JSON on stdin (the default `--show-secrets=false` is enough: names and
namespaces are never secret). Standard library only. Exit 2, one line, when stdin is not an export.
README "Pulumi at a thousand apps" (after a killed up).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def pending_creates(export: dict[str, Any]) -> list[tuple[str, str]]:
    """(URN, provider ID) of each pending create of a Kubernetes object, in the state's order."""
    pairs = []
    for op in export.get("deployment", {}).get("pending_operations") or []:
        resource = op.get("resource") or {}
        if op.get("type") != "creating" or not str(resource.get("type", "")).startswith("kubernetes:"):
            continue
        meta = (resource.get("inputs") or {}).get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or not name:
            continue  # not a plain value (never for this program's objects): left to --clear-pending-creates
        pairs.append((resource["urn"], f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name))
    return pairs


def main() -> int:
    try:
        export = json.load(sys.stdin)
        if not isinstance(export, dict) or "deployment" not in export:
            raise ValueError("no 'deployment'")
        pairs = pending_creates(export)
    except (ValueError, KeyError, AttributeError) as e:
        print(f"pending_creates: stdin is not the output of `pulumi stack export` ({e})", file=sys.stderr)
        return 2
    for urn, id_ in pairs:
        print(f"--import-pending-creates\n{urn}\n--import-pending-creates\n{id_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

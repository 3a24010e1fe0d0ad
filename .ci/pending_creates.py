#!/usr/bin/env python3
"""After a killed `pulumi up`: its creates in flight made resources of the state, for `pulumi refresh`.

    pulumi stack export | python3 .ci/pending_creates.py | pulumi stack import
    pulumi refresh --yes

With checkpoints, a create the killed run had sent but not seen answered stays in the state as a
*pending create*: the object may exist on the cluster, yet the state holds no resource for it.
Cleared (`pulumi refresh --clear-pending-creates`, or `pulumi stack import`, which drops every
pending operation), it is an orphan whenever the next program no longer declares it, and with
pulumi-kubernetes 4.29+, which creates client-side, the next `up` fails AlreadyExists where the
program still declares it. The CLI's own `pulumi refresh --import-pending-creates <urn> <id>`
turns it into a pending *import*, which the refresh of CLI 3.274.0 then drops like any other
pending operation (tests/e2e/test_pulumi_crash.py saw the objects created again by the next `up`).

So this edits the export, as Pulumi's docs do by hand for pending operations: each pending
create of a Kubernetes object becomes a resource of the state (its URN, inputs, parent, provider
and dependencies as the pending operation recorded them; its ID the provider's, `<namespace>/<name>`
or `<name>` for a cluster-scoped object; no outputs yet), appended after every resource (nothing
can depend on a create that never finished). `pulumi stack import` verifies the state's integrity
and drops the other pending operations (a provider's create, an update or a delete: the next
`up` does them again). `pulumi refresh` then reads each object: one that exists gets its live
state (and the next `up` updates it, or deletes it if the program no longer declares it), one
that does not is dropped from the state.

Reads `pulumi stack export` JSON on stdin, writes the edited export on stdout (the same document
when nothing is pending; ciphertext stays ciphertext: never run the export with
`--show-secrets`). Prints the count on stderr. Standard library only. Exit 2, one line and
nothing on stdout (so `pulumi stack import` fails on empty input and changes nothing) when stdin
is not an export. README "Pulumi at a thousand apps" (after a killed `up`).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def provider_id(resource: dict[str, Any]) -> str | None:
    """pulumi-kubernetes' ID of the object a pending create was making, or None if not knowable."""
    meta = (resource.get("inputs") or {}).get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def resolve(export: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The export with each pending create of a Kubernetes object moved into its resources.
    Returns it and the URNs moved."""
    deployment = export["deployment"]
    if not isinstance(deployment, dict):
        raise ValueError("'deployment' is not an object")
    resources = list(deployment.get("resources") or [])
    known = {r.get("urn") for r in resources}
    left, moved = [], []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource") or {}
        id_ = provider_id(resource)
        if (
            op.get("type") != "creating"
            or not str(resource.get("type", "")).startswith("kubernetes:")
            or not resource.get("custom")
            or id_ is None
            or resource.get("urn") in known
        ):
            left.append(op)
            continue
        resources.append({**resource, "id": id_, "outputs": {}})
        known.add(resource["urn"])
        moved.append(resource["urn"])
    if not moved:
        return export, []
    return {**export, "deployment": {**deployment, "resources": resources, "pending_operations": left}}, moved


def main() -> int:
    try:
        export = json.load(sys.stdin)
        if not isinstance(export, dict) or "deployment" not in export:
            raise ValueError("no 'deployment'")
        resolved, moved = resolve(export)
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        print(f"pending_creates: stdin is not the output of `pulumi stack export` ({e})", file=sys.stderr)
        return 2
    json.dump(resolved, sys.stdout, indent=4)
    sys.stdout.write("\n")
    print(f"pending_creates: {len(moved)} pending creates of Kubernetes objects made resources", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

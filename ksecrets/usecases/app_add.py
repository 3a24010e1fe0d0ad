"""`app add`: one app more in a stack's `k8s-secrets:apps` (or its apps file after `stack split`),
checked by the config loader before the atomic write."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ksecrets.config.names import PREFIX
from ksecrets.config.stackfile import stack_file_path
from ksecrets.errors import KsecretsError


def app_add(root: str | os.PathLike[str], stack: str, app: Mapping[str, Any]) -> str:
    """Add `app`; returns the file changed, as messages name it (the apps file after `stack split`)."""
    from ksecrets.config.load import parse, raw_from_text
    from ksecrets.config.stackfile import APPS, edit_stack_file
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path = stack_file_path(stack, root)

    def mutate(config) -> None:
        apps = config.get(APPS)
        if apps is None and config.get(PREFIX + "extends"):
            # The stack's own list would replace the inherited one (environments.py): never silently.
            raise KsecretsError(
                f"{path.name}: its apps come from {config[PREFIX + 'extends']}: add the app there (every cluster of the "
                "environment gets it), or give this stack its own k8s-secrets:apps list first"
            )
        if apps is None:
            apps = config[APPS] = CommentedSeq()
        if any(
            isinstance(a, Mapping) and a.get("name") == app["name"] and a.get("namespace") == app["namespace"]
            for a in apps
        ):
            raise KsecretsError(f"{path.name}: app {app['namespace']}/{app['name']} already exists")
        node = CommentedMap()
        for k, v in app.items():
            if isinstance(v, dict):
                m = CommentedMap()
                m.update(v)
                v = m
            elif isinstance(v, list):
                v = CommentedSeq([_cm(x) for x in v])
            node[k] = v
        apps.append(node)

    def check(text: str) -> None:
        parse(raw_from_text(text, path.name), stack=stack, source=path.name, root=str(root))

    return " and ".join(edit_stack_file(path, mutate, check=check)) or path.name


def _cm(x):
    from ruamel.yaml.comments import CommentedMap

    if isinstance(x, dict):
        m = CommentedMap()
        for k, v in x.items():
            m[k] = _cm(v)
        return m
    return x

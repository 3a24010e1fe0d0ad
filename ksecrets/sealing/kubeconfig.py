"""The namespace kubeseal would seal for when a Secret has none: the current kubectl context's.

kubeseal calls client-go's `clientConfig.Namespace()`: the `namespace` of the kubeconfig's
current context, else `default`. This reads the same file (`$KUBECONFIG`, a `:`-separated list
where the first `current-context` and the first context of a name win, else `~/.kube/config`)
and never contacts a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ksecrets import yamlio
from ksecrets.errors import KsecretsError


def _files(env: Mapping[str, str]) -> list[Path]:
    raw = env.get("KUBECONFIG") or ""
    if raw:
        return [Path(p) for p in raw.split(os.pathsep) if p]
    home = env.get("HOME") or os.path.expanduser("~")
    return [Path(home) / ".kube" / "config"]


def current_namespace(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(namespace, where it came from), as kubeseal finds it offline."""
    env = os.environ if env is None else env
    docs = []
    for path in _files(env):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError):
            raise KsecretsError(f"{path}: cannot read the kubeconfig") from None
        doc = yamlio.load(text, str(path))
        if isinstance(doc, dict):
            docs.append((path, doc))
    current = next((d.get("current-context") for _, d in docs if d.get("current-context")), None)
    if current:
        for path, doc in docs:
            for ctx in doc.get("contexts") or []:
                if isinstance(ctx, dict) and ctx.get("name") == current:
                    ns = (ctx.get("context") or {}).get("namespace") if isinstance(ctx.get("context"), dict) else None
                    if isinstance(ns, str) and ns:
                        return ns, f"the namespace of kubectl context {current!r} ({path})"
                    return "default", f"kubectl context {current!r} sets no namespace"
    return "default", "no kubectl context"

"""The Vault Secrets Operator's objects in a cluster, read with `kubectl` (the user's kubeconfig and
its credentials, exec plugins included, as `kubectl` itself reaches the stack's cluster).

Used before `migrate --finish` uninstalls the operator after a move away from Vault: removing the
operator's CRDs deletes every VaultStaticSecret, and the garbage collector then deletes each Secret
that still carries a VaultStaticSecret's ownerReference (the operator sets it at every sync). Only
names are read and reported, never a Secret's data.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ksecrets.errors import KsecretsError

STATIC_SECRETS = "vaultstaticsecrets.secrets.hashicorp.com"
TIMEOUT = 60  # seconds for one `kubectl get`
NO_CRD = "the server doesn't have a resource type"  # kubectl's words when the CRD is gone

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


@dataclass(frozen=True)
class StaticSecret:
    namespace: str
    name: str
    secret: str  # spec.destination.name: the Secret it writes (and owns)

    def orphan_command(self, context: str | None) -> str:
        """The command that deletes it and leaves its Secret (the garbage collector removes the
        ownerReference from the Secret instead of deleting it)."""
        return orphan_delete_command(context, self.namespace, self.name)


def orphan_delete_command(context: str | None, namespace: str, name: str) -> str:
    ctx = f" --context {context}" if context else ""
    return f"kubectl{ctx} delete vaultstaticsecret -n {namespace} {name} --cascade=orphan"


def _run(argv: Sequence[str]) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run(list(argv), capture_output=True, timeout=TIMEOUT)


def static_secrets(context: str | None, *, kubectl: str = "kubectl", run: Runner = _run) -> list[StaticSecret]:
    """Every VaultStaticSecret in the cluster of kubeconfig context `context` (None: the current one),
    sorted; none when the operator's CRD is not installed. A cluster that cannot be asked is an error:
    the caller must not read "could not look" as "none left"."""
    argv = [
        kubectl,
        *(["--context", context] if context else []),
        "get",
        STATIC_SECRETS,
        "--all-namespaces",
        "-o",
        "json",
    ]
    shown = f"kubectl{' --context ' + context if context else ''} get vaultstaticsecrets --all-namespaces"
    try:
        res = run(argv)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KsecretsError(f"{shown}: cannot run ({type(exc).__name__})") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip()
        if NO_CRD in err:
            return []  # no CRD, so no VaultStaticSecret can exist
        last = (err.splitlines() or ["no message"])[-1][:200]
        raise KsecretsError(f"{shown}: failed: {last}")
    try:
        body: Any = json.loads(res.stdout)
        items = body["items"]
        out = [
            StaticSecret(
                str(i["metadata"]["namespace"]),
                str(i["metadata"]["name"]),
                str(((i.get("spec") or {}).get("destination") or {}).get("name") or ""),
            )
            for i in items
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KsecretsError(f"{shown}: the answer is not a list of VaultStaticSecrets") from None
    return sorted(out, key=lambda s: (s.namespace, s.name))

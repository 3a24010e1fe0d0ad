"""What the API server and etcd refuse, whatever the stack: the size limits of a Secret and of an
object, and the rules for `metadata.name` by kind. Pure functions on one object (a dict), standard
library only: the export's checks (`ksecrets.usecases.preflight`) and `ksecrets seal`, which must
not load the config model or the builders to use them (tests/cli/test_startup.py), share them.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Mapping

from ksecrets import validators as v
from ksecrets.sealing import crypto  # the kubeseal format: its one home (standard library only at import)

MAX_SECRET_BYTES = 1024 * 1024  # corev1 MaxSecretSize: the sum of the data values
ETCD_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes
SERVER_HEADROOM_BYTES = 64 * 1024  # managedFields, status, resourceVersion... added by the server
MAX_OBJECT_BYTES = ETCD_REQUEST_BYTES - SERVER_HEADROOM_BYTES

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CRONJOB_NAME_MAX = 52  # the CronJob controller appends 11 characters for its Jobs
_PATH_SEGMENT_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
_LABEL_NAME_KINDS = {"Namespace", "Service"}


def name_problem(obj: Mapping[str, Any]) -> str | None:
    """`metadata.name` (and namespace, label values) by the API server's rules for the kind."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return "metadata.name is required"
    if kind in _PATH_SEGMENT_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            return f"metadata.name \"{name}\" may not be '.', '..' or contain '/' or '%'"
    elif kind in _LABEL_NAME_KINDS:
        if v.dns_label(name):
            return f'metadata.name "{name}" is not a DNS-1123 label (lower case, at most 63 characters)'
    elif v.dns_subdomain(name):
        return f'metadata.name "{name}" is not a DNS-1123 subdomain (lower case, at most 253 characters)'
    if kind == "CronJob" and len(name) > _CRONJOB_NAME_MAX:
        return f'metadata.name "{name}" is longer than {_CRONJOB_NAME_MAX} characters (CronJob)'
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or v.dns_label(namespace)):
        return f'metadata.namespace "{namespace}" is not a DNS-1123 label'
    for key, value in (meta.get("labels") or {}).items():
        if v.qualified_name(str(key)):
            return f'metadata.labels: "{key}" is not a valid label key'
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            return f'metadata.labels.{key}: "{value}" is not a valid label value'
    return None


def _unresolved(value: object) -> str:
    """A value not known before Pulumi resolves it (a manual value's secret Output) counts as
    empty, as in the plan the exporter checks; never str() of it (the SDK warns on that)."""
    return ""


def size_problem(obj: Mapping[str, Any]) -> str | None:
    """A Secret (or the Secret a SealedSecret becomes) over 1 MiB of data, or an object over the
    request limit."""
    if obj.get("kind") == "SealedSecret":
        enc = (obj.get("spec") or {}).get("encryptedData") or {}
        total = sum(crypto.sealed_plaintext_bytes(val) or 0 for val in enc.values() if isinstance(val, str))
        if total > MAX_SECRET_BYTES:
            return (
                f"its Secret would hold {total} bytes of data, over Kubernetes' {MAX_SECRET_BYTES}-byte "
                "(1 MiB) Secret limit; split it into several Secrets"
            )
    elif obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
        total = sum(len(base64.b64decode(val)) for val in (obj.get("data") or {}).values() if isinstance(val, str))
        total += sum(len(val.encode()) for val in (obj.get("stringData") or {}).values() if isinstance(val, str))
        if total > MAX_SECRET_BYTES:
            return f"{total} bytes of data, over Kubernetes' {MAX_SECRET_BYTES}-byte (1 MiB) Secret limit"
    size = len(json.dumps(obj, separators=(",", ":"), default=_unresolved).encode("utf-8"))
    if size > MAX_OBJECT_BYTES:
        return (
            f"the object is {size} bytes, over the {MAX_OBJECT_BYTES}-byte limit (etcd's 1.5 MiB request "
            "limit less room for what the API server adds); split it"
        )
    return None

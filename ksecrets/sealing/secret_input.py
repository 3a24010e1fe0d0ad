"""A v1 Secret read from YAML or JSON, checked the way the API server and kubeseal would.

`data` (base64) and `stringData` (plain) are both honoured; a key in both takes the `stringData`
value, as the API server does. Keys must pass `IsConfigMapKey`; the values together must stay
within Kubernetes' 1 MiB Secret limit. Errors name the source, the key and the line where known,
never a value.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.envfile import config_map_key_problem

MAX_SECRET_BYTES = 1024 * 1024  # corev1 MaxSecretSize
SCOPE_ANNOTATIONS = {
    "namespace-wide": "sealedsecrets.bitnami.com/namespace-wide",
    "cluster-wide": "sealedsecrets.bitnami.com/cluster-wide",
}
# Written by `kubectl apply` / kubecfg with a full copy of the object: sealing them would leak the
# plaintext (upstream StripLastAppliedAnnotations, sealed-secrets#227).
LAST_APPLIED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)


class SecretInput:
    """A v1 Secret as read from input. A plain class, not a dataclass: `dataclasses` (and the
    `inspect` it imports) would be a tenth of `ksecrets seal`'s start-up."""

    __slots__ = ("name", "namespace", "type", "labels", "annotations", "immutable", "data")

    def __init__(
        self,
        name: str,
        namespace: str,
        type: str = "Opaque",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        immutable: bool | None = None,
        data: dict[str, bytes] | None = None,
    ) -> None:
        self.name, self.namespace, self.type = name, namespace, type
        self.labels = {} if labels is None else labels
        self.annotations = {} if annotations is None else annotations
        self.immutable = immutable
        self.data = {} if data is None else data

    def _key(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretInput) and self._key() == other._key()

    def __repr__(self) -> str:  # never the values
        return f"SecretInput(name={self.name!r}, namespace={self.namespace!r}, keys={sorted(self.data)!r})"


def scope_from_annotations(annotations: Mapping[str, str] | None) -> str:
    """Upstream `SecretScope`: cluster-wide wins over namespace-wide; otherwise strict."""
    annotations = annotations or {}
    if annotations.get(SCOPE_ANNOTATIONS["cluster-wide"]) == "true":
        return "cluster-wide"
    if annotations.get(SCOPE_ANNOTATIONS["namespace-wide"]) == "true":
        return "namespace-wide"
    return "strict"


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJSONKey(key)
        out[key] = value
    return out


class _DuplicateJSONKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _json_depth(text: str) -> int:
    """The deepest nesting of `[`/`{` outside JSON strings (before parsing: json recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_document(text: str, source: str) -> Any:
    """One YAML or JSON document; several documents, or none, are an error."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise KsecretsError(f"{source}: empty input")
    if stripped.startswith(("{", "[")):
        if stripped.count("[") + stripped.count("{") > yamlio.MAX_DEPTH:
            depth = _json_depth(stripped)
            if depth > yamlio.MAX_DEPTH:
                raise KsecretsError(f"{source}: invalid JSON: nested more than {yamlio.MAX_DEPTH} levels deep")
        try:
            return json.loads(stripped, object_pairs_hook=_json_pairs)
        except RecursionError:
            raise KsecretsError(f"{source}: invalid JSON: nested too deep") from None
        except _DuplicateJSONKey as exc:
            raise KsecretsError(f"{source}: invalid JSON: duplicate key {exc.key!r}") from None
        except json.JSONDecodeError as exc:
            # exc.msg is the parser's own words; exc.doc (the input) is never shown.
            line = exc.lineno + text[: len(text) - len(stripped)].count("\n")
            raise KsecretsError(f"{source}: line {line}: invalid JSON: {exc.msg}") from None
    docs = yamlio.load_all(text, source)
    if len(docs) != 1:
        raise KsecretsError(f"{source}: expected exactly one document, found {len(docs)}")
    return docs[0]


def _string_map(obj: Any, source: str, path: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise KsecretsError(f"{source}: {path}: expected a mapping")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise KsecretsError(f"{source}: {path}: keys must be strings")
        if not isinstance(value, str):
            raise KsecretsError(f"{source}: {path}.{key}: expected a string, found {type(value).__name__} (quote it)")
    return dict(obj)


def check_key(key: str, source: str, path: str) -> None:
    problem = config_map_key_problem(key)
    if problem:
        shown = key if len(key) <= 64 else key[:64] + "..."
        raise KsecretsError(f"{source}: {path}: invalid key name {shown!r}: {problem}")


def check_size(data: Mapping[str, bytes], source: str, path: str = "data") -> None:
    total = 0
    for key, value in data.items():
        if len(value) > MAX_SECRET_BYTES:
            raise KsecretsError(
                f"{source}: {path}.{key}: value is {len(value)} bytes, over Kubernetes' 1 MiB Secret limit"
            )
        total += len(value)
    if total > MAX_SECRET_BYTES:
        raise KsecretsError(f"{source}: {path}: values total {total} bytes, over Kubernetes' 1 MiB Secret limit")


def secret_from_object(obj: Any, source: str) -> SecretInput:
    if not isinstance(obj, dict):
        raise KsecretsError(f"{source}: expected a v1 Secret object")
    kind, api = obj.get("kind"), obj.get("apiVersion")
    if kind != "Secret" or api != "v1":
        raise KsecretsError(f"{source}: expected apiVersion v1, kind Secret; found {api!s}/{kind!s}")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise KsecretsError(f"{source}: metadata: expected a mapping")
    name = meta.get("name") or ""
    namespace = meta.get("namespace") or ""
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise KsecretsError(f"{source}: metadata.name and metadata.namespace must be strings")
    labels = _string_map(meta.get("labels"), source, "metadata.labels")
    annotations = _string_map(meta.get("annotations"), source, "metadata.annotations")
    for key in LAST_APPLIED_ANNOTATIONS:
        annotations.pop(key, None)
    secret_type = obj.get("type") or "Opaque"
    if not isinstance(secret_type, str):
        raise KsecretsError(f"{source}: type: expected a string")
    immutable = obj.get("immutable")
    if immutable is not None and not isinstance(immutable, bool):
        raise KsecretsError(f"{source}: immutable: expected true or false")

    data: dict[str, bytes] = {}
    for key, value in _string_map(obj.get("data"), source, "data").items():
        check_key(key, source, "data")
        try:
            data[key] = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise KsecretsError(f"{source}: data.{key}: not valid base64 (use stringData for plain text)") from None
    for key, value in _string_map(obj.get("stringData"), source, "stringData").items():
        check_key(key, source, "stringData")
        data[key] = value.encode("utf-8")
    check_size(data, source)
    return SecretInput(name, namespace, secret_type, labels, annotations, immutable, data)


def read_secret(text: str, source: str = "stdin") -> SecretInput:
    return secret_from_object(load_document(text, source), source)

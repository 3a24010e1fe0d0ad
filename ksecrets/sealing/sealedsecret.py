"""SealedSecret objects as `kubeseal` writes them (upstream `NewSealedSecret`, `SealMergingInto`, `Unseal`).

Where things go, as upstream does it:
- `metadata`: name, namespace and the scope annotation (`sealedsecrets.bitnami.com/namespace-wide`
  or `/cluster-wide: "true"`), which the controller reads to pick the decryption label. ksecrets adds
  `ksecrets.io/sealing-certificate: SHA256:...`, the fingerprint of the certificate that sealed
  every value, so `ksecrets verify` can find stale objects offline.
- `spec.encryptedData`: one ciphertext per key, keys sorted.
- `spec.template`: the Secret's metadata (name, namespace, labels, annotations, scope annotation
  included, last-applied annotations stripped), `type` and `immutable`.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from ksecrets.errors import KsecretsError
from ksecrets.sealing import crypto
from ksecrets.sealing.certs import SealingCert
from ksecrets.sealing.secret_input import SCOPE_ANNOTATIONS, SecretInput, load_document, scope_from_annotations

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
CERT_ANNOTATION = "ksecrets.io/sealing-certificate"


def scope_annotations(scope: str) -> dict[str, str]:
    crypto.check_scope(scope)
    return {SCOPE_ANNOTATIONS[scope]: "true"} if scope in SCOPE_ANNOTATIONS else {}


def _with_scope(annotations: Mapping[str, str] | None, scope: str) -> dict[str, str]:
    """Upstream `UpdateScopeAnnotations`: drop both scope annotations, then set the one for `scope`."""
    out = {k: v for k, v in (annotations or {}).items() if k not in SCOPE_ANNOTATIONS.values()}
    out.update(scope_annotations(scope))
    return out


def build_sealed_secret(
    *,
    name: str,
    namespace: str,
    scope: str,
    encrypted_data: Mapping[str, str],
    secret_type: str = "Opaque",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    immutable: bool | None = None,
    fingerprint: str | None = None,
    own_labels: Mapping[str, str] | None = None,
) -> dict:
    """The exported SealedSecret for already-encrypted values (a plain dict, Kubernetes key order).

    `labels` and `annotations` are the Secret's (they go into `spec.template.metadata`: the
    controller builds the Secret's metadata from the template only, never from the SealedSecret's
    own); `own_labels` label the SealedSecret object itself (`metadata.labels`).
    """
    crypto.check_scope(scope)
    if not name:
        raise KsecretsError("SealedSecret: name is required")
    if not namespace and scope != "cluster-wide":
        raise KsecretsError(f"SealedSecret {name}: a {scope}-scoped SealedSecret must declare a namespace")
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if own_labels:
        meta["labels"] = dict(sorted(own_labels.items()))
    own = scope_annotations(scope)
    if fingerprint:
        own[CERT_ANNOTATION] = fingerprint
    if own:
        meta["annotations"] = dict(sorted(own.items()))

    tmeta: dict[str, Any] = {"name": name}
    if namespace:
        tmeta["namespace"] = namespace
    if labels:
        tmeta["labels"] = dict(sorted(labels.items()))
    tanno = _with_scope(annotations, scope)
    if tanno:
        tmeta["annotations"] = dict(sorted(tanno.items()))
    template: dict[str, Any] = {"metadata": tmeta, "type": secret_type or "Opaque"}
    if immutable is not None:
        template["immutable"] = bool(immutable)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": {
            "encryptedData": {k: encrypted_data[k] for k in sorted(encrypted_data)},
            "template": template,
        },
    }


def resolve_scope(secret: SecretInput, scope: str | None) -> str:
    """An explicit --scope wins; otherwise the Secret's own scope annotations (as kubeseal)."""
    return crypto.check_scope(scope) if scope else scope_from_annotations(secret.annotations)


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_names(name: str, namespace: str, source: str) -> None:
    """The API server's rules: a Secret's name is a DNS subdomain, its namespace a DNS label (the
    same rules as `ksecrets.validators`, with the API server's own wording)."""
    for field, value, pattern, limit, what in (
        ("metadata.name", name, _DNS1123_SUBDOMAIN, 253, ""),
        ("metadata.namespace", namespace, _DNS1123_LABEL, 63, " (lower-case DNS-1123 label, at most 63 characters)"),
    ):
        if value and (len(value) > limit or not pattern.fullmatch(value)):
            shown = value if len(value) <= 64 else value[:64] + "..."
            raise KsecretsError(f'{source}: {field}: "{shown}" is not a valid Kubernetes name{what}')


def check_namespace(namespace: str, scope: str, source: str) -> None:
    if not namespace and scope != "cluster-wide":
        raise KsecretsError(f"{source}: metadata.namespace: missing; a {scope}-scoped Secret must declare a namespace")


def encrypt_all(
    cert: SealingCert, data: Mapping[str, bytes], *, scope: str, namespace: str, name: str
) -> dict[str, str]:
    label = crypto.label_for(scope, namespace, name)
    return {key: crypto.encrypt_value(cert.public_key, data[key], label) for key in sorted(data)}


def seal_secret(secret: SecretInput, cert: SealingCert, *, scope: str | None = None, source: str = "stdin") -> dict:
    """kubeseal's offline `Seal`: a Secret in, a SealedSecret out."""
    if not secret.name:
        raise KsecretsError(f"{source}: metadata.name: missing")
    check_names(secret.name, secret.namespace, source)
    scope = resolve_scope(secret, scope)
    check_namespace(secret.namespace, scope, source)
    encrypted = encrypt_all(cert, secret.data, scope=scope, namespace=secret.namespace, name=secret.name)
    return build_sealed_secret(
        name=secret.name,
        namespace=secret.namespace,
        scope=scope,
        encrypted_data=encrypted,
        secret_type=secret.type,
        labels=secret.labels,
        annotations=secret.annotations,
        immutable=secret.immutable,
        fingerprint=cert.fingerprint,
    )


def parse_sealed_secret(text: str, source: str) -> dict:
    obj = load_document(text, source)
    if not isinstance(obj, dict) or obj.get("kind") != KIND or obj.get("apiVersion") != API_VERSION:
        raise KsecretsError(f"{source}: expected apiVersion {API_VERSION}, kind {KIND}")
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise KsecretsError(f"{source}: metadata.name: missing")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise KsecretsError(f"{source}: spec: missing")
    if spec.get("data") is not None:
        raise KsecretsError(f"{source}: spec.data: the deprecated v1 format is not supported")
    enc = spec.get("encryptedData")
    if not isinstance(enc, dict):
        raise KsecretsError(f"{source}: spec.encryptedData: expected a mapping")
    for key, value in enc.items():
        problem = crypto.sealed_value_problem(value)
        if problem:  # never the value: it may be a secret pasted in the clear
            raise KsecretsError(f"{source}: spec.encryptedData.{key}: {problem}")
    return obj


def sealed_scope(obj: Mapping[str, Any]) -> str:
    return scope_from_annotations((obj.get("metadata") or {}).get("annotations"))


def merge_sealed(orig: dict, update: dict, source: str) -> dict:
    """kubeseal's `SealMergingInto`: only the given keys (and template labels/annotations) change."""
    if sealed_scope(orig) != sealed_scope(update):
        raise KsecretsError(
            f"{source}: is {sealed_scope(orig)}-scoped but the new values are {sealed_scope(update)}-scoped; pass --scope {sealed_scope(orig)}"
        )
    old_fp = (orig["metadata"].get("annotations") or {}).get(CERT_ANNOTATION)
    new_fp = (update["metadata"].get("annotations") or {}).get(CERT_ANNOTATION)
    if old_fp and new_fp and old_fp != new_fp:
        raise KsecretsError(
            f"{source}: its values were sealed for certificate {old_fp}, not {new_fp}; merging would mix certificates (re-seal the whole Secret)"
        )
    merged = dict(orig)
    spec = dict(orig["spec"])
    enc = dict(spec.get("encryptedData") or {})
    enc.update(update["spec"]["encryptedData"])
    spec["encryptedData"] = {k: enc[k] for k in sorted(enc)}
    template = dict(spec.get("template") or {})
    tmeta = dict(template.get("metadata") or {})
    new_tmeta = update["spec"]["template"].get("metadata") or {}
    for field in ("labels", "annotations"):
        if new_tmeta.get(field):
            combined = dict(tmeta.get(field) or {})
            combined.update(new_tmeta[field])
            tmeta[field] = dict(sorted(combined.items()))
    if tmeta:
        template["metadata"] = tmeta
    spec["template"] = template
    merged["spec"] = spec
    return merged


def unseal(obj: Mapping[str, Any], private_keys: Iterable[rsa.RSAPrivateKey], source: str) -> dict:
    """The Secret the controller would create (without owner references), like `kubeseal --recovery-unseal`."""
    keys = list(private_keys)
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "") or ""
    scope = sealed_scope(obj)
    label = crypto.label_for(scope, namespace, name)
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    if template.get("data"):
        raise KsecretsError(f"{source}: spec.template.data: templated keys are not supported offline")
    data: dict[str, str] = {}
    for key in sorted(spec.get("encryptedData") or {}):
        try:
            plain = crypto.decrypt_value(keys, spec["encryptedData"][key], label)
        except crypto.DecryptError as exc:
            raise KsecretsError(
                f"{source}: spec.encryptedData.{key}: {exc} (sealed {scope} for {namespace or '*'}/{name})"
            ) from None
        data[key] = base64.b64encode(plain).decode("ascii")
    tmeta = template.get("metadata") or {}
    smeta: dict[str, Any] = {"name": name}
    if namespace:
        smeta["namespace"] = namespace
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            smeta[field] = dict(tmeta[field])
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": smeta}
    if template.get("immutable") is not None:
        secret["immutable"] = template["immutable"]
    secret["data"] = data
    secret["type"] = template.get("type") or "Opaque"
    return secret

"""Schema validation of every object we emit, offline.

- Core kinds: the strict JSON schemas shipped in the `kubernetes-validate` package (the same
  files its `validate(..., strict=True)` uses), for `KUBERNETES_VERSION`. Strict means unknown
  fields are errors, as `kubectl apply --validate=strict` treats them.
- CRD kinds: the `openAPIV3Schema` of the vendored upstream CRDs in `ksecrets/schemas/crds/`,
  with jsonschema's Draft 7 validator.
- Any other kind is an error: an object we cannot check is an object we do not emit.

Validators are built once per kind and cached: kubernetes-validate re-reads its 1.4 MB
definitions file on every call, which would dominate an export of thousands of objects.
jsonschema does not evaluate `x-kubernetes-validations` (CEL) rules or apply defaults; the
builders set every required field explicitly.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import jsonschema
from ksecrets import yamlio
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.33"
_CRD_DIR = Path(__file__).parent / "schemas" / "crds"


class UnknownKind(Exception):
    pass


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → openAPIV3Schema, for every served version of every vendored CRD."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(_CRD_DIR.glob("*.yaml")):
        for crd in yamlio.load_all(path.read_text(encoding="utf-8"), path.name):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


def _core_dir() -> Any:
    return resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}.0-local-strict"


@functools.cache
def _core_registry() -> Registry:
    definitions = json.loads((_core_dir() / "_definitions.json").read_text(encoding="utf-8"))
    return Resource.from_contents(definitions) @ Registry()


def _core_schema_file(api_version: str, kind: str) -> Any:
    # kubernetes-validate's naming: rbac.authorization.k8s.io/v1 → rbac-v1; v1 → v1.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return _core_dir() / f"{kind.lower()}-{api}.json"


@functools.cache
def _definitions() -> dict[str, Any]:
    return json.loads((_core_dir() / "_definitions.json").read_text(encoding="utf-8"))["$defs"]


def _inline(schema: Any, trail: tuple[str, ...] = ()) -> Any:
    """Replace `$ref`s into `_definitions.json` by the definitions themselves (once per kind).

    jsonschema resolves a `$ref` through the registry on every visit, which made validation the
    bulk of an export; the inlined schema validates identically. A recursive definition (none in
    the kinds we emit) keeps its `$ref`, resolved by the registry as before.
    """
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            name = ref.split("#/$defs/", 1)[1]
            if name in trail:
                return {**schema, "$ref": f"/api/_definitions.json#/$defs/{name}"}
            rest = {k: _inline(v, trail) for k, v in schema.items() if k != "$ref"}
            return {**_inline(_definitions()[name], (*trail, name)), **rest}
        return {k: _inline(v, trail) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, trail) for v in schema]
    return schema


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    crd = _crd_schemas().get((api_version, kind))
    if crd is not None:
        return jsonschema.Draft7Validator(crd)
    schema_file = _core_schema_file(api_version, kind)
    if "." in api_version.split("/")[0] and not api_version.split("/")[0].endswith(".k8s.io"):
        raise UnknownKind(f"{api_version} {kind}")
    try:
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownKind(f"{api_version} {kind}") from None
    return jsonschema.Draft202012Validator(_inline(schema), registry=_core_registry())


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(root)"


def errors(obj: dict[str, Any]) -> Iterator[str]:
    """Each problem of one object as `<path>: <message>`; nothing when it is valid."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        yield "(root): apiVersion and kind are required"
        return
    try:
        validator = _validator(api_version, kind)
    except UnknownKind:
        yield f"(root): no schema for {api_version} {kind}; unknown kinds are not exported"
        return
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        # Messages quote the offending value; exported objects hold no secret values (Secrets
        # with data are refused before validation), and the message is cut short anyway.
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        yield f"{_where(error)}: {message}"


def known_kinds() -> set[tuple[str, str]]:
    return set(_crd_schemas())

"""The policy logic as plain functions over (Pulumi type token, props): no Pulumi import.

Each check returns the list of violation messages for one resource (empty: compliant). The
PolicyPack in `__main__.py` wraps them (see `pack.py`); tests call them on the resources the
program registers under Pulumi mocks. Messages name the object and the field, never a value.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

# The one "pinned version" rule (exact SemVer, no `v`), shared with the stack-file loader.
from ksecrets.validators import is_exact_version

# The one list of backends (the Pulumi CLI runs the pack with the project's .venv, where ksecrets is installed).
from ksecrets import backends

BACKENDS = backends.BACKENDS  # the pack's config schema and stack-file reader check names with it

# Backends whose values never travel as Secret data: everything but Pulumi's manual values.
GITOPS_BACKENDS = tuple(b.name for b in backends.all_specs() if not b.pulumi_values)

SECRET = "kubernetes:core/v1:Secret"
ROLE_TYPES = ("kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
HELM_RELEASE_TYPES = tuple(f"kubernetes:helm.toolkit.fluxcd.io/{v}:HelmRelease" for v in ("v2", "v2beta2", "v2beta1"))
PULUMI_HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart")
FORBIDDEN_SECRET_VERBS = ("list", "watch", "*")


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def object_name(props: Mapping[str, Any]) -> str:
    meta = props.get("metadata") if isinstance(props, Mapping) else None
    name = _get(meta, "name") or "?"
    namespace = _get(meta, "namespace")
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else str(name)


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


# --- 1. no Secret with data in a GitOps-exported stack ---------------------------------------------


def _has_entries(value: Any) -> bool:
    if not isinstance(value, Mapping):
        # An unknown (computed) or secret-wrapped map still carries data.
        return value is not None
    return any(v is not None and v != "" for v in value.values())


def secret_data_violations(resource_type: str, props: Mapping[str, Any], backend: str | None) -> list[str]:
    """A `v1` Secret with `data`/`stringData` is only for the manual backend (applied by `pulumi up`,
    never exported). In a sealed-secrets or vault stack, values belong in SealedSecrets or Vault."""
    if resource_type != SECRET:
        return []
    fields = [f for f in ("data", "stringData") if _has_entries(props.get(f))]
    if not fields:
        return []
    spec = backends.find(backend)
    if spec is not None and spec.pulumi_values:
        return []
    if backend is None:
        return [
            f"Secret {object_name(props)} has {'/'.join(fields)}, and the stack's backend is unknown "
            "(set k8s-secrets:backend, or the policy's `backend` config)"
        ]
    return [
        f"Secret {object_name(props)} has {'/'.join(fields)} in a {backend} stack: its values would "
        f"leave the {backend} backend; seal them (ksecrets seal) or push them to Vault (ksecrets vault push)"
    ]


# --- 2. Roles that touch secrets: resourceNames, and no list/watch/* --------------------------------


def _touches_secrets(rule: Mapping[str, Any]) -> bool:
    groups = _list(rule.get("apiGroups"))
    resources = _list(rule.get("resources"))
    core = "" in groups or "*" in groups
    return core and ("secrets" in resources or "*" in resources)


# The one exception: the sealing-key backup CronJob's Role (ksecrets.manifests.keybackup). The
# controller names its key Secrets with generateName, so only a list finds them. Allowed only as
# exactly this: a namespaced Role of this name whose single rule is `list` on core `secrets`.
KEY_BACKUP_ROLE = "ksecrets-sealing-key-backup"
KEY_BACKUP_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}


def is_key_backup_role(resource_type: str, props: Mapping[str, Any]) -> bool:
    meta = props.get("metadata") or {}
    return (
        resource_type.endswith(":Role")
        and meta.get("name") == KEY_BACKUP_ROLE
        and _list(props.get("rules")) == [KEY_BACKUP_RULE]
    )


def role_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A Role (or ClusterRole) rule on secrets must name them (`resourceNames`) and may not `list`,
    `watch` or `*`: list and watch return every Secret's data, whatever resourceNames says.
    Except `KEY_BACKUP_ROLE`, exactly as above."""
    if resource_type not in ROLE_TYPES or is_key_backup_role(resource_type, props):
        return []
    kind = resource_type.rsplit(":", 1)[1]
    out = []
    for i, rule in enumerate(_list(props.get("rules"))):
        if not isinstance(rule, Mapping) or not _touches_secrets(rule):
            continue
        where = f"{kind} {object_name(props)}: rules[{i}]"
        if not [n for n in _list(rule.get("resourceNames")) if n]:
            out.append(f"{where} touches secrets without resourceNames")
        bad = [v for v in FORBIDDEN_SECRET_VERBS if v in _list(rule.get("verbs"))]
        if bad:
            out.append(f"{where} grants {', '.join(bad)} on secrets")
    return out


# --- 3. containers that read secrets run as non-root -----------------------------------------------


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    spec = _get(props, *path)
    return spec if isinstance(spec, Mapping) else None


def _secret_volumes(spec: Mapping[str, Any]) -> set[str | None]:
    names: set[str | None] = set()
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, Mapping):
            continue
        if isinstance(volume.get("secret"), Mapping):
            names.add(volume.get("name"))
        for source in _list(_get(volume, "projected", "sources")):
            if isinstance(source, Mapping) and isinstance(source.get("secret"), Mapping):
                names.add(volume.get("name"))
    return names


def reads_secrets(container: Mapping[str, Any], secret_volumes: set[str | None]) -> bool:
    if any(isinstance(e, Mapping) and _get(e, "secretRef") is not None for e in _list(container.get("envFrom"))):
        return True
    if any(
        isinstance(e, Mapping) and _get(e, "valueFrom", "secretKeyRef") is not None for e in _list(container.get("env"))
    ):
        return True
    return any(isinstance(m, Mapping) and m.get("name") in secret_volumes for m in _list(container.get("volumeMounts")))


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for i, c in enumerate(_list(spec.get(field))):
            if isinstance(c, Mapping):
                yield field, i, c


def runs_as_non_root(pod_security: Any, container_security: Any) -> bool:
    """The container's effective settings (container overrides pod): runAsUser 0 is root whatever
    runAsNonRoot says; otherwise runAsNonRoot true or a non-zero runAsUser is non-root."""

    def pick(field: str) -> Any:
        value = _get(container_security, field)
        return value if value is not None else _get(pod_security, field)

    user = pick("runAsUser")
    # Numbers reach a policy through protobuf Structs, as floats (10001.0): compare by value.
    numeric = isinstance(user, (int, float)) and not isinstance(user, bool)
    if numeric and user == 0:
        return False
    return pick("runAsNonRoot") is True or (numeric and user > 0)


def non_root_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    kind = resource_type.rsplit(":", 1)[1]
    volumes = _secret_volumes(spec)
    out = []
    for field, i, container in _containers(spec):
        if reads_secrets(container, volumes) and not runs_as_non_root(
            spec.get("securityContext"), container.get("securityContext")
        ):
            out.append(
                f"{kind} {object_name(props)}: {field}[{i}] ({container.get('name', '?')}) reads a Secret "
                "but may run as root (set runAsNonRoot: true, or a non-zero runAsUser)"
            )
    return out


# --- 5. runAsNonRoot with a numeric user and group --------------------------------------------------


def _is_id(value: Any) -> bool:
    # Numbers reach a policy through protobuf Structs, as floats (65532.0).
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value == int(value)


def numeric_user_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A container that asks for `runAsNonRoot` gets a numeric, non-zero `runAsUser` and
    `runAsGroup` (container over pod). The kubelet verifies runAsNonRoot against the image's
    USER when runAsUser is unset, and refuses to start an image whose USER is a name ("image has
    non-numeric user ... cannot verify user is non-root") or that has none (root)."""
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    kind = resource_type.rsplit(":", 1)[1]
    pod_security = spec.get("securityContext")
    out = []
    for field, i, container in _containers(spec):
        security = container.get("securityContext")

        def pick(name: str) -> Any:
            value = _get(security, name)
            return value if value is not None else _get(pod_security, name)

        if pick("runAsNonRoot") is not True:
            continue
        missing = [f for f in ("runAsUser", "runAsGroup") if not _is_id(pick(f))]
        if missing:
            out.append(
                f"{kind} {object_name(props)}: {field}[{i}] ({container.get('name', '?')}) sets runAsNonRoot "
                f"without a numeric non-zero {' and '.join(missing)}: the kubelet refuses an image whose "
                "user is a name"
            )
    return out


# --- 4. HelmReleases pin an exact chart version ----------------------------------------------------


def helm_version_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type in HELM_RELEASE_TYPES:
        where = f"HelmRelease {object_name(props)}"
        if _get(props, "spec", "chartRef") is not None:
            return [f"{where} uses spec.chartRef; pin the chart with spec.chart.spec.version (exact x.y.z)"]
        version = _get(props, "spec", "chart", "spec", "version")
        field = "spec.chart.spec.version"
    elif resource_type in PULUMI_HELM_TYPES:
        where = f"{resource_type.rsplit(':', 1)[1]} {props.get('name') or object_name(props)}"
        version = props.get("version")
        field = "version"
    else:
        return []
    if version is None or version == "":
        return [f"{where}: {field} is not set (Helm would take the latest chart)"]
    if not is_exact_version(version):
        return [f"{where}: {field} {version!r} is not an exact version (x.y.z, no range)"]
    return []


def all_violations(resource_type: str, props: Mapping[str, Any], backend: str | None) -> list[str]:
    """Every policy's messages for one resource, in policy order."""
    return (
        secret_data_violations(resource_type, props, backend)
        + role_violations(resource_type, props)
        + non_root_violations(resource_type, props)
        + helm_version_violations(resource_type, props)
        + numeric_user_violations(resource_type, props)
    )

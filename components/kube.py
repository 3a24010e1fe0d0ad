"""Registering builder dicts as pulumi-kubernetes resources, unchanged.

`ObjectGroup` is the base of every component here: it takes `Planned` objects from
`ksecrets.manifests` and registers each one as a child (`parent=self`): core kinds with their
typed classes, CRD kinds with `apiextensions.CustomResource`. Fields go in as the builders wrote
them; Pulumi's name translation leaves camelCase keys alone, and the round-trip test under
mocks (tests/components/) proves the registered inputs equal the exported objects.

What only Pulumi needs is added here and never exported:
- `pulumi.com/waitFor: condition=Ready` on HelmReleases, so `pulumi up` waits for a chart (and
  the CRDs it installs) before creating objects of those CRDs; their await timeout is set from the
  release's own `timeout` and remediation retries (`custom_timeouts`), not the provider default;
- `pulumi.com/skipAwait: "true"` on a Deployment whose Secret a controller makes (Sealed Secrets,
  the Vault Secrets Operator): Pulumi cannot order on a controller's output, and on a fresh cluster
  that Secret appears only after the controller's key is restored or Vault is initialised and given
  values, so awaiting the rollout would fail the first `pulumi up` (README: first install order);
- `pulumi.com/skipAwait: "true"` on a PersistentVolumeClaim: a claim is Bound only once a Pod uses
  it when its StorageClass binds `WaitForFirstConsumer` (most cloud defaults), and the claims here
  are used by CronJobs (snapshots, key backups) that have not run yet, so awaiting `Bound` would
  fail every first `pulumi up` after the provider's timeout;
- `pulumi.com/patchFieldManager: pulumi-k8s-secrets-<stack>` on every object: the server-side
  apply field manager the provider writes as. Left alone it draws a random
  `pulumi-kubernetes-<id>` per create and keeps it in the state; a create the state never recorded
  (an `up` killed in flight) leaves that manager co-owning the object's fields, and the next change
  of those fields by the manager the state does record is refused as a conflict. One fixed name
  per stack makes every run the same owner, as `kubectl` and Flux's controllers are: nothing is
  forced, so a field another manager owns still conflicts (README "Pulumi at a thousand apps");
- `depends_on` from an object to the HelmReleases it needs and to the Namespace it lives in;
- `retain_on_delete` on an object planned with `retain` (a manual Secret in phase `release`): the
  state records it at this `pulumi up`, so the `pulumi up` after the switch, whose program no longer
  declares the Secret, drops it from the state and leaves it in the cluster for the next backend;
- under `delivery: flux`, `pulumi.com/waitFor: condition=Ready` on the infrastructure
  Kustomization when a Pulumi object needs it (a manual Secret, whose namespace Flux creates),
  awaited for the Kustomization's own `timeout` plus a margin.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import re

import pulumi
import pulumi_kubernetes as k8s

from ksecrets.manifests.plan import Manifest, Planned

WAIT_FOR = "pulumi.com/waitFor"
WAIT_READY = "condition=Ready"
SKIP_AWAIT = "pulumi.com/skipAwait"
FIELD_MANAGER = "pulumi.com/patchFieldManager"
# Flux's defaults when a HelmRelease leaves them out, and a margin for the first reconcile.
_FLUX_TIMEOUT_S = 300
_AWAIT_MARGIN_S = 300

# (apiVersion, kind) → typed class. Anything else must be a CRD kind.
_TYPED: Mapping[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
}
_CORE_GROUPS = ("v1", "apps/", "batch/", "rbac.authorization.k8s.io/", "networking.k8s.io/", "policy/")
# Top-level fields of typed kinds: camelCase → the Python keyword argument.
_ARG_NAMES = {
    "apiVersion": "api_version",
    "stringData": "string_data",
    "roleRef": "role_ref",
    "automountServiceAccountToken": "automount_service_account_token",
    "imagePullSecrets": "image_pull_secrets",
    "aggregationRule": "aggregation_rule",
}


def resource_name(obj: Manifest) -> str:
    """`<namespace>/<name>` (or `<name>` for cluster-scoped kinds): unique per type in a stack."""
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _copy(value: Any) -> Any:
    """Copy dicts and lists, keep leaves: a leaf may be a secret Output, which must not be copied."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _seconds(duration: str) -> int:
    """A Go duration as Flux writes it ("10m", "1h30m", "90s") in whole seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return int(sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def helmrelease_await_seconds(obj: Manifest) -> int:
    """How long `pulumi up` waits for a HelmRelease to be Ready: every attempt helm-controller
    may make (the first plus remediation retries, each bounded by `spec.timeout`), plus a margin.
    A Kustomization (no remediation) gets its `spec.timeout` plus the margin."""
    spec = obj.get("spec", {})
    timeout = _seconds(spec["timeout"]) if spec.get("timeout") else _FLUX_TIMEOUT_S
    retries = max(int(spec.get(k, {}).get("remediation", {}).get("retries", 0)) for k in ("install", "upgrade"))
    return timeout * (1 + max(retries, 0)) + _AWAIT_MARGIN_S


def _pod_secret_names(obj: Manifest) -> set[str]:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    names: set[str] = set()
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        for src in c.get("envFrom", []):
            ref = src.get("secretRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
    for vol in pod.get("volumes", []):
        sec = vol.get("secret")
        if sec and not sec.get("optional"):
            names.add(sec["secretName"])
    return names


def field_manager(stack: str) -> str:
    """The server-side apply field manager of a stack's objects (a stack name is a DNS label)."""
    return f"pulumi-k8s-secrets-{stack}"


def pulumi_object(planned: Planned, registry: "Registry | None" = None, stack: str | None = None) -> Manifest:
    """The object as Pulumi registers it: the exported dict plus Pulumi-only annotations."""
    obj = _copy(planned.obj)
    if stack is not None:
        obj["metadata"].setdefault("annotations", {})[FIELD_MANAGER] = field_manager(stack)
    if obj["kind"] == "HelmRelease" or (
        obj["kind"] == "Kustomization" and registry is not None and planned.id in registry.awaited
    ):
        obj["metadata"].setdefault("annotations", {})[WAIT_FOR] = WAIT_READY
    if obj["kind"] == "PersistentVolumeClaim":
        obj["metadata"].setdefault("annotations", {})[SKIP_AWAIT] = "true"
    if obj["kind"] == "Deployment" and registry is not None:
        ns = obj["metadata"].get("namespace", "")
        from_controller = {n for n in _pod_secret_names(obj) if f"v1/Secret/{ns}/{n}" not in registry.by_id}
        if from_controller:
            obj["metadata"].setdefault("annotations", {})[SKIP_AWAIT] = "true"
    return obj


def register(obj: Manifest, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    key = (obj["apiVersion"], obj["kind"])
    name = resource_name(obj)
    cls = _TYPED.get(key)
    if cls is not None:
        kwargs = {_ARG_NAMES.get(k, k): v for k, v in obj.items()}
        if obj["kind"] == "Secret":
            # Belt and braces: pulumi-kubernetes marks these secret already; state must never
            # hold them in the clear, whatever the provider version does.
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])
            )
        return cls(name, opts=opts, **kwargs)
    if obj["apiVersion"].startswith(_CORE_GROUPS):
        raise ValueError(f"no typed class registered for {key}; add it to components/kube.py")
    extra = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        raise ValueError(f"{key} has top-level fields {sorted(extra)} that CustomResource cannot carry")
    awaited = obj["metadata"].get("annotations", {}).get(WAIT_FOR) == WAIT_READY
    if obj["kind"] in ("HelmRelease", "Kustomization") and awaited:
        wait = f"{helmrelease_await_seconds(obj)}s"
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create=wait, update=wait))
        )
    return k8s.apiextensions.CustomResource(
        name,
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        metadata=obj["metadata"],
        spec=obj.get("spec"),
        opts=opts,
    )


def child_options(
    planned: Planned, parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource]
) -> pulumi.ResourceOptions:
    """A planned object's resource options: its component, what it waits for, and whether Pulumi
    leaves it in the cluster when the program stops declaring it (`Planned.retain`)."""
    opts = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
    if planned.retain:
        opts.retain_on_delete = True
    return opts


class Registry:
    """The resources of one stack by object id, so later groups can depend on earlier ones."""

    def __init__(self) -> None:
        self.by_id: dict[str, pulumi.CustomResource] = {}
        self.depends: dict[str, list[str]] = {}
        self.namespaces: dict[str, str] = {}  # namespace name → object id of its Namespace
        self.awaited: set[str] = set()  # ids some registered object needs (awaited until Ready)

    def add(self, planned: Planned, resource: pulumi.CustomResource, depends: list[str]) -> None:
        self.by_id[planned.id] = resource
        self.depends[planned.id] = depends
        if planned.obj["kind"] == "Namespace" and planned.obj["apiVersion"] == "v1":
            self.namespaces[planned.obj["metadata"]["name"]] = planned.id


class ObjectGroup(pulumi.ComponentResource):
    """A component whose children are exactly the given planned objects; `type_` is its concern's
    component type (`ksecrets.manifests.stack.CONCERNS`)."""

    def __init__(
        self,
        type_: str,
        name: str,
        planned: Sequence[Planned],
        registry: Registry,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_, name, None, opts)
        self.resources: dict[str, pulumi.CustomResource] = {}
        stack = pulumi.get_stack()
        for p in planned:
            depends = list(p.needs)
            ns = p.obj["metadata"].get("namespace")
            if ns in registry.namespaces:
                depends.append(registry.namespaces[ns])
            child_opts = child_options(p, self, [registry.by_id[d] for d in depends if d in registry.by_id])
            resource = register(pulumi_object(p, registry, stack), child_opts)
            registry.add(p, resource, depends)
            self.resources[p.id] = resource
        self.register_outputs({"objects": sorted(self.resources)})

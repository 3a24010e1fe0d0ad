"""What a real cluster would refuse, or what would break it, checked before anything is exported
or previewed. `ksecrets export` (render) and the Pulumi program (`__main__.py`, so `pulumi
preview`) both run `check_stack`; `ksecrets seal` checks what it writes with `ksecrets.limits`.

- Prerequisites: with monitoring on, the ServiceMonitors and the PrometheusRule need the
  Prometheus Operator's CRDs; the stack must say whether the cluster has them.
- Placeholders: an `example` image or URL (RFC 2606 names, or an `example` organisation) is
  refused unless the stack lists its key under `allowPlaceholders`.
- Namespaces: every object sits in a namespace the stack creates, declares external, or that
  always exists; otherwise Flux's apply of the whole layer fails.
- Names (`ksecrets.limits`): `metadata.name` by the API server's rules for the kind (the schemas
  do not check it).
- Size (`ksecrets.limits`): a Secret's data at most 1 MiB (the API server), an object at most etcd's default
  request limit (1.5 MiB) less headroom for what the API server adds (managedFields, status).

Every failure is one KsecretsError line naming the stack file and the object or key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit

from ksecrets.errors import KsecretsError
from ksecrets.limits import name_problem, size_problem
from ksecrets.sealing import crypto  # the kubeseal format (standard library only at import)

if TYPE_CHECKING:
    from ksecrets.config.model import StackConfig
    from ksecrets.manifests.plan import Manifest, Planned

# RFC 2606 / RFC 6761 names that never resolve to anything real.
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = ("example", "invalid", "test", "localhost")
_CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "ghcr.io", "quay.io", "docker.io")


# --- placeholders ------------------------------------------------------------------------------


def _reserved_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return (
        any(host == d or host.endswith("." + d) for d in _RESERVED_DOMAINS) or host.rsplit(".", 1)[-1] in _RESERVED_TLDS
    )


def placeholder_image(image: str) -> bool:
    """`ghcr.io/example/x:1`, `example/x:1`, `registry.example.com/x:1`."""
    repo = image.split("@", 1)[0]
    parts = repo.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if _reserved_host(parts[0].split(":", 1)[0]):
            return True
        parts = parts[1:]
    return any(p == "example" for p in parts[:-1])


def placeholder_url(url: str) -> bool:
    """`https://example.com/...`, `https://git.example.org/...`, `https://github.com/example/...`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if _reserved_host(host):
        return True
    first = parts.path.strip("/").split("/", 1)[0]
    return host in _CODE_HOSTS and first == "example"


def _placeholders(cfg: StackConfig, planned: list[Planned]) -> Iterable[tuple[str, str, str]]:
    """(allowPlaceholders key, key path, value) of each placeholder that reaches an object."""
    kinds = {p.obj["kind"] for p in planned}
    for i, app in enumerate(cfg.apps):
        for j, d in enumerate(app.deployments):
            if placeholder_image(d.image):
                yield "apps.deployments.image", f"apps[{i}].deployments[{j}].image", d.image
    # Each CronJob's image is the key it came from: the key backup's own `keyBackup.image`, the
    # rotator's `rotation.image` (rotation and snapshot CronJobs); a stack with only a key backup
    # never deploys rotation.image, so its default placeholder is no concern there.
    kb = cfg.sealed_secrets.key_backup
    cron_images = {
        c.get("image")
        for p in planned
        if p.obj["kind"] == "CronJob"
        for c in p.obj["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("containers", [])
    }
    if kb is not None and placeholder_image(kb.image):
        yield "sealedSecrets.keyBackup.image", "sealedSecrets.keyBackup.image", kb.image
    if cfg.rotation.image in cron_images - ({kb.image} if kb is not None else set()):
        if placeholder_image(cfg.rotation.image):
            yield "rotation.image", "rotation.image", cfg.rotation.image
    if "PrometheusRule" in kinds and placeholder_url(cfg.monitoring.runbook_base_url):
        yield "monitoring.runbookBaseUrl", "monitoring.runbookBaseUrl", cfg.monitoring.runbook_base_url


def check_prerequisites(cfg: StackConfig, planned: list[Planned]) -> None:
    if cfg.monitoring.enabled and cfg.monitoring.prometheus_operator is None:
        raise KsecretsError(
            f"{cfg.source}: monitoring.prometheusOperator: not declared; with monitoring.enabled the stack emits "
            "ServiceMonitors and a PrometheusRule, which need the Prometheus Operator's CRDs: set it to true if the "
            "cluster runs the operator, false to leave those objects out (or set monitoring.enabled: false)"
        )
    for allow_key, path, value in _placeholders(cfg, planned):
        if allow_key not in cfg.allow_placeholders:
            raise KsecretsError(
                f'{cfg.source}: {path}: "{value}" is a placeholder (an example name) and would not work in a '
                f'cluster; set the real value, or list "{allow_key}" under allowPlaceholders to deploy it on purpose'
            )


# --- objects -----------------------------------------------------------------------------------


def _describe(obj: Manifest) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def sealed_problem(obj: Manifest) -> str | None:
    """A SealedSecret value that is not well-formed ciphertext (`crypto.sealed_value_problem`):
    whatever reaches k8s/ under `encryptedData` must be sealed, wherever the object came from."""
    if obj.get("kind") != "SealedSecret":
        return None
    for key, value in ((obj.get("spec") or {}).get("encryptedData") or {}).items():
        problem = crypto.sealed_value_problem(value)
        if problem:
            return f"spec.encryptedData.{key}: {problem}"
    return None


def namespace_problem(cfg: StackConfig, obj: Manifest, known: frozenset[str] | None = None) -> str | None:
    namespace = (obj.get("metadata") or {}).get("namespace")
    if namespace is None or namespace in (known if known is not None else cfg.known_namespaces()):
        return None
    return (
        f'namespace "{namespace}" is not created by this stack nor listed in externalNamespaces, so Flux\'s '
        "apply of the whole layer would fail: add an app in it, list it under namespaces, or under "
        "externalNamespaces if it exists outside the stack"
    )


def check_objects(cfg: StackConfig, objects: Iterable[Manifest]) -> None:
    known = cfg.known_namespaces()  # once: it spans every app
    for obj in objects:
        for problem in (
            name_problem(obj),
            namespace_problem(cfg, obj, known),
            sealed_problem(obj),
            size_problem(obj),
        ):
            if problem:
                raise KsecretsError(f"{cfg.source}: {_describe(obj)}: {problem}")


def check_stack(cfg: StackConfig, planned: list[Planned] | None = None) -> list[Planned]:
    """Every check, on the stack's planned objects (built when not given). Returns them."""
    from ksecrets.usecases.stack_facts import plan_stack

    if planned is None:
        planned = plan_stack(cfg)
    check_prerequisites(cfg, planned)
    check_objects(cfg, (p.obj for p in planned))
    return planned

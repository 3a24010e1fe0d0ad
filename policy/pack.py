"""The CrossGuard policies: `rules` wrapped as `ResourceValidationPolicy` objects, all MANDATORY.

Where the backend comes from (for `no-secret-data-in-gitops-stack`), first found wins:
1. the policy's own config `backend` (`pulumi preview --policy-pack policy --policy-pack-config F`);
2. the stack config `k8s-secrets:backend`, which the Pulumi CLI hands the policy pack process
   (PULUMI_CONFIG) so that `pulumi.runtime.get_config` sees it;
3. `Pulumi.<stack>.yaml` next to this directory, the stack taken from the resource URN
   (`urn:pulumi:<stack>::<project>::...`), read for `config.k8s-secrets:backend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

try:  # tests import the package from the repository root ...
    from policy import rules
except ImportError:  # ... the Pulumi CLI runs __main__.py with this directory on sys.path
    import rules  # type: ignore[no-redef]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKEND_KEY = "k8s-secrets:backend"


def stack_from_urn(urn: str) -> str | None:
    parts = urn.split("::")
    if len(parts) >= 2 and parts[0].startswith("urn:pulumi:"):
        return parts[0][len("urn:pulumi:") :]
    return None


def backend_from_stack_file(stack: str, root: Path = PROJECT_ROOT) -> str | None:
    from ksecrets import yamlio
    from ksecrets.errors import KsecretsError

    try:
        doc = yamlio.load((root / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"), f"Pulumi.{stack}.yaml")
    except (OSError, UnicodeDecodeError, KsecretsError):
        return None
    value = ((doc or {}).get("config") or {}).get(BACKEND_KEY) if isinstance(doc, dict) else None
    return value if value in rules.BACKENDS else None


def _stack_config_backend() -> str | None:
    try:
        import pulumi.runtime

        value = pulumi.runtime.get_config(BACKEND_KEY)
    except Exception:  # noqa: BLE001 - no runtime config in this process
        return None
    return value if value in rules.BACKENDS else None


def resolve_backend(args: ResourceValidationArgs, root: Path = PROJECT_ROOT) -> str | None:
    configured = (args.get_config() or {}).get("backend")
    if configured in rules.BACKENDS:
        return configured
    from_stack_config = _stack_config_backend()
    if from_stack_config:
        return from_stack_config
    stack = stack_from_urn(args.urn or "")
    return backend_from_stack_file(stack, root) if stack else None


def _wrap(check: Callable[[ResourceValidationArgs], list[str]]):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args):
            report_violation(message, None)

    return validate


POLICIES = [
    ResourceValidationPolicy(
        name="no-secret-data-in-gitops-stack",
        description="No v1 Secret with data/stringData in a stack whose backend is exported for Flux "
        "(sealed-secrets or vault).",
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={"backend": {"type": "string", "enum": list(rules.BACKENDS)}}),
        validate=_wrap(lambda a: rules.secret_data_violations(a.resource_type, a.props, resolve_backend(a))),
    ),
    ResourceValidationPolicy(
        name="secret-roles-least-privilege",
        description="Roles that touch secrets name resourceNames and never grant list, watch or *.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=_wrap(lambda a: rules.role_violations(a.resource_type, a.props)),
    ),
    ResourceValidationPolicy(
        name="secret-readers-run-as-non-root",
        description="Containers that mount or read Secrets run as non-root.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=_wrap(lambda a: rules.non_root_violations(a.resource_type, a.props)),
    ),
    ResourceValidationPolicy(
        name="helm-chart-version-pinned",
        description="HelmReleases pin an exact chart version (x.y.z, no range).",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=_wrap(lambda a: rules.helm_version_violations(a.resource_type, a.props)),
    ),
    ResourceValidationPolicy(
        name="run-as-numeric-user",
        description="Containers with runAsNonRoot set a numeric, non-zero runAsUser and runAsGroup, which the "
        "kubelet can verify whatever the image's USER is.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=_wrap(lambda a: rules.numeric_user_violations(a.resource_type, a.props)),
    ),
]


def evaluate(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    urn: str = "",
    name: str = "",
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[str]]:
    """Run every policy as the engine would (one ResourceValidationArgs per resource): policy → messages."""
    out: dict[str, list[str]] = {}
    for policy in POLICIES:
        args = ResourceValidationArgs(
            resource_type,
            props,
            urn,
            name,
            None,  # type: ignore[arg-type]
            None,
            (config or {}).get(policy.name, {}),
        )
        messages: list[str] = []

        def report(message: str, urn: Any = None, messages: list[str] = messages) -> None:
            messages.append(message)

        policy.validate(args, report)
        if messages:
            out[policy.name] = messages
    return out

"""Rules that span sections of a stack's config: unique names, references that resolve, namespaces a
stack may use, migration phases. Run on raw config once every field has passed its own checks
(`StackConfig`'s validator); each failure is `fields.fail(problem, key path)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksecrets import backends
from ksecrets.config.fields import fail

if TYPE_CHECKING:
    from ksecrets.config.model import StackConfig


def check(cfg: StackConfig) -> None:
    _references(cfg)
    _namespaces(cfg)
    _migration(cfg)
    _delivery(cfg)


def _references(cfg: StackConfig) -> None:
    """Unique names, references that must resolve."""
    seen: dict[tuple[str, str], int] = {}
    secrets_seen: dict[tuple[str, str], int] = {}
    for i, app in enumerate(cfg.apps):
        at: tuple[str | int, ...] = ("apps", i)
        if (app.namespace, app.name) in seen:
            raise fail(f'"{app.name}" is already used by apps[{seen[(app.namespace, app.name)]}]', (*at, "name"))
        seen[(app.namespace, app.name)] = i
        if (app.namespace, app.secret_name) in secrets_seen:
            raise fail(
                f'"{app.secret_name}" is already used by apps[{secrets_seen[(app.namespace, app.secret_name)]}]',
                (*at, "secretName"),
            )
        secrets_seen[(app.namespace, app.secret_name)] = i
        deployments = {d.name for d in app.deployments}
        if len(deployments) != len(app.deployments):
            raise fail("deployment names must be unique", (*at, "deployments"))
        known_keys = set(cfg.secret_keys(app))
        for j, d in enumerate(app.deployments):
            for e in d.env:
                if known_keys and e.key not in known_keys:
                    raise fail(
                        f'key "{e.key}" is not in Secret "{app.secret_name}" (keys: {", ".join(sorted(known_keys))})',
                        (*at, "deployments", j, "env", e.name),
                    )
        for j, r in enumerate(app.rotation):
            rat = (*at, "rotation", j)
            first = next(k for k, other in enumerate(app.rotation) if other.key == r.key)
            if first != j:
                raise fail(f'"{r.key}" is already rotated by rotation[{first}]', (*rat, "key"))
            if r.key not in known_keys:
                raise fail(
                    f'"{r.key}" is not a key of Secret "{app.secret_name}"'
                    + (f" (keys: {', '.join(sorted(known_keys))})" if known_keys else " (it has no known keys)"),
                    (*rat, "key"),
                )
            for target in r.restart:
                if target not in deployments:
                    raise fail(
                        f'Deployment "{target}" is not one of app "{app.name}"\'s deployments', (*rat, "restart")
                    )
            if r.generator == "postgres" and not cfg.spec.vault:
                raise fail("postgres rotation needs the vault backend", (*rat, "generator"))
            if r.generator == "postgres" and r.postgres is not None and r.postgres.mode == "dual":
                ukey = r.postgres.username_key
                uat = (*rat, "postgres", "usernameKey")
                if known_keys and ukey not in known_keys:
                    raise fail(
                        f'"{ukey}" is not a key of Secret "{app.secret_name}" (keys: {", ".join(sorted(known_keys))})',
                        uat,
                    )
                if ukey == r.key or any(o.key == ukey for o in app.rotation):
                    raise fail(f'"{ukey}" is rotated itself; the username key is written by this rotation', uat)
            if r.generator == "postgres":
                other = next(
                    (
                        k
                        for k, o in enumerate(app.rotation[:j])
                        if o.generator == "postgres" and o.schedule == r.schedule
                    ),
                    None,
                )
                if other is not None:
                    raise fail(
                        f'rotation[{other}] already rotates a PostgreSQL password on "{r.schedule}"; one '
                        "rotation (one kv-v2 version) changes at most one: give this one another schedule",
                        (*rat, "schedule"),
                    )
        if cfg.spec.vault and app.vault is None:
            raise fail("is required when backend is vault (at least {path: ...})", (*at, "vault"))
    if cfg.spec.seals and cfg.apps and not cfg.sealed_secrets.certificate:
        raise fail(
            "is required when backend is sealed-secrets (the public sealing certificate, e.g. certs/<stack>.pem)",
            ("sealedSecrets", "certificate"),
        )
    first_seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(cfg.sealed):
        key = (entry.namespace, entry.name)
        if key in first_seen:
            raise fail(
                f"{entry.namespace}/{entry.name} is already sealed in sealed[{first_seen[key]}]", ("sealed", i, "name")
            )
        first_seen[key] = i


def _namespaces(cfg: StackConfig) -> None:
    """System and shared namespaces are never created, labelled or pruned by a stack."""
    shared = set(cfg.shared_namespaces())
    external = set(cfg.external_namespaces)
    vault_owned = set(cfg.vault_namespaces())
    for i, name in enumerate(cfg.namespaces):
        at: tuple[str | int, ...] = ("namespaces", i)
        if name in shared:
            raise fail(
                f'"{name}" is a system or shared namespace; a stack never creates, labels or prunes it '
                "(list it under externalNamespaces to place objects there)",
                at,
            )
        if name in external:
            raise fail(f'"{name}" is also in externalNamespaces; a namespace is either created here or not', at)
        if name in vault_owned:
            raise fail(
                f'"{name}" is where this stack installs Vault or its operator (with their own Pod '
                "Security level); do not list it here",
                at,
            )
    for i, app in enumerate(cfg.apps):
        at = ("apps", i, "namespace")
        if app.namespace in vault_owned:
            raise fail(f"\"{app.namespace}\" is Vault's or its operator's namespace; run apps elsewhere", at)
        if app.namespace in shared and app.namespace not in external:
            raise fail(
                f'"{app.namespace}" is a system or shared namespace; a stack never creates, labels or '
                "prunes it: add it to externalNamespaces to deploy into it as it is",
                at,
            )
    if cfg.vault is not None and cfg.installs_vault:
        for key, name in (
            (("namespace",), cfg.vault.namespace),
            (("operator", "namespace"), cfg.vault.operator.namespace),
        ):
            if name in shared and name not in external:
                raise fail(
                    f'"{name}" is a system or shared namespace; give Vault its own (or list it under '
                    "externalNamespaces)",
                    ("vault", *key),
                )


def _migration(cfg: StackConfig) -> None:
    phase = cfg.vault_migration
    if phase is None:
        return
    if phase not in cfg.spec.migration_phases:
        wanted = [b.name for b in backends.all_specs() if phase in b.migration_phases]
        named = " or ".join(wanted) if len(wanted) < 3 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
        raise fail(f"phase {phase} needs backend {named}, not {cfg.backend}", ("vaultMigration",))
    if phase == "install" and cfg.vault is None:
        raise fail("phase install needs a vault section (the Vault this stack installs)", ("vaultMigration",))
    if phase == "uninstall" and cfg.vault is None:
        raise fail("phase uninstall needs a vault section (the Vault this stack still installs)", ("vaultMigration",))


def _delivery(cfg: StackConfig) -> None:
    if cfg.delivery == "flux" and cfg.vault is not None and cfg.installs_vault and cfg.vault.configure:
        # `pulumi up` configures Vault once its release is Ready; under flux Pulumi does not hold it.
        raise fail(
            "is true but delivery is flux: Flux installs Vault, so run `ksecrets vault bootstrap` instead",
            ("vault", "configure"),
        )

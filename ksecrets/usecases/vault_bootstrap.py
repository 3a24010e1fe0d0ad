"""`ksecrets vault bootstrap`: Vault configured for a stack, idempotently, through its HTTP API.

Each item is read first and written only when it differs, so a second run issues no write and
its report says "no changes". What it sets up:

- kv-v2 at `vault.kvMount` (an existing mount of another type or kv version is an error, never
  silently replaced: that would lose data);
- the kubernetes auth method at `vault.authMount`, with the API server's host and CA, its
  description naming the cluster (`ksecrets: cluster <stack>`): a mount another cluster's run
  made is refused, never reconfigured for this one;
- per app a policy `ksecrets-<role>` with `read` on exactly `<kvMount>/data/<app.vault.path>` (the
  Vault Secrets Operator reads only that path for kv-v2; it never reads `metadata/`) plus
  `<db mount>/creds/<role>` for each dynamic secret, and a role bound to the app's service
  account, namespace and the stack's audience;
- per app that rotates keys, a policy `ksecrets-<app>-rotator` that may read and write exactly
  that app's kv-v2 path (check-and-set writes are `create`/`update` on `data/<path>`; its
  `metadata/<path>` for the minimum interval between rotations) and a role
  `<app>-rotator` bound to the `<app>-rotator` service account (see `ksecrets.manifests.rotation`);
- a file audit device writing to the audit volume the chart mounts;
- where `vault.database` is set: the database secrets engine, its connection and one role per
  dynamic secret.

One Vault, several clusters (a fleet: stacks that extend one environment file). Each cluster has
its own auth mount (`kubernetes-<stack>`) and so its own roles, bound to its own API server's
service accounts; a token of one cluster is reviewed by that cluster's API server only. Policies
are named by what they grant: a fleet stack's policy is `ksecrets-<role>-<digest of its text>`,
and its text names only the role and the paths. Clusters whose app reads the same path therefore
share one policy (the same name, the same text: a second cluster's run finds it and writes
nothing), and a cluster whose path differs gets its own, so no run ever rewrites a policy another
cluster's role uses, and no role grants another cluster's differing path. The kv mount, the
audit device and the database engine (`vault.database`, an environment's setting) are shared.
A stack that extends nothing keeps `ksecrets-<role>` (one cluster per Vault, as before).

All requests go through the Vault port (`ksecrets.vault.client`: `read_data`, `send_write`,
`confirm_write`) with the documented paths and bodies, so the tests can assert them exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ksecrets.config.model import App, StackConfig, VaultConfig
from ksecrets.errors import KsecretsError
from ksecrets.manifests import rotation
from ksecrets.manifests.vault import AUDIT_FILE, app_role, dynamic_path
from ksecrets.vault.client import VaultClient, VaultError, address_of, confirm_write, read_data, send_write

AUDIT_DEVICE = "file"
TOKEN_TTL = 3600  # seconds; the operator renews its token, the rotator needs minutes
TOKEN_MAX_TTL = 86400
DB_DEFAULT_TTL = 3600
DB_MAX_TTL = 86400
DEFAULT_KUBE_HOST = "https://kubernetes.default.svc:443"


@dataclass
class Report:
    """What bootstrap did: one line per item, `changed` (written) or `unchanged` (already so)."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def done(self, item: str, wrote: bool) -> None:
        (self.changed if wrote else self.unchanged).append(item)

    @property
    def any_changes(self) -> bool:
        return bool(self.changed)

    def lines(self) -> list[str]:
        out = [f"changed: {c}" for c in self.changed]
        if not self.changed:
            out.append(f"no changes: all {len(self.unchanged)} items already as configured")
        else:
            out.append(f"{len(self.changed)} changed, {len(self.unchanged)} already as configured")
        return out


# --- desired state (pure) ---------------------------------------------------------------------


def in_fleet(cfg: StackConfig) -> bool:
    """A cluster of a fleet (it extends an environment): one Vault may serve its siblings too."""
    return bool(cfg.environment)


def _named(cfg: StackConfig, role: str, text: str) -> str:
    """`ksecrets-<role>`; in a fleet `ksecrets-<role>-<digest>`, the digest of the policy's text:
    clusters granting the same share it, clusters granting different paths never collide."""
    if not in_fleet(cfg):
        return f"ksecrets-{role}"
    return f"ksecrets-{role}-{hashlib.sha256(text.encode()).hexdigest()[:POLICY_DIGEST]}"


POLICY_DIGEST = 12  # hex digits of SHA-256: 48 bits, no accidental collision among a fleet's policies


def app_policy_name(cfg: StackConfig, app: App) -> str:
    return _named(cfg, app_role(app), app_policy(cfg, app))


def rotator_role(app: App) -> str:
    return rotation.vault_role(app)


def rotator_policy_name(cfg: StackConfig, app: App) -> str:
    return _named(cfg, rotator_role(app), rotator_policy(cfg, app))


def _hcl_path(path: str, capabilities: tuple[str, ...]) -> list[str]:
    caps = ", ".join(f'"{c}"' for c in capabilities)
    return [f'path "{path}" {{', f"  capabilities = [{caps}]", "}"]


def app_policy(cfg: StackConfig, app: App) -> str:
    vc = _vc(cfg)
    assert app.vault is not None
    if in_fleet(cfg):
        # Nothing of one cluster in the text, so every cluster granting the same shares it.
        head = (
            f"# ksecrets, environment {cfg.environment}: Vault role {app_role(app)} reads its own secret, nothing else."
        )
    else:
        head = f"# ksecrets, stack {cfg.stack}: app {app.namespace}/{app.name} reads its own secret, nothing else."
    lines = [head]
    lines += _hcl_path(f"{vc.kv_mount}/data/{app.vault.path}", ("read",))
    for d in app.vault.dynamic:
        lines += _hcl_path(f"{d.mount}/{dynamic_path(d)}", ("read",))
    return "\n".join(lines) + "\n"


def rotator_policy(cfg: StackConfig, app: App) -> str:
    vc = _vc(cfg)
    assert app.vault is not None
    who = (
        f"environment {cfg.environment}: Vault role {rotator_role(app)}"
        if in_fleet(cfg)
        else f"stack {cfg.stack}: the rotator of app {app.namespace}/{app.name}"
    )
    lines = [f"# ksecrets, {who} writes new versions of its secret (check-and-set), nothing else."]
    lines += _hcl_path(f"{vc.kv_mount}/data/{app.vault.path}", ("read", "create", "update"))
    # The minimum interval between rotations: Vault's creation time of each version, and the
    # rotator's mark in custom_metadata (ksecrets.jobs.rotate.MARK_KEY). No delete or destroy.
    lines += _hcl_path(f"{vc.kv_mount}/metadata/{app.vault.path}", ("read", "create", "update"))
    return "\n".join(lines) + "\n"


def app_role_body(cfg: StackConfig, app: App) -> dict[str, Any]:
    return {
        "bound_service_account_names": [app.service_account],
        "bound_service_account_namespaces": [app.namespace],
        "audience": _vc(cfg).audience,
        "token_policies": [app_policy_name(cfg, app)],
        "token_ttl": TOKEN_TTL,
        "token_max_ttl": TOKEN_MAX_TTL,
    }


def rotator_role_body(cfg: StackConfig, app: App) -> dict[str, Any]:
    return {
        "bound_service_account_names": [rotation.rotator_service_account_name(app)],
        "bound_service_account_namespaces": [app.namespace],
        "audience": _vc(cfg).audience,
        "token_policies": [rotator_policy_name(cfg, app)],
        "token_ttl": 600,
        "token_max_ttl": 1800,
    }


def creation_statements(role: str) -> list[str]:
    # Vault makes a login role per lease that inherits a group role of the same name as the
    # Vault role: the DBA grants privileges to that group role once (README.md, "The Vault backend").
    return [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' "
        f'IN ROLE "{role}";'
    ]


def _vc(cfg: StackConfig) -> VaultConfig:
    if cfg.vault is None:
        raise KsecretsError(f"{cfg.source}: vault: the stack has no vault section (backend {cfg.backend})")
    return cfg.vault


def _vault_apps(cfg: StackConfig) -> list[App]:
    apps = [a for a in cfg.apps if a.vault is not None]
    seen: dict[str, App] = {}
    for app in apps:
        for role in (app_role(app), *((rotator_role(app),) if app.rotation else ())):
            if role in seen and seen[role] is not app:
                raise KsecretsError(
                    f"{cfg.source}: apps: Vault role {role!r} would serve both {seen[role].namespace}/{seen[role].name} "
                    f"and {app.namespace}/{app.name}; set vault.role on one of them"
                )
            seen[role] = app
    return apps


# --- reading and writing ----------------------------------------------------------------------


def _confirm(client: VaultClient, path: str, read_path: str, holds: Callable[[], bool], lost: str | None) -> None:
    """Read a write back before it counts (`ksecrets.vault.client.confirm_write`)."""
    confirm_write(client, path, read_path, holds, lost, retry="run bootstrap again (it is idempotent)")


def _mounts(client: VaultClient, listing: str) -> dict[str, Any]:
    data = read_data(client, listing) or {}
    return {k.rstrip("/"): v for k, v in data.items() if isinstance(v, dict) and "type" in v}


def _mount_is(client: VaultClient, listing: str, mount: str, kind: str) -> bool:
    current = _mounts(client, listing).get(mount)
    return isinstance(current, dict) and current.get("type") == kind


def ensure_secrets_engine(
    client: VaultClient, report: Report, mount: str, kind: str, options: Mapping[str, str] | None = None
) -> None:
    current = _mounts(client, "sys/mounts").get(mount)
    item = f"secrets engine {mount}/ ({kind}{' v' + options['version'] if options and 'version' in options else ''})"
    if current is None:
        body: dict[str, Any] = {"type": kind}
        if options:
            body["options"] = dict(options)
        lost = send_write(client, "POST", f"sys/mounts/{mount}", body)
        _confirm(
            client, f"sys/mounts/{mount}", "sys/mounts", lambda: _mount_is(client, "sys/mounts", mount, kind), lost
        )
        report.done(item, True)
        return
    have_kind = str(current.get("type", ""))
    have_version = str((current.get("options") or {}).get("version", "1"))
    if have_kind != kind or (options and "version" in options and have_version != options["version"]):
        what = f"kv version {have_version}" if have_kind == "kv" else have_kind
        raise VaultError(
            address_of(client),
            f"sys/mounts/{mount}",
            f"wrong mount type: {mount}/ is {what}, not {kind}"
            f"{' version ' + options['version'] if options and 'version' in options else ''}; "
            "bootstrap will not replace it",
        )
    report.done(item, False)


OWNER = "ksecrets: cluster "  # an auth mount's description: the cluster (stack) it serves


def ensure_auth_method(client: VaultClient, report: Report, mount: str, kind: str, cluster: str) -> None:
    """The auth method at `mount`, described as `cluster`'s. A mount another cluster's bootstrap
    made (its description names that cluster) is refused: writing this cluster's API server into
    its config would lock the other cluster's workloads out, or let this cluster's tokens in."""
    current = _mounts(client, "sys/auth").get(mount)
    item = f"auth method {mount}/ ({kind})"
    if current is None:
        lost = send_write(client, "POST", f"sys/auth/{mount}", {"type": kind, "description": OWNER + cluster})
        _confirm(client, f"sys/auth/{mount}", "sys/auth", lambda: _mount_is(client, "sys/auth", mount, kind), lost)
        report.done(item, True)
        return
    if current.get("type") != kind:
        raise VaultError(
            address_of(client),
            f"sys/auth/{mount}",
            f"wrong mount type: {mount}/ is {current.get('type')}, not {kind}; bootstrap will not replace it",
        )
    owner = str(current.get("description") or "")
    if owner.startswith(OWNER) and owner != OWNER + cluster:
        raise VaultError(
            address_of(client),
            f"sys/auth/{mount}",
            f"{mount}/ serves cluster {owner[len(OWNER) :]!r}, not {cluster!r} (its description); "
            "bootstrap will not reconfigure it: give each cluster its own vault.authMount "
            "(default kubernetes-<stack> for a stack that extends an environment)",
        )
    report.done(item, False)


def _differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    if current is None:
        return True
    for key, want in desired.items():
        have = current.get(key)
        if isinstance(want, str) and isinstance(have, str):
            if want.strip() != have.strip():
                return True
        elif have != want:
            return True
    return False


def ensure_object(
    client: VaultClient, report: Report, item: str, path: str, desired: Mapping[str, Any], *, method: str = "POST"
) -> None:
    """Read `path`; write `desired` there only when a field differs, then read it back."""
    current = read_data(client, path)
    wrote = _differs(current, desired)
    if wrote:
        lost = send_write(client, method, path, desired)
        _confirm(client, path, path, lambda: not _differs(read_data(client, path), desired), lost)
    report.done(item, wrote)


def _policy_is(client: VaultClient, path: str, text: str) -> bool:
    current = read_data(client, path)
    return current is not None and str(current.get("policy", "")) == text


def ensure_policy(client: VaultClient, report: Report, name: str, text: str) -> None:
    path = f"sys/policies/acl/{name}"
    current = read_data(client, path)
    wrote = current is None or str(current.get("policy", "")) != text
    if wrote:
        lost = send_write(client, "POST", path, {"policy": text})
        _confirm(client, path, path, lambda: _policy_is(client, path, text), lost)
    report.done(f"policy {name}", wrote)


def _audit_is_file(client: VaultClient) -> bool:
    current = (read_data(client, "sys/audit") or {}).get(f"{AUDIT_DEVICE}/")
    return isinstance(current, dict) and current.get("type") == "file"


def ensure_audit(client: VaultClient, report: Report) -> None:
    devices = read_data(client, "sys/audit") or {}
    current = devices.get(f"{AUDIT_DEVICE}/")
    item = f"audit device {AUDIT_DEVICE}/ ({AUDIT_FILE})"
    if isinstance(current, dict):
        if current.get("type") != "file":
            raise VaultError(
                address_of(client),
                f"sys/audit/{AUDIT_DEVICE}",
                f"an audit device of type {current.get('type')} is enabled at {AUDIT_DEVICE}/; "
                "bootstrap will not replace it",
            )
        # An audit device cannot be changed in place; a different file_path is left as it is.
        report.done(item, False)
        return
    lost = send_write(
        client, "PUT", f"sys/audit/{AUDIT_DEVICE}", {"type": "file", "options": {"file_path": AUDIT_FILE}}
    )
    _confirm(client, f"sys/audit/{AUDIT_DEVICE}", "sys/audit", lambda: _audit_is_file(client), lost)
    report.done(item, True)


def ensure_database(
    client: VaultClient, report: Report, cfg: StackConfig, apps: list[App], admin_password: str | None
) -> None:
    vc = _vc(cfg)
    db = vc.database
    assert db is not None
    ensure_secrets_engine(client, report, db.mount, "database")
    roles = sorted({d.role for app in apps for d in (app.vault.dynamic if app.vault else ()) if d.mount == db.mount})
    path = f"{db.mount}/config/{db.connection_name}"
    desired = {
        "plugin_name": db.plugin,
        "connection_url": db.connection_url,
        "username": db.username,
        "allowed_roles": roles,
    }

    def connection() -> dict[str, Any] | None:
        current = read_data(client, path)
        if current is None:
            return None
        details = current.get("connection_details") or {}
        return {
            "plugin_name": current.get("plugin_name"),
            "connection_url": details.get("connection_url"),
            "username": details.get("username"),
            "allowed_roles": sorted(current.get("allowed_roles") or []),
        }

    have = connection()
    item = f"database connection {db.mount}/{db.connection_name}"
    if have is not None and not _differs(have, desired):
        report.done(item, False)
    else:
        if not admin_password:
            problem = "does not exist yet" if have is None else "differs from the stack file"
            raise VaultError(
                address_of(client),
                path,
                f"the connection {problem}; set KSECRETS_DB_ADMIN_PASSWORD to the password of "
                f"{db.username!r} to write it (Vault never returns it, so it is only needed then)",
            )
        body = {**desired, "password": admin_password, "verify_connection": True}
        lost = send_write(client, "POST", path, body, redact=(admin_password,))
        _confirm(client, path, path, lambda: not _differs(connection(), desired), lost)
        report.done(item, True)
    for role in roles:
        ensure_object(
            client,
            report,
            f"database role {db.mount}/{role}",
            f"{db.mount}/roles/{role}",
            {
                "db_name": db.connection_name,
                "creation_statements": creation_statements(role),
                "default_ttl": DB_DEFAULT_TTL,
                "max_ttl": DB_MAX_TTL,
            },
        )


def ensure_kube_auth_config(
    client: VaultClient, report: Report, mount: str, host: str, ca_pem: str | None, reviewer_jwt: str | None
) -> None:
    """`auth/<mount>/config`: host, CA and (for a Vault outside the cluster) the token reviewer JWT.

    Vault never returns the JWT, only `token_reviewer_jwt_set`, so a given JWT cannot be compared
    and is written on every run; without one, a JWT set before is removed (a write of the config
    without it clears it), and Vault in the cluster reviews tokens with its pod's own token.
    """
    path = f"auth/{mount}/config"
    desired: dict[str, Any] = {"kubernetes_host": host}
    if ca_pem:
        desired["kubernetes_ca_cert"] = ca_pem
    current = read_data(client, path)
    wrote = _differs(current, desired) or bool((current or {}).get("token_reviewer_jwt_set")) != bool(reviewer_jwt)
    item = f"auth {mount}/config (host {host})"
    body = desired
    if reviewer_jwt:
        wrote = True
        item = f"auth {mount}/config (host {host}, token reviewer JWT: write-only, written on every run)"
        body = {**desired, "token_reviewer_jwt": reviewer_jwt}
    if wrote:
        lost = send_write(client, "POST", path, body, redact=(reviewer_jwt,) if reviewer_jwt else ())

        def holds() -> bool:
            now = read_data(client, path)
            return not _differs(now, desired) and bool((now or {}).get("token_reviewer_jwt_set")) == bool(reviewer_jwt)

        _confirm(client, path, path, holds, lost)
    report.done(item, wrote)


def bootstrap(
    client: VaultClient,
    cfg: StackConfig,
    *,
    kube_host: str = DEFAULT_KUBE_HOST,
    kube_ca_pem: str | None = None,
    db_admin_password: str | None = None,
    token_reviewer_jwt: str | None = None,
) -> Report:
    """Configure Vault for the stack. Idempotent: a second run writes nothing (but a given
    `token_reviewer_jwt`, which Vault never returns and so cannot be compared).

    `kube_ca_pem` None leaves the CA out of the auth config, so Vault in the cluster uses its own
    pod's CA (and service account token to review app tokens). `token_reviewer_jwt` is for a
    Vault outside the cluster: a token of a service account allowed to create TokenReviews
    (`system:auth-delegator`), which Vault uses to check the tokens clients log in with.
    """
    vc = _vc(cfg)
    apps = _vault_apps(cfg)
    report = Report()
    ensure_secrets_engine(client, report, vc.kv_mount, "kv", {"version": "2"})
    ensure_auth_method(client, report, vc.auth_mount, "kubernetes", cfg.stack)
    ensure_kube_auth_config(client, report, vc.auth_mount, kube_host, kube_ca_pem, token_reviewer_jwt)
    for app in apps:
        ensure_policy(client, report, app_policy_name(cfg, app), app_policy(cfg, app))
        ensure_object(
            client,
            report,
            f"role {app_role(app)} ({app.namespace}/{app.service_account})",
            f"auth/{vc.auth_mount}/role/{app_role(app)}",
            app_role_body(cfg, app),
        )
        if app.rotation:
            ensure_policy(client, report, rotator_policy_name(cfg, app), rotator_policy(cfg, app))
            ensure_object(
                client,
                report,
                f"role {rotator_role(app)} ({app.namespace}/{rotation.rotator_service_account_name(app)})",
                f"auth/{vc.auth_mount}/role/{rotator_role(app)}",
                rotator_role_body(cfg, app),
            )
    if vc.snapshots is not None:
        from ksecrets.manifests import snapshots

        ensure_policy(client, report, snapshots.POLICY, snapshots.policy())
        ensure_object(
            client,
            report,
            f"role {snapshots.VAULT_ROLE} ({vc.namespace}/{snapshots.NAME})",
            f"auth/{vc.auth_mount}/role/{snapshots.VAULT_ROLE}",
            snapshots.role_body(cfg),
        )
    ensure_audit(client, report)
    if vc.database is not None:
        ensure_database(client, report, cfg, apps, db_admin_password)
    return report

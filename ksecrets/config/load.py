"""Stack config → `StackConfig`, from a `Pulumi.<stack>.yaml` file or from Pulumi's own config.

Both paths build the same raw mapping (the `k8s-secrets:` keys without their prefix) and go
through `parse`, so the exporter and `pulumi up` see one model. Every error names the file and
the key path (`apps[1].secretName`); unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from ksecrets import yamlio
from ksecrets.config import model as m
from ksecrets.config import validate as v
from ksecrets.errors import ConfigError, KsecretsError

from ksecrets.config.names import PREFIX, stack_files  # noqa: F401 (stack_files: importable from here too)

# Top-level keys Pulumi itself writes into stack files.
_STACK_FILE_KEYS = {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}

T = TypeVar("T")


class _Node:
    """A value with its key path, so every check can name where it failed."""

    def __init__(self, value: Any, path: str, source: str) -> None:
        self.value = value
        self.path = path
        self.source = source

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(self.source, self.path, problem)

    def child(self, key: str | int, value: Any) -> "_Node":
        if isinstance(key, int):
            return _Node(value, f"{self.path}[{key}]", self.source)
        return _Node(value, f"{self.path}.{key}" if self.path else key, self.source)

    def mapping(self, allowed: set[str]) -> dict[str, "_Node"]:
        if not isinstance(self.value, Mapping):
            raise self.fail(f"must be a mapping, not {_kind(self.value)}")
        out: dict[str, _Node] = {}
        for key, value in self.value.items():
            if not isinstance(key, str):
                raise self.fail(f"key \"{key}\" must be a string")
            if key not in allowed:
                hint = _close(key, allowed)
                raise self.child(key, value).fail(
                    "unknown key" + (f" (did you mean \"{hint}\"?)" if hint else "")
                )
            out[key] = self.child(key, value)
        return out

    def seq(self) -> list["_Node"]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, not {_kind(self.value)}")
        return [self.child(i, item) for i, item in enumerate(self.value)]

    def str(self, check: Callable[[str], str | None] | None = None) -> str:
        if not isinstance(self.value, str) or isinstance(self.value, bool):
            raise self.fail(f"must be a string, not {_kind(self.value)}")
        if check is not None:
            problem = check(self.value)
            if problem:
                raise self.fail(problem)
        return self.value

    def int(self, low: int, high: int) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"must be a whole number, not {_kind(self.value)}")
        if not low <= self.value <= high:
            raise self.fail(f"{self.value} is out of range ({low} to {high})")
        return self.value

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"must be true or false, not {_kind(self.value)}")
        return self.value

    def choice(self, options: tuple[str, ...]) -> str:
        value = self.str()
        if value not in options:
            raise self.fail(f"\"{value}\" is not one of {', '.join(options)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _close(key: str, allowed: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return match[0] if match else None


def _opt(nodes: Mapping[str, _Node], key: str, read: Callable[[_Node], T], default: T) -> T:
    node = nodes.get(key)
    if node is None or node.value is None:
        return default
    return read(node)


def _req(nodes: Mapping[str, _Node], key: str, read: Callable[[_Node], T], parent: _Node) -> T:
    node = nodes.get(key)
    if node is None or node.value is None:
        raise parent.child(key, None).fail("is required")
    return read(node)


def _str_map(node: _Node, check_key: Callable[[str], str | None], check_value=None) -> tuple[tuple[str, str], ...]:
    if not isinstance(node.value, Mapping):
        raise node.fail(f"must be a mapping, not {_kind(node.value)}")
    out = []
    for key, value in node.value.items():
        child = node.child(str(key), value)
        if not isinstance(key, str) or check_key(key):
            raise child.fail(check_key(str(key)) or "key must be a string")
        out.append((key, child.str(check_value)))
    return tuple(out)


# --- sections ----------------------------------------------------------------------------------

def _flux(node: _Node) -> m.FluxConfig:
    f = node.mapping({"namespace", "sourceName", "interval", "path"})
    return m.FluxConfig(
        namespace=_opt(f, "namespace", lambda n: n.str(v.dns_label), "flux-system"),
        source_name=_opt(f, "sourceName", lambda n: n.str(v.dns_subdomain), "flux-system"),
        interval=_opt(f, "interval", lambda n: n.str(v.duration), "10m"),
        path=_opt(f, "path", lambda n: n.str(), ""),
    )


def _s3(node: _Node) -> m.S3Config:
    f = node.mapping({"endpoint", "bucket", "region", "prefix", "credentialsSecret"})
    return m.S3Config(
        endpoint=_req(f, "endpoint", lambda n: n.str(_http_url), node),
        bucket=_req(f, "bucket", lambda n: n.str(v.dns_subdomain), node),
        credentials_secret=_req(f, "credentialsSecret", lambda n: n.str(v.dns_subdomain), node),
        region=_opt(f, "region", lambda n: n.str(v.dns_label), "us-east-1"),
        prefix=_opt(f, "prefix", _Node.str, ""),
    )


def _sealed_secrets(node: _Node) -> m.SealedSecretsConfig:
    f = node.mapping({"chartVersion", "chartRepository", "controllerName", "controllerNamespace",
                      "certificate", "keyRenewPeriod", "keyBackup"})
    d = m.SealedSecretsConfig()

    def key_backup(n: _Node) -> m.KeyBackupConfig:
        k = n.mapping({"publicKey", "image", "schedule", "storageSize", "storageClass", "maxDelay", "s3"})
        kd = m.KeyBackupConfig(public_key="")
        return m.KeyBackupConfig(
            public_key=_req(k, "publicKey", lambda x: x.str(), n),
            image=_req(k, "image", lambda x: x.str(v.image), n),
            schedule=_opt(k, "schedule", lambda x: x.str(v.cron), kd.schedule),
            storage_size=_opt(k, "storageSize", lambda x: x.str(v.quantity), kd.storage_size),
            storage_class=_opt(k, "storageClass", lambda x: x.str(v.dns_subdomain), None),
            max_delay_seconds=_opt(k, "maxDelay", lambda x: _seconds(x.str(v.duration)), kd.max_delay_seconds),
            s3=_opt(k, "s3", _s3, None),
        )

    return m.SealedSecretsConfig(
        chart_version=_opt(f, "chartVersion", lambda n: n.str(v.chart_version), d.chart_version),
        chart_repository=_opt(f, "chartRepository", lambda n: n.str(), d.chart_repository),
        controller_name=_opt(f, "controllerName", lambda n: n.str(v.dns_label), d.controller_name),
        controller_namespace=_opt(f, "controllerNamespace", lambda n: n.str(v.dns_label), d.controller_namespace),
        certificate=_opt(f, "certificate", lambda n: n.str(), None),
        key_renew_period=_opt(f, "keyRenewPeriod", lambda n: n.str(v.duration), None),
        key_backup=_opt(f, "keyBackup", key_backup, None),
    )


def _vault(node: _Node) -> m.VaultConfig:
    f = node.mapping({"chartVersion", "chartRepository", "namespace", "replicas", "dataStorageSize",
                      "auditStorageSize", "storageClass", "tls", "address", "kvMount", "authMount",
                      "audience", "operator", "database", "configure", "snapshots"})
    d = m.VaultConfig()

    def snapshots(n: _Node) -> m.VaultSnapshots:
        sn = n.mapping({"schedule", "retain", "storageSize", "storageClass", "maxAge", "s3"})
        sd = m.VaultSnapshots()
        return m.VaultSnapshots(
            schedule=_opt(sn, "schedule", lambda x: x.str(v.cron), sd.schedule),
            retain=_opt(sn, "retain", lambda x: x.int(1, 1000), sd.retain),
            storage_size=_opt(sn, "storageSize", lambda x: x.str(v.quantity), sd.storage_size),
            storage_class=_opt(sn, "storageClass", lambda x: x.str(v.dns_subdomain), None),
            max_age_seconds=_opt(sn, "maxAge", lambda x: _seconds(x.str(v.duration)), sd.max_age_seconds),
            s3=_opt(sn, "s3", _s3, None),
        )

    def tls(n: _Node) -> m.VaultTLS:
        t = n.mapping({"enabled", "secretName", "caSecretName"})
        return m.VaultTLS(
            enabled=_opt(t, "enabled", _Node.bool, False),
            secret_name=_opt(t, "secretName", lambda x: x.str(v.dns_subdomain), "vault-tls"),
            ca_secret_name=_opt(t, "caSecretName", lambda x: x.str(v.dns_subdomain), "vault-ca"),
        )

    def operator(n: _Node) -> m.VaultOperatorConfig:
        o = n.mapping({"chartVersion", "namespace"})
        od = m.VaultOperatorConfig()
        return m.VaultOperatorConfig(
            chart_version=_opt(o, "chartVersion", lambda x: x.str(v.chart_version), od.chart_version),
            namespace=_opt(o, "namespace", lambda x: x.str(v.dns_label), od.namespace),
        )

    def database(n: _Node) -> m.VaultDatabase:
        b = n.mapping({"mount", "connectionName", "plugin", "connectionUrl", "username"})
        return m.VaultDatabase(
            mount=_opt(b, "mount", lambda x: x.str(_mount_path), "database"),
            connection_name=_opt(b, "connectionName", lambda x: x.str(v.vault_name), "postgres"),
            plugin=_opt(b, "plugin", _Node.str, "postgresql-database-plugin"),
            connection_url=_req(b, "connectionUrl", _check_connection_url, n),
            username=_req(b, "username", _Node.str, n),
        )

    return m.VaultConfig(
        chart_version=_opt(f, "chartVersion", lambda n: n.str(v.chart_version), d.chart_version),
        chart_repository=_opt(f, "chartRepository", _Node.str, d.chart_repository),
        namespace=_opt(f, "namespace", lambda n: n.str(v.dns_label), d.namespace),
        replicas=_opt(f, "replicas", lambda n: n.int(1, 9), d.replicas),
        data_storage_size=_opt(f, "dataStorageSize", lambda n: n.str(v.quantity), d.data_storage_size),
        audit_storage_size=_opt(f, "auditStorageSize", lambda n: n.str(v.quantity), d.audit_storage_size),
        storage_class=_opt(f, "storageClass", lambda n: n.str(v.dns_subdomain), None),
        tls=_opt(f, "tls", tls, m.VaultTLS()),
        address=_opt(f, "address", _Node.str, ""),
        kv_mount=_opt(f, "kvMount", lambda n: n.str(_mount_path), d.kv_mount),
        auth_mount=_opt(f, "authMount", lambda n: n.str(_mount_path), d.auth_mount),
        audience=_opt(f, "audience", _Node.str, d.audience),
        operator=_opt(f, "operator", operator, m.VaultOperatorConfig()),
        database=_opt(f, "database", database, None),
        configure=_opt(f, "configure", _Node.bool, False),
        snapshots=_opt(f, "snapshots", snapshots, None),
    )


def _check_connection_url(node: _Node) -> str:
    url = node.str()
    # A password in the URL would put a secret into Git; Vault fills {{password}} itself.
    if "{{password}}" not in url:
        raise node.fail("must use {{username}} and {{password}} templates, never a literal password")
    return url


# Every name from the stack file that becomes part of a Vault request path is checked here.
_mount_path = v.vault_mount
_vault_path = v.vault_path


def _deployment(node: _Node) -> m.Deployment:
    f = node.mapping({"name", "image", "replicas", "port", "envFrom", "env", "runAsUser", "runAsGroup"})

    def env(n: _Node) -> tuple[m.EnvFromKey, ...]:
        return tuple(m.EnvFromKey(name=k, key=val) for k, val in _str_map(n, v.env_var_name, v.secret_key))

    return m.Deployment(
        name=_req(f, "name", lambda n: n.str(v.dns_label), node),
        image=_req(f, "image", lambda n: n.str(v.image), node),
        replicas=_opt(f, "replicas", lambda n: n.int(0, 1000), 1),
        port=_opt(f, "port", lambda n: n.int(1, 65535), None),
        env_from=_opt(f, "envFrom", _Node.bool, True),
        env=_opt(f, "env", env, ()),
        # Never 0: root is what runAsNonRoot refuses. Linux uids are 32-bit.
        run_as_user=_opt(f, "runAsUser", lambda n: n.int(1, 2**31 - 1), m.DEFAULT_RUN_AS_USER),
        run_as_group=_opt(f, "runAsGroup", lambda n: n.int(1, 2**31 - 1), m.DEFAULT_RUN_AS_USER),
    )


def _postgres(node: _Node) -> m.PostgresTarget:
    f = node.mapping({"host", "port", "database", "role", "adminSecret", "mode", "usernameKey"})
    target = m.PostgresTarget(
        host=_req(f, "host", _Node.str, node),
        role=_req(f, "role", _Node.str, node),
        port=_opt(f, "port", lambda n: n.int(1, 65535), 5432),
        database=_opt(f, "database", _Node.str, "postgres"),
        admin_secret=_req(f, "adminSecret", lambda n: n.str(v.dns_subdomain), node),
        mode=_opt(f, "mode", lambda n: n.choice(("single", "dual")), "single"),
        username_key=_opt(f, "usernameKey", lambda n: n.str(v.secret_key), ""),
    )
    if target.mode == "dual" and not target.username_key:
        raise node.child("usernameKey", None).fail("is required when mode is dual (the key that holds the login's name)")
    if target.mode == "single" and target.username_key:
        raise node.child("usernameKey", None).fail("is only used when mode is dual")
    if target.mode == "dual" and len(target.role) > 61:
        raise node.child("role", None).fail("is too long for dual mode (the logins <role>_a/_b must fit 63 characters)")
    return target


def _rotation_spec(node: _Node, default_schedule: str) -> m.RotationSpec:
    f = node.mapping({"key", "schedule", "generator", "length", "postgres", "restart"})
    generator = _opt(f, "generator", lambda n: n.choice(("random", "postgres")), "random")
    spec = m.RotationSpec(
        key=_req(f, "key", lambda n: n.str(v.secret_key), node),
        schedule=_opt(f, "schedule", lambda n: n.str(v.cron), default_schedule),
        generator=generator,
        length=_opt(f, "length", lambda n: n.int(16, 256), 32),
        postgres=_opt(f, "postgres", _postgres, None),
        restart=_opt(f, "restart", lambda n: tuple(x.str(v.dns_label) for x in n.seq()), ()),
    )
    if generator == "postgres" and spec.postgres is None:
        raise node.child("postgres", None).fail("is required when generator is postgres")
    return spec


def _app_vault(node: _Node, app_name: str) -> m.AppVault:
    f = node.mapping({"path", "refreshAfter", "role", "dynamic"})

    def dynamic(n: _Node) -> tuple[m.DynamicSecretSpec, ...]:
        out = []
        for item in n.seq():
            d = item.mapping({"name", "role", "mount", "renewalPercent"})
            out.append(m.DynamicSecretSpec(
                name=_req(d, "name", lambda x: x.str(v.dns_subdomain), item),
                role=_req(d, "role", lambda x: x.str(v.vault_name), item),
                mount=_opt(d, "mount", lambda x: x.str(_mount_path), "database"),
                renewal_percent=_opt(d, "renewalPercent", lambda x: x.int(1, 90), 67),
            ))
        return tuple(out)

    return m.AppVault(
        path=_opt(f, "path", lambda n: n.str(_vault_path), app_name),
        refresh_after=_opt(f, "refreshAfter", lambda n: n.str(v.duration), "60s"),
        role=_opt(f, "role", lambda n: n.str(v.vault_name), app_name),
        dynamic=_opt(f, "dynamic", dynamic, ()),
    )


def _app(node: _Node, default_schedule: str) -> m.App:
    f = node.mapping({"name", "namespace", "serviceAccount", "secretName", "deployments", "keys",
                      "rotation", "vault"})
    name = _req(f, "name", lambda n: n.str(v.dns_label), node)
    return m.App(
        name=name,
        namespace=_req(f, "namespace", lambda n: n.str(v.dns_label), node),
        service_account=_opt(f, "serviceAccount", lambda n: n.str(v.dns_subdomain), name),
        secret_name=_opt(f, "secretName", lambda n: n.str(v.dns_subdomain), f"{name}-secrets"),
        deployments=_opt(f, "deployments", lambda n: tuple(_deployment(x) for x in n.seq()), ()),
        keys=_opt(f, "keys", lambda n: tuple(x.str(v.secret_key) for x in n.seq()), ()),
        rotation=_opt(f, "rotation", lambda n: tuple(_rotation_spec(x, default_schedule) for x in n.seq()), ()),
        vault=_opt(f, "vault", lambda n: _app_vault(n, name), None),
    )


def _sealed_entry(node: _Node) -> m.SealedEntry:
    f = node.mapping({"name", "namespace", "scope", "type", "certificateFingerprint",
                      "encryptedData", "digests", "labels", "annotations", "immutable"})
    return m.SealedEntry(
        name=_req(f, "name", lambda n: n.str(v.dns_subdomain), node),
        namespace=_req(f, "namespace", lambda n: n.str(v.dns_label), node),
        scope=_opt(f, "scope", lambda n: n.choice(m.SCOPES), "strict"),
        type=_opt(f, "type", _Node.str, "Opaque"),
        certificate_fingerprint=_opt(f, "certificateFingerprint", _Node.str, None),
        encrypted_data=tuple(sorted(_opt(f, "encryptedData", lambda n: _str_map(n, v.secret_key), ()))),
        digests=tuple(sorted(_opt(f, "digests", lambda n: _str_map(n, v.secret_key), ()))),
        labels=_opt(f, "labels", lambda n: _str_map(n, v.qualified_name), ()),
        annotations=_opt(f, "annotations", lambda n: _str_map(n, v.qualified_name), ()),
        immutable=_opt(f, "immutable", _Node.bool, None),
    )


def _manual_values(node: _Node) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Only the shape: secretName → keys. Values are Pulumi secrets, read under `pulumi up`."""
    if not isinstance(node.value, Mapping):
        raise node.fail(f"must be a mapping, not {_kind(node.value)}")
    out = []
    for secret_name, values in node.value.items():
        child = node.child(str(secret_name), values)
        problem = v.dns_subdomain(str(secret_name))
        if problem:
            raise child.fail(problem)
        if not isinstance(values, Mapping):
            raise child.fail(f"must be a mapping of keys to secret values, not {_kind(values)}")
        for key in values:
            if v.secret_key(str(key)):
                raise child.child(str(key), None).fail(v.secret_key(str(key)))
        out.append((str(secret_name), tuple(sorted(str(k) for k in values))))
    return tuple(sorted(out))


def _rotation(node: _Node) -> m.RotationConfig:
    f = node.mapping({"image", "defaultSchedule", "successfulJobsHistoryLimit", "failedJobsHistoryLimit",
                      "runAsUser", "runAsGroup", "minInterval"})
    d = m.RotationConfig()
    return m.RotationConfig(
        image=_opt(f, "image", lambda n: n.str(v.image), d.image),
        default_schedule=_opt(f, "defaultSchedule", lambda n: n.str(v.cron), d.default_schedule),
        successful_jobs_history_limit=_opt(f, "successfulJobsHistoryLimit", lambda n: n.int(0, 100), 3),
        failed_jobs_history_limit=_opt(f, "failedJobsHistoryLimit", lambda n: n.int(0, 100), 3),
        run_as_user=_opt(f, "runAsUser", lambda n: n.int(1, 2**31 - 1), d.run_as_user),
        run_as_group=_opt(f, "runAsGroup", lambda n: n.int(1, 2**31 - 1), d.run_as_group),
        min_interval_seconds=_opt(f, "minInterval", lambda n: _seconds(n.str(v.duration)), d.min_interval_seconds),
    )


def _seconds(text: str) -> int:
    """A duration already checked by `v.duration` (30s, 10m, 1h30m, 7d...) in seconds."""
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text))
    return int(total)


def _http_url(value: str) -> str | None:
    if not value.startswith(("https://", "http://")) or " " in value or "#" in value:
        return f"{value!r} is not an http(s) URL without a #fragment"
    return None


def _monitoring(node: _Node) -> m.MonitoringConfig:
    f = node.mapping({"enabled", "namespace", "ruleLabels", "certificateExpiryWarningDays", "runbookBaseUrl",
                      "prometheusOperator"})
    d = m.MonitoringConfig()
    return m.MonitoringConfig(
        enabled=_opt(f, "enabled", _Node.bool, True),
        namespace=_opt(f, "namespace", lambda n: n.str(v.dns_label), d.namespace),
        rule_labels=_opt(f, "ruleLabels", lambda n: _str_map(n, v.dns_subdomain), d.rule_labels),
        certificate_expiry_warning_days=_opt(f, "certificateExpiryWarningDays", lambda n: n.int(1, 365), 30),
        runbook_base_url=_opt(f, "runbookBaseUrl", lambda n: n.str(_http_url), d.runbook_base_url),
        prometheus_operator=_opt(f, "prometheusOperator", _Node.bool, None),
    )


# Stack keys whose values may be placeholders (see `ksecrets.preflight`): allowPlaceholders lists them.
PLACEHOLDER_KEYS = ("apps.deployments.image", "rotation.image", "monitoring.runbookBaseUrl")


def _placeholder_key(value: str) -> str | None:
    if value not in PLACEHOLDER_KEYS:
        return f"\"{value}\" is not one of {', '.join(PLACEHOLDER_KEYS)}"
    return None


def stack_name(value: str) -> str | None:
    """Pulumi accepts `[A-Za-z0-9_.-]` in stack names; the stack's name goes into object names
    (`<stack>-apps`, `k8s-secrets-<stack>`), which Kubernetes wants as lower-case DNS labels."""
    if v.dns_label(value):
        return (f"stack name \"{value}\" cannot be used in Kubernetes object names: use lower-case letters, "
                "digits and '-' (at most 63 characters); rename it with `pulumi stack rename`")
    return None


KEYS = {"backend", "namespaces", "externalNamespaces", "flux", "sealedSecrets", "vault", "apps", "sealed",
        "manualValues", "rotation", "monitoring", "allowPlaceholders", "vaultMigration"}


def parse(raw: Mapping[str, Any], *, stack: str, source: str, root: str = ".") -> m.StackConfig:
    """Validate the `k8s-secrets:` keys of one stack (prefix removed) into a StackConfig."""
    top = _Node(raw, "", source)
    problem = stack_name(stack)
    if problem:
        raise ConfigError(source, "", problem)
    f = top.mapping(KEYS)
    rotation = _opt(f, "rotation", _rotation, m.RotationConfig())
    backend = _req(f, "backend", lambda n: n.choice(m.BACKENDS), top)
    vault = _opt(f, "vault", _vault, None)
    if backend == "vault" and vault is None:
        vault = m.VaultConfig()
    cfg = m.StackConfig(
        stack=stack,
        source=source,
        root=root,
        backend=backend,
        namespaces=_opt(f, "namespaces", lambda n: tuple(x.str(v.dns_label) for x in n.seq()), ()),
        external_namespaces=_opt(f, "externalNamespaces", lambda n: tuple(x.str(v.dns_label) for x in n.seq()), ()),
        flux=_opt(f, "flux", _flux, m.FluxConfig()),
        sealed_secrets=_opt(f, "sealedSecrets", _sealed_secrets, m.SealedSecretsConfig()),
        vault=vault,
        apps=_opt(f, "apps", lambda n: tuple(_app(x, rotation.default_schedule) for x in n.seq()), ()),
        sealed=_opt(f, "sealed", lambda n: tuple(_sealed_entry(x) for x in n.seq()), ()),
        manual_keys=_opt(f, "manualValues", _manual_values, ()),
        rotation=rotation,
        monitoring=_opt(f, "monitoring", _monitoring, m.MonitoringConfig()),
        allow_placeholders=_opt(f, "allowPlaceholders", lambda n: tuple(x.str(_placeholder_key) for x in n.seq()), ()),
        vault_migration=_opt(f, "vaultMigration", lambda n: n.choice(m.MIGRATION_PHASES), None),
    )
    _cross_checks(cfg, f, top)
    _namespace_checks(cfg, f, top)
    _migration_checks(cfg, f, top)
    return cfg


def _cross_checks(cfg: m.StackConfig, f: Mapping[str, _Node], top: _Node) -> None:
    """Rules that span sections: unique names, references that must resolve."""
    apps_node = f.get("apps")
    seen: dict[tuple[str, str], int] = {}
    secrets_seen: dict[tuple[str, str], int] = {}
    for i, app in enumerate(cfg.apps):
        at = apps_node.child(i, None) if apps_node else top
        if (app.namespace, app.name) in seen:
            raise at.child("name", None).fail(f"\"{app.name}\" is already used by apps[{seen[(app.namespace, app.name)]}]")
        seen[(app.namespace, app.name)] = i
        if (app.namespace, app.secret_name) in secrets_seen:
            raise at.child("secretName", None).fail(
                f"\"{app.secret_name}\" is already used by apps[{secrets_seen[(app.namespace, app.secret_name)]}]")
        secrets_seen[(app.namespace, app.secret_name)] = i
        deployments = {d.name for d in app.deployments}
        if len(deployments) != len(app.deployments):
            raise at.child("deployments", None).fail("deployment names must be unique")
        known_keys = set(cfg.secret_keys(app))
        for j, d in enumerate(app.deployments):
            for e in d.env:
                if known_keys and e.key not in known_keys:
                    raise at.child("deployments", None).child(j, None).child("env", None).child(e.name, None).fail(
                        f"key \"{e.key}\" is not in Secret \"{app.secret_name}\" (keys: {', '.join(sorted(known_keys))})")
        for j, r in enumerate(app.rotation):
            rat = at.child("rotation", None).child(j, None)
            first = next(k for k, other in enumerate(app.rotation) if other.key == r.key)
            if first != j:
                raise rat.child("key", None).fail(f"\"{r.key}\" is already rotated by rotation[{first}]")
            if r.key not in known_keys:
                raise rat.child("key", None).fail(
                    f"\"{r.key}\" is not a key of Secret \"{app.secret_name}\""
                    + (f" (keys: {', '.join(sorted(known_keys))})" if known_keys else " (it has no known keys)"))
            for target in r.restart:
                if target not in deployments:
                    raise rat.child("restart", None).fail(
                        f"Deployment \"{target}\" is not one of app \"{app.name}\"'s deployments")
            if r.generator == "postgres" and cfg.backend != "vault":
                raise rat.child("generator", None).fail("postgres rotation needs the vault backend")
            if r.generator == "postgres" and r.postgres is not None and r.postgres.mode == "dual":
                ukey = r.postgres.username_key
                uat = rat.child("postgres", None).child("usernameKey", None)
                if known_keys and ukey not in known_keys:
                    raise uat.fail(f"\"{ukey}\" is not a key of Secret \"{app.secret_name}\" "
                                   f"(keys: {', '.join(sorted(known_keys))})")
                if ukey == r.key or any(o.key == ukey for o in app.rotation):
                    raise uat.fail(f"\"{ukey}\" is rotated itself; the username key is written by this rotation")
            if r.generator == "postgres":
                other = next((k for k, o in enumerate(app.rotation[:j])
                              if o.generator == "postgres" and o.schedule == r.schedule), None)
                if other is not None:
                    raise rat.child("schedule", None).fail(
                        f"rotation[{other}] already rotates a PostgreSQL password on \"{r.schedule}\"; one "
                        "rotation (one kv-v2 version) changes at most one: give this one another schedule")
        if cfg.backend == "vault" and app.vault is None:
            raise at.child("vault", None).fail("is required when backend is vault (at least {path: ...})")
    if cfg.backend == "sealed-secrets" and cfg.apps and not cfg.sealed_secrets.certificate:
        raise top.child("sealedSecrets", None).child("certificate", None).fail(
            "is required when backend is sealed-secrets (the public sealing certificate, e.g. certs/<stack>.pem)")
    first_seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(cfg.sealed):
        key = (entry.namespace, entry.name)
        if key in first_seen:
            raise f["sealed"].child(i, None).child("name", None).fail(
                f"{entry.namespace}/{entry.name} is already sealed in sealed[{first_seen[key]}]")
        first_seen[key] = i


def _namespace_checks(cfg: m.StackConfig, f: Mapping[str, _Node], top: _Node) -> None:
    """System and shared namespaces are never created, labelled or pruned by a stack."""
    shared = set(cfg.shared_namespaces())
    external = set(cfg.external_namespaces)
    vault_owned = set(cfg.vault_namespaces())
    for i, name in enumerate(cfg.namespaces):
        at = f["namespaces"].child(i, name)
        if name in shared:
            raise at.fail(f"\"{name}\" is a system or shared namespace; a stack never creates, labels or prunes it "
                          "(list it under externalNamespaces to place objects there)")
        if name in external:
            raise at.fail(f"\"{name}\" is also in externalNamespaces; a namespace is either created here or not")
        if name in vault_owned:
            raise at.fail(f"\"{name}\" is where this stack installs Vault or its operator (with their own Pod "
                          "Security level); do not list it here")
    for i, app in enumerate(cfg.apps):
        at = f["apps"].child(i, None).child("namespace", app.namespace)
        if app.namespace in vault_owned:
            raise at.fail(f"\"{app.namespace}\" is Vault's or its operator's namespace; run apps elsewhere")
        if app.namespace in shared and app.namespace not in external:
            raise at.fail(f"\"{app.namespace}\" is a system or shared namespace; a stack never creates, labels or "
                          "prunes it: add it to externalNamespaces to deploy into it as it is")
    if cfg.vault is not None and cfg.installs_vault:
        for key, name in (("namespace", cfg.vault.namespace), ("operator.namespace", cfg.vault.operator.namespace)):
            if name in shared and name not in external:
                raise top.child("vault", None).child(key, name).fail(
                    f"\"{name}\" is a system or shared namespace; give Vault its own (or list it under externalNamespaces)")


def _migration_checks(cfg: m.StackConfig, f: Mapping[str, _Node], top: _Node) -> None:
    phase = cfg.vault_migration
    if phase is None:
        return
    at = top.child("vaultMigration", phase)
    wanted = {"install": "sealed-secrets", "handover": "vault"}[phase]
    if cfg.backend != wanted:
        raise at.fail(f"phase {phase} needs backend {wanted}, not {cfg.backend}")
    if phase == "install" and cfg.vault is None:
        raise at.fail("phase install needs a vault section (the Vault this stack installs)")


# --- sources -----------------------------------------------------------------------------------

def stack_name_from_path(path: Path) -> str:
    name = path.name
    if not (name.startswith("Pulumi.") and name.endswith(".yaml")) or name == "Pulumi.yaml":
        raise ConfigError(str(path), "", "is not a stack file (Pulumi.<stack>.yaml)")
    return name[len("Pulumi."):-len(".yaml")]


def raw_from_stack_file(path: Path) -> dict[str, Any]:
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "no such stack file") from None
    return raw_from_text(text, source)


def raw_from_text(text: str, source: str) -> dict[str, Any]:
    """The `k8s-secrets:` keys (prefix removed) of a stack file's text; other sections checked."""
    doc = yamlio.load(text, source)
    top = _Node(doc if doc is not None else {}, "", source)
    sections = top.mapping(_STACK_FILE_KEYS)
    config = sections.get("config")
    if config is None or config.value is None:
        raise ConfigError(source, "config", "is required")
    if not isinstance(config.value, Mapping):
        raise config.fail("must be a mapping")
    raw: dict[str, Any] = {}
    for key, value in config.value.items():
        if not isinstance(key, str):
            raise config.fail(f"key \"{key}\" must be a string")
        if key.startswith(PREFIX):
            raw[key[len(PREFIX):]] = value
        elif ":" not in key:
            # Pulumi treats an unprefixed key as the project's own; so do we.
            raw[key] = value
    return raw


def load_stack_file(path: str | os.PathLike[str]) -> m.StackConfig:
    p = Path(path)
    stack = stack_name_from_path(p)
    raw = raw_from_stack_file(p)
    # Error messages name the file as the user sees it in the repo: "Pulumi.staging.yaml".
    # The root is where the file is named (a symlinked stack file's repo), not the link's target.
    return parse(raw, stack=stack, source=p.name, root=os.path.abspath(p.parent))


_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_stack_name(stack: str) -> str:
    """Pulumi's stack name characters (letters, digits, `-`, `_`, `.`): never a path."""
    if not _STACK_NAME.fullmatch(stack or "") or ".." in stack:
        shown = stack if len(stack) <= 64 else stack[:64] + "..."
        raise KsecretsError(f"--stack {shown!r}: not a stack name (letters, digits, '-', '_' and '.'; no '/' or '..')")
    return stack


def stack_path(stack: str, root: str | os.PathLike[str] = ".") -> Path:
    """`<root>/Pulumi.<stack>.yaml`, for a stack name that cannot leave `root`."""
    return Path(root) / f"Pulumi.{check_stack_name(stack)}.yaml"


def load_stack(stack: str, root: str | os.PathLike[str] = ".") -> m.StackConfig:
    return load_stack_file(stack_path(stack, root))

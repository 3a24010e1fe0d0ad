"""The typed model of one stack (environment). Frozen dataclasses: builders read, never write.

Field names are Python's; the stack file spells them in camelCase (see `ksecrets.config.load`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

Backend = Literal["manual", "sealed-secrets", "vault"]
BACKENDS: tuple[str, ...] = ("manual", "sealed-secrets", "vault")
Scope = Literal["strict", "namespace-wide", "cluster-wide"]
SCOPES: tuple[str, ...] = ("strict", "namespace-wide", "cluster-wide")

DEFAULT_ROTATION_SCHEDULE = "0 2 * * 0"  # weekly, Sunday 02:00, as in the guide
# The numeric user and group our containers run as unless a Deployment says otherwise. The
# kubelet can only verify `runAsNonRoot` against a numeric uid: an image whose USER is a name
# (podinfo's is `app`) fails with "image has non-numeric user" without one. 65532 is the
# conventional `nonroot` uid of distroless images.
DEFAULT_RUN_AS_USER = 65532

# Namespaces every cluster has: a stack never creates, labels or prunes them.
SYSTEM_NAMESPACES: tuple[str, ...] = ("default", "kube-node-lease", "kube-public", "kube-system")
# The sealed → vault migration (README "From sealed-secrets to Vault"): `install` adds Vault and the
# operator to a sealed-secrets stack, `handover` is the vault stack whose operator takes over the
# Secrets the SealedSecrets made.
MIGRATION_PHASES: tuple[str, ...] = ("install", "handover")


@dataclass(frozen=True)
class FluxConfig:
    """Where Flux runs and which Git source it reconciles k8s/<stack>/ from."""

    namespace: str = "flux-system"
    source_name: str = "flux-system"  # the GitRepository `flux bootstrap` creates
    interval: str = "10m"
    path: str = ""  # in the Git repository; default ./k8s/<stack>


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible bucket a disaster-recovery CronJob also uploads to (path-style, SigV4)."""

    endpoint: str  # https://s3.eu-west-1.amazonaws.com, http://minio.backup.svc:9000
    bucket: str
    credentials_secret: str  # Secret in the CronJob's namespace: accessKeyId, secretAccessKey
    region: str = "us-east-1"
    prefix: str = ""


@dataclass(frozen=True)
class KeyBackupConfig:
    """The sealing-key backup CronJob: new key Secrets encrypted to an offline public key."""

    public_key: str  # certs/<stack>-keybackup.pub, relative to the stack file
    # An image with the project and its `keybackup` extra (cryptography): the rotator image leaves
    # cryptography out on purpose, so it cannot run the key backup.
    image: str = ""
    schedule: str = "17 * * * *"  # hourly
    storage_size: str = "1Gi"
    storage_class: str | None = None
    # SealingKeyNotBackedUp fires when the newest key is not covered by a success this long.
    max_delay_seconds: int = 3 * 3600
    s3: S3Config | None = None


@dataclass(frozen=True)
class SealedSecretsConfig:
    chart_version: str = "2.18.5"
    chart_repository: str = "https://bitnami-labs.github.io/sealed-secrets"
    controller_name: str = "sealed-secrets-controller"
    controller_namespace: str = "kube-system"
    certificate: str | None = None  # certs/<stack>.pem, relative to the stack file
    key_renew_period: str | None = None  # controller default 720h
    key_backup: KeyBackupConfig | None = None


@dataclass(frozen=True)
class VaultTLS:
    enabled: bool = False
    secret_name: str = "vault-tls"  # kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt
    # A Secret holding only ca.crt, in the operator's namespace, for VaultConnection.caCertSecretRef
    # (the server's Secret also holds its private key, which the operator must not see).
    ca_secret_name: str = "vault-ca"


@dataclass(frozen=True)
class VaultDatabase:
    """The database secrets engine for dynamic credentials (PostgreSQL)."""

    mount: str = "database"
    connection_name: str = "postgres"
    plugin: str = "postgresql-database-plugin"
    connection_url: str = ""  # postgresql://{{username}}:{{password}}@host:5432/db
    username: str = ""  # the admin Vault logs in as; its password is pushed, never in config


@dataclass(frozen=True)
class VaultOperatorConfig:
    chart_version: str = "1.4.1"
    namespace: str = "vault-secrets-operator-system"


@dataclass(frozen=True)
class VaultSnapshots:
    """Raft snapshots on a schedule (a CronJob in Vault's namespace) into a PersistentVolumeClaim."""

    schedule: str = "0 3 * * *"  # daily, 03:00 UTC
    retain: int = 14  # snapshot files kept on the volume
    storage_size: str = "10Gi"
    storage_class: str | None = None
    # VaultSnapshotTooOld fires when the CronJob's last success is older than this.
    max_age_seconds: int = 26 * 3600
    s3: S3Config | None = None


@dataclass(frozen=True)
class VaultConfig:
    chart_version: str = "0.34.1"
    chart_repository: str = "https://helm.releases.hashicorp.com"
    namespace: str = "vault"
    replicas: int = 3
    data_storage_size: str = "10Gi"
    audit_storage_size: str = "10Gi"
    storage_class: str | None = None
    tls: VaultTLS = field(default_factory=VaultTLS)
    address: str = ""  # default: http(s)://vault.<namespace>.svc:8200
    kv_mount: str = "secret"
    auth_mount: str = "kubernetes"
    audience: str = "vault"
    operator: VaultOperatorConfig = field(default_factory=VaultOperatorConfig)
    database: VaultDatabase | None = None
    # Configure Vault itself (kv, auth, policies, roles, audit) during `pulumi up` with the same
    # code as `ksecrets vault bootstrap`. Off until Vault is initialised and unsealed: a fresh
    # Vault cannot be configured.
    configure: bool = False
    snapshots: VaultSnapshots | None = None

    @property
    def service_address(self) -> str:
        if self.address:
            return self.address
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://vault.{self.namespace}.svc:8200"


@dataclass(frozen=True)
class EnvFromKey:
    """One environment variable read from one key of the app's Secret (secretKeyRef)."""

    name: str
    key: str


@dataclass(frozen=True)
class Deployment:
    """A Deployment that consumes the app's Secret."""

    name: str
    image: str
    replicas: int = 1
    port: int | None = None
    env_from: bool = True  # envFrom.secretRef: every key as a variable
    env: tuple[EnvFromKey, ...] = ()  # env[].valueFrom.secretKeyRef
    run_as_user: int = DEFAULT_RUN_AS_USER
    run_as_group: int = DEFAULT_RUN_AS_USER


@dataclass(frozen=True)
class PostgresTarget:
    """Where a rotated database password lives: the rotator runs ALTER ROLE here first."""

    host: str
    role: str
    port: int = 5432
    database: str = "postgres"
    admin_secret: str = ""  # Secret (same namespace) with keys username/password of an admin
    # single: ALTER the password of `role` itself. dual: `role` is a group role; two logins
    # `<role>_a`/`<role>_b` inherit it and take turns, the Secret's `username_key` names the one in use.
    mode: Literal["single", "dual"] = "single"
    username_key: str = ""


@dataclass(frozen=True)
class RotationSpec:
    key: str
    schedule: str = DEFAULT_ROTATION_SCHEDULE
    generator: Literal["random", "postgres"] = "random"
    length: int = 32
    postgres: PostgresTarget | None = None
    restart: tuple[str, ...] = ()  # Deployments to restart; default: all of the app's


@dataclass(frozen=True)
class DynamicSecretSpec:
    """A VaultDynamicSecret: database credentials Vault makes per lease."""

    name: str  # the destination Secret
    role: str  # the database role in Vault
    mount: str = "database"
    renewal_percent: int = 67


@dataclass(frozen=True)
class AppVault:
    path: str  # kv-v2 path under the stack's mount
    refresh_after: str = "60s"
    role: str = ""  # Vault kubernetes-auth role; default the app name
    dynamic: tuple[DynamicSecretSpec, ...] = ()


@dataclass(frozen=True)
class App:
    name: str
    namespace: str
    service_account: str
    secret_name: str
    deployments: tuple[Deployment, ...] = ()
    keys: tuple[str, ...] = ()  # declared keys of the Secret (vault and manual backends)
    rotation: tuple[RotationSpec, ...] = ()
    vault: AppVault | None = None


@dataclass(frozen=True)
class SealedEntry:
    """One Secret's sealed values, as `ksecrets seal --stack` stores them."""

    name: str
    namespace: str
    scope: str = "strict"
    type: str = "Opaque"
    certificate_fingerprint: str | None = None
    encrypted_data: tuple[tuple[str, str], ...] = ()
    digests: tuple[tuple[str, str], ...] = ()
    # Carried into spec.template: the Secret the controller creates gets them.
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    immutable: bool | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.encrypted_data)


@dataclass(frozen=True)
class RotationConfig:
    image: str = "ghcr.io/example/ksecrets-rotator:0.1.0"
    default_schedule: str = DEFAULT_ROTATION_SCHEDULE
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 3
    # The rotator image's numeric user (the Dockerfile's USER 10001); set both for another build.
    run_as_user: int = 10001
    run_as_group: int = 10001
    # No app is rotated again sooner than this after its last rotation (the rotator enforces it
    # from Vault's kv-v2 metadata). Dual PostgreSQL logins rely on it: consumers must re-read
    # their Secret within it. 0 disables it.
    min_interval_seconds: int = 3600


@dataclass(frozen=True)
class MonitoringConfig:
    enabled: bool = True
    namespace: str = "monitoring"
    rule_labels: tuple[tuple[str, str], ...] = (("release", "prometheus"),)
    certificate_expiry_warning_days: int = 30
    # Where the alerts' runbook_url points: README.md's runbook sections are its anchors.
    runbook_base_url: str = "https://github.com/example/k8s-secrets/blob/main/README.md"
    # The ServiceMonitors (chart values) and the PrometheusRule are Prometheus Operator kinds:
    # a cluster without its CRDs refuses them. None: not declared, which export and preview
    # refuse while monitoring is enabled; False: those objects are left out.
    prometheus_operator: bool | None = None

    @property
    def operator_objects(self) -> bool:
        """Whether ServiceMonitors and the PrometheusRule are emitted."""
        return self.enabled and self.prometheus_operator is True


@dataclass(frozen=True)
class StackConfig:
    stack: str
    source: str  # the file it came from, for error messages ("Pulumi.staging.yaml")
    root: str  # the directory relative paths (certificate) resolve against
    backend: str
    namespaces: tuple[str, ...] = ()
    # Namespaces that exist outside this stack: objects may live there, the stack never creates,
    # labels or prunes them.
    external_namespaces: tuple[str, ...] = ()
    flux: FluxConfig = field(default_factory=FluxConfig)
    sealed_secrets: SealedSecretsConfig = field(default_factory=SealedSecretsConfig)
    vault: VaultConfig | None = None
    apps: tuple[App, ...] = ()
    sealed: tuple[SealedEntry, ...] = ()
    manual_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # secretName -> keys (values stay in Pulumi)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    # Key paths whose placeholder values (an `example` image or URL) are deployed on purpose.
    allow_placeholders: tuple[str, ...] = ()
    vault_migration: str | None = None  # one of MIGRATION_PHASES while moving to Vault

    @property
    def installs_vault(self) -> bool:
        """Vault and the operator are part of this stack: a vault stack, or phase 1 of a migration."""
        return self.vault is not None and (self.backend == "vault" or self.vault_migration == "install")

    @property
    def flux_path(self) -> str:
        return self.flux.path or f"./k8s/{self.stack}"

    def all_namespaces(self) -> tuple[str, ...]:
        """Namespaces this stack creates: the listed ones plus every app's, sorted, no duplicates;
        never one declared external."""
        names = set(self.namespaces) | {a.namespace for a in self.apps}
        return tuple(sorted(names - set(self.external_namespaces)))

    def shared_namespaces(self) -> tuple[str, ...]:
        """Namespaces a stack must never create, label or prune: the system ones, Flux's, the
        monitoring namespace and the sealed-secrets controller's."""
        names = set(SYSTEM_NAMESPACES) | {self.flux.namespace, self.monitoring.namespace,
                                          self.sealed_secrets.controller_namespace}
        return tuple(sorted(names))

    def vault_namespaces(self) -> tuple[str, ...]:
        """The namespaces Vault and its operator run in, when this stack installs them."""
        if not self.installs_vault or self.vault is None:
            return ()
        return tuple(sorted({self.vault.namespace, self.vault.operator.namespace}))

    def known_namespaces(self) -> frozenset[str]:
        """Every namespace an exported object of this stack may sit in: created here, declared
        external, a system namespace, or a shared one this stack relies on."""
        return frozenset(set(self.all_namespaces()) | set(self.external_namespaces) | set(self.shared_namespaces())
                         | set(self.vault_namespaces()))

    @functools.cached_property
    def _sealed_index(self) -> dict[tuple[str, str], SealedEntry]:
        # Built once per model (frozen, so it cannot go stale): lookups per app stay O(1), and
        # a stack of thousands of apps loads in linear time.
        return {(e.namespace, e.name): e for e in self.sealed}

    def sealed_entry(self, namespace: str, name: str) -> SealedEntry | None:
        return self._sealed_index.get((namespace, name))

    def secret_keys(self, app: App) -> tuple[str, ...]:
        """The keys the app's Secret has under this stack's backend, as far as config knows."""
        if self.backend == "sealed-secrets":
            entry = self.sealed_entry(app.namespace, app.secret_name)
            return entry.keys if entry else app.keys
        if self.backend == "manual":
            return dict(self.manual_keys).get(app.secret_name, app.keys)
        return app.keys

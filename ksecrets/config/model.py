"""The typed model of one stack (environment): frozen pydantic dataclasses. Builders read, never write.

Field names are Python's; the stack file spells them in camelCase (the aliases; a few differ, such as
`maxDelay` for `max_delay_seconds`). Every default is written here, once, including those that follow
from another value (an app's `secretName` from its name, a rotation's schedule from the stack's
`rotation.defaultSchedule`). `validate_raw` reads the `k8s-secrets:` keys of a stack file or of Pulumi
config with the checks of `ksecrets.config.fields` and the rules of `ksecrets.config.rules`;
constructing a class in code checks the Python types only, as the plain dataclasses did.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, ClassVar, Literal, Mapping, get_args

from pydantic import Field, TypeAdapter, ValidationInfo, model_validator
from pydantic.dataclasses import dataclass

# The one lists of backends and sealing scopes (standard-library modules the command line also reads).
from ksecrets import backends
from ksecrets.backends import BACKENDS, Backend, BackendSpec
from ksecrets.backends.vault import default_vault_path
from ksecrets.config import fields as f
from ksecrets import validators as v
from ksecrets.sealing.crypto import sealed_value_problem  # standard library only at import
from ksecrets.config.fields import (
    ChartVersion,
    Cron,
    DnsLabel,
    DnsSubdomain,
    Duration,
    Flag,
    HttpPath,
    HttpUrl,
    Image,
    Pairs,
    Port,
    Quantity,
    Seconds,
    SecretKey,
    Section,
    Seq,
    Text,
    Uid,
    VaultMount,
    VaultName,
    VaultPath,
)
from ksecrets.scopes import SCOPES, Scope

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
# `vaultMigration` (the field's name from when Vault was the one target of `ksecrets migrate`):
# install (sealed stack, Vault installed beside, SealedSecrets release their Secrets), release
# (sealed stack, its SealedSecrets release their Secrets for another backend to take over),
# handover (vault stack, the operator takes over the Secrets that exist); release on a vault stack
# (its VaultStaticSecrets are left in place by Flux and have the operator write the sealed-secrets
# controller's `managed` annotation, so the next backend takes the Secret over); uninstall (a stack
# switched away from Vault: Vault and the operator stay installed, and Flux keeps its rights to
# prune the operator's objects, until `migrate --finish`).
MigrationPhase = Literal["install", "handover", "release", "uninstall"]
MIGRATION_PHASES: tuple[MigrationPhase, ...] = get_args(MigrationPhase)
# Stack keys whose values may be placeholders (see `ksecrets.usecases.preflight`): allowPlaceholders lists them.
PLACEHOLDER_KEYS = (
    "apps.deployments.image",
    "rotation.image",
    "sealedSecrets.keyBackup.image",
    "monitoring.runbookBaseUrl",
)
# How a stack reaches its cluster (README "Delivery: pulumi or flux"): `pulumi`, every object a
# Pulumi resource; `flux`, Pulumi registers the stack's Flux Kustomizations (and the manual
# backend's Secrets, never exported) and Flux applies k8s/<stack>/ from Git
# (`ksecrets.manifests.stack.pulumi_delivered`).
Delivery = Literal["pulumi", "flux"]
DELIVERIES: tuple[Delivery, ...] = get_args(Delivery)
Generator = Literal["random", "postgres"]
PostgresMode = Literal["single", "dual"]


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class FluxConfig(Section):
    """Where Flux runs and which Git source it reconciles k8s/<stack>/ from."""

    namespace: DnsLabel = "flux-system"
    source_name: DnsSubdomain = "flux-system"  # the GitRepository `flux bootstrap` creates
    interval: Duration = "10m"
    path: Text = ""  # in the Git repository; default ./k8s/<stack>


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class S3Config(Section):
    """An S3-compatible bucket a disaster-recovery CronJob also uploads to (path-style, SigV4)."""

    endpoint: HttpUrl  # https://s3.eu-west-1.amazonaws.com, http://minio.backup.svc:9000
    bucket: DnsSubdomain
    credentials_secret: DnsSubdomain  # Secret in the CronJob's namespace: accessKeyId, secretAccessKey
    region: DnsLabel = "us-east-1"
    prefix: Text = ""


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class KeyBackupConfig(Section):
    """The sealing-key backup CronJob: new key Secrets encrypted to an offline public key."""

    public_key: Text  # certs/<stack>-keybackup.pub, relative to the stack file
    # An image with the project and its `keybackup` extra (cryptography): the rotator image leaves
    # cryptography out on purpose, so it cannot run the key backup.
    image: Image
    schedule: Cron = "17 * * * *"  # hourly
    storage_size: Quantity = "1Gi"
    storage_class: DnsSubdomain | None = None
    # SealingKeyNotBackedUp fires when the newest key is not covered by a success this long.
    max_delay_seconds: Seconds = Field(default=3 * 3600, alias="maxDelay")
    s3: S3Config | None = None


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class SealedSecretsConfig(Section):
    chart_version: ChartVersion = "2.18.5"
    chart_repository: Text = "https://bitnami-labs.github.io/sealed-secrets"
    controller_name: DnsLabel = "sealed-secrets-controller"
    controller_namespace: DnsLabel = "kube-system"
    certificate: Text | None = None  # certs/<stack>.pem, relative to the stack file
    key_renew_period: Duration | None = None  # controller default 720h
    key_backup: KeyBackupConfig | None = None


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class SopsConfig(Section):
    """Backend sops: the age public keys every SOPS file of the stack is encrypted for, and the
    Secret (in Flux's namespace, key `age.agekey`) kustomize-controller decrypts them with."""

    recipients: Seq[f.AgeRecipient] = ()
    key_secret: DnsSubdomain = "sops-age"


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class VaultTLS(Section):
    enabled: Flag = False
    secret_name: DnsSubdomain = "vault-tls"  # kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt
    # A Secret holding only ca.crt, in the operator's namespace, for VaultConnection.caCertSecretRef
    # (the server's Secret also holds its private key, which the operator must not see).
    ca_secret_name: DnsSubdomain = "vault-ca"


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class VaultDatabase(Section):
    """The database secrets engine for dynamic credentials (PostgreSQL)."""

    mount: VaultMount = "database"
    connection_name: VaultName = "postgres"
    plugin: Text = "postgresql-database-plugin"
    connection_url: Annotated[str, f.connection_url]  # postgresql://{{username}}:{{password}}@host:5432/db
    username: Text  # the admin Vault logs in as; its password is pushed, never in config


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class VaultOperatorConfig(Section):
    chart_version: ChartVersion = "1.4.1"
    namespace: DnsLabel = "vault-secrets-operator-system"


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class VaultSnapshots(Section):
    """Raft snapshots on a schedule (a CronJob in Vault's namespace) into a PersistentVolumeClaim."""

    schedule: Cron = "0 3 * * *"  # daily, 03:00 UTC
    retain: Annotated[int, f.whole(1, 1000)] = 14  # snapshot files kept on the volume
    storage_size: Quantity = "10Gi"
    storage_class: DnsSubdomain | None = None
    # VaultSnapshotTooOld fires when the CronJob's last success is older than this.
    max_age_seconds: Seconds = Field(default=26 * 3600, alias="maxAge")
    s3: S3Config | None = None


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class VaultConfig(Section):
    chart_version: ChartVersion = "0.34.1"
    chart_repository: Text = "https://helm.releases.hashicorp.com"
    namespace: DnsLabel = "vault"
    replicas: Annotated[int, f.whole(1, 9)] = 3
    data_storage_size: Quantity = "10Gi"
    audit_storage_size: Quantity = "10Gi"
    storage_class: DnsSubdomain | None = None
    tls: VaultTLS = dataclasses.field(default_factory=VaultTLS)
    address: Text = ""  # default: http(s)://vault.<namespace>.svc:8200
    kv_mount: VaultMount = "secret"
    # One Vault may serve several clusters of a fleet: each cluster's own kubernetes auth mount,
    # `kubernetes-<stack>` (CLUSTER_AUTH_MOUNT) for a stack that extends an environment, set by
    # StackConfig below; `kubernetes` for a stack that is its own environment.
    auth_mount: VaultMount = "kubernetes"
    audience: Text = "vault"
    operator: VaultOperatorConfig = dataclasses.field(default_factory=VaultOperatorConfig)
    database: VaultDatabase | None = None
    # Configure Vault itself (kv, auth, policies, roles, audit) during `pulumi up` with the same
    # code as `ksecrets vault bootstrap`. Off until Vault is initialised and unsealed: a fresh
    # Vault cannot be configured.
    configure: Flag = False
    snapshots: VaultSnapshots | None = None

    @property
    def service_address(self) -> str:
        if self.address:
            return self.address
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://vault.{self.namespace}.svc:8200"


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class EnvFromKey(Section):
    """One environment variable read from one key of the app's Secret (secretKeyRef)."""

    name: str
    key: str


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class Deployment(Section):
    """A Deployment that consumes the app's Secret."""

    name: DnsLabel
    image: Image
    replicas: Annotated[int, f.whole(0, 1000)] = 1
    port: Port | None = None
    env_from: Flag = True  # envFrom.secretRef: every key as a variable
    env: Annotated[tuple[EnvFromKey, ...], f.env_map] = ()  # `env: {VAR: KEY}`: env[].valueFrom.secretKeyRef
    # Probes on `port` (manifests/workloads.py): HTTP GET of these paths when set, else a TCP
    # connect to the port; no port, no probes (nothing to ask).
    readiness_path: HttpPath | None = None
    liveness_path: HttpPath | None = None
    run_as_user: Uid = DEFAULT_RUN_AS_USER
    run_as_group: Uid = DEFAULT_RUN_AS_USER


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class PostgresTarget(Section):
    """Where a rotated database password lives: the rotator runs ALTER ROLE here first."""

    host: Text
    role: Text
    port: Port = 5432
    database: Text = "postgres"
    admin_secret: DnsSubdomain  # Secret (same namespace) with keys username/password of an admin
    # single: ALTER the password of `role` itself. dual: `role` is a group role; two logins
    # `<role>_a`/`<role>_b` inherit it and take turns, the Secret's `username_key` names the one in use.
    mode: Annotated[PostgresMode, f.choice(get_args(PostgresMode))] = "single"
    username_key: SecretKey = ""

    @model_validator(mode="after")
    def _modes(self, info: ValidationInfo) -> PostgresTarget:
        if f.is_raw(info):
            if self.mode == "dual" and not self.username_key:
                raise f.fail("is required when mode is dual (the key that holds the login's name)", ["usernameKey"])
            if self.mode == "single" and self.username_key:
                raise f.fail("is only used when mode is dual", ["usernameKey"])
            if self.mode == "dual" and len(self.role) > 61:
                raise f.fail("is too long for dual mode (the logins <role>_a/_b must fit 63 characters)", ["role"])
        return self


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class RotationSpec(Section):
    key: SecretKey
    # Raw config: the stack's rotation.defaultSchedule (StackConfig fills it in).
    schedule: Cron = DEFAULT_ROTATION_SCHEDULE
    generator: Annotated[Generator, f.choice(get_args(Generator))] = "random"
    length: Annotated[int, f.whole(16, 256)] = 32
    postgres: PostgresTarget | None = None
    restart: Seq[DnsLabel] = ()  # Deployments to restart; default: all of the app's

    @model_validator(mode="after")
    def _target(self, info: ValidationInfo) -> RotationSpec:
        if f.is_raw(info) and self.generator == "postgres" and self.postgres is None:
            raise f.fail("is required when generator is postgres", ["postgres"])
        return self


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class DynamicSecretSpec(Section):
    """A VaultDynamicSecret: database credentials Vault makes per lease."""

    name: DnsSubdomain  # the destination Secret
    role: VaultName  # the database role in Vault
    mount: VaultMount = "database"
    renewal_percent: Annotated[int, f.whole(1, 90)] = 67


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class AppVault(Section):
    path: VaultPath = ""  # kv-v2 path under the stack's mount; default the app name (App fills it in: backends.vault.default_vault_path)
    refresh_after: Duration = "60s"
    role: VaultName = ""  # Vault kubernetes-auth role; default the app name (App fills it in)
    dynamic: Seq[DynamicSecretSpec] = ()


def default_secret_name(app_name: str) -> str:
    """The Secret an app reads when its config names none: the one home of that default."""
    return f"{app_name}-secrets"


def raw_secret_name(app: Mapping[str, Any]) -> str:
    """An app's Secret from its raw config (a stack file's mapping, before the model reads it)."""
    return app.get("secretName") or default_secret_name(str(app.get("name")))


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class App(Section):
    name: DnsLabel
    namespace: DnsLabel
    service_account: DnsSubdomain = ""  # default the app's name
    secret_name: DnsSubdomain = ""  # default `<name>-secrets`
    deployments: Seq[Deployment] = ()
    keys: Seq[SecretKey] = ()  # declared keys of the Secret (vault and manual backends)
    rotation: Seq[RotationSpec] = ()
    vault: AppVault | None = None

    @model_validator(mode="after")
    def _defaults(self) -> App:
        # "" is never a valid value (the checks refuse it in raw config): it means "not given".
        if not self.service_account:
            object.__setattr__(self, "service_account", self.name)
        if not self.secret_name:
            object.__setattr__(self, "secret_name", default_secret_name(self.name))
        if self.vault is not None and not (self.vault.path and self.vault.role):
            object.__setattr__(
                self,
                "vault",
                dataclasses.replace(
                    self.vault, path=default_vault_path(self.name, self.vault.path), role=self.vault.role or self.name
                ),
            )
        return self


def _placeholder_key(value: str) -> str | None:
    if value not in PLACEHOLDER_KEYS:
        return f'"{value}" is not one of {", ".join(PLACEHOLDER_KEYS)}'
    return None


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class SealedEntry(Section):
    """One Secret's sealed values, as `ksecrets seal --stack` stores them."""

    name: DnsSubdomain
    namespace: DnsLabel
    scope: Annotated[Scope, f.choice(SCOPES)] = "strict"
    type: Text = "Opaque"
    certificate_fingerprint: Text | None = None
    # Only well-formed sealed values (the kubeseal format's own check): a value pasted in the clear
    # is refused here, by every reader of the stack file, before export or `pulumi up` sees it.
    encrypted_data: Annotated[Pairs, f.pairs(v.secret_key, sealed_value_problem, sort=True)] = ()
    digests: Annotated[Pairs, f.pairs(v.secret_key, sort=True)] = ()
    # The same value's digest on every cluster (sealing/churn.fleet_digest): `ksecrets drift`.
    fleet_digests: Annotated[Pairs, f.pairs(v.secret_key, sort=True)] = ()
    # Carried into spec.template: the Secret the controller creates gets them.
    labels: Annotated[Pairs, f.pairs(v.qualified_name)] = ()
    annotations: Annotated[Pairs, f.pairs(v.qualified_name)] = ()
    immutable: Flag | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.encrypted_data)


ROTATOR_IMAGE_REPOSITORY = "ghcr.io/example/ksecrets-rotator"


@functools.cache
def default_rotator_image() -> str:
    """The rotator image built from this version (the Dockerfile's `docker build -t` line): the tag
    is the package's one version (pyproject.toml), read when a stack leaves `rotation.image` out."""
    from ksecrets import version

    return f"{ROTATOR_IMAGE_REPOSITORY}:{version()}"


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class RotationConfig(Section):
    image: Image = Field(default_factory=default_rotator_image)
    default_schedule: Cron = DEFAULT_ROTATION_SCHEDULE
    successful_jobs_history_limit: Annotated[int, f.whole(0, 100)] = 3
    failed_jobs_history_limit: Annotated[int, f.whole(0, 100)] = 3
    # The rotator image's numeric user (the Dockerfile's USER 10001); set both for another build.
    run_as_user: Uid = 10001
    run_as_group: Uid = 10001
    # No app is rotated again sooner than this after its last rotation (the rotator enforces it
    # from Vault's kv-v2 metadata). Dual PostgreSQL logins rely on it: consumers must re-read
    # their Secret within it. 0 disables it.
    min_interval_seconds: Seconds = Field(default=3600, alias="minInterval")


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class MonitoringConfig(Section):
    enabled: Flag = True
    namespace: DnsLabel = "monitoring"
    rule_labels: Annotated[Pairs, f.pairs(v.dns_subdomain)] = (("release", "prometheus"),)
    certificate_expiry_warning_days: Annotated[int, f.whole(1, 365)] = 30
    # Where the alerts' runbook_url points: README.md's runbook sections are its anchors.
    runbook_base_url: HttpUrl = "https://github.com/example/k8s-secrets/blob/main/README.md"
    # The ServiceMonitors (chart values) and the PrometheusRule are Prometheus Operator kinds:
    # a cluster without its CRDs refuses them. None: not declared, which export and preview
    # refuse while monitoring is enabled; False: those objects are left out.
    prometheus_operator: Flag | None = None

    @property
    def operator_objects(self) -> bool:
        """Whether ServiceMonitors and the PrometheusRule are emitted."""
        return self.enabled and self.prometheus_operator is True


@dataclass(frozen=True, kw_only=True, config=f.CONFIG)
class StackConfig(Section):
    """One stack. Fields are in the order raw config is checked (the first error is reported)."""

    _not_in_file: ClassVar[tuple[str, ...]] = ("stack", "source", "root", "environment")
    stack: str
    source: str  # the file it came from, for error messages ("Pulumi.staging.yaml")
    root: str  # the directory relative paths (certificate) resolve against
    # The environment file the stack extends (`production` for environments/production.yaml), ""
    # when it extends none: then the stack is one cluster, its own environment (environments.py).
    environment: str = ""
    rotation: RotationConfig = dataclasses.field(default_factory=RotationConfig)
    backend: Annotated[Backend, f.choice(BACKENDS)]
    vault: VaultConfig | None = None  # a vault stack gets the defaults when it has none
    namespaces: Seq[DnsLabel] = ()
    # Namespaces that exist outside this stack: objects may live there, the stack never creates,
    # labels or prunes them.
    external_namespaces: Seq[DnsLabel] = ()
    flux: FluxConfig = dataclasses.field(default_factory=FluxConfig)
    sealed_secrets: SealedSecretsConfig = dataclasses.field(default_factory=SealedSecretsConfig)
    sops: SopsConfig = dataclasses.field(default_factory=SopsConfig)
    apps: Seq[App] = ()
    sealed: Seq[SealedEntry] = ()
    # secretName -> keys; the values stay in Pulumi (`manualValues` is read for its shape only).
    manual_keys: Annotated[tuple[tuple[str, tuple[str, ...]], ...], f.manual_values] = Field(
        default=(), alias="manualValues"
    )
    monitoring: MonitoringConfig = dataclasses.field(default_factory=MonitoringConfig)
    # Key paths whose placeholder values (an `example` image or URL) are deployed on purpose.
    allow_placeholders: Seq[Annotated[str, f.text(_placeholder_key)]] = ()
    vault_migration: Annotated[MigrationPhase | None, f.choice(MIGRATION_PHASES)] = None
    delivery: Annotated[Delivery, f.choice(DELIVERIES)] = "pulumi"

    @classmethod
    def _raw_defaults(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        # The stack's name, file and directory come from the loader, never from the config.
        data = {**data, **context.get("origin", {})}
        # A rotation without a schedule runs on the stack's default (checked where it is written).
        schedule = (
            data.get("rotation", {}).get("defaultSchedule") if isinstance(data.get("rotation"), Mapping) else None
        )
        if isinstance(schedule, str) and isinstance(data.get("apps"), list):
            data["apps"] = [_with_schedule(app, schedule) for app in data["apps"]]
        # A cluster of a fleet logs in at its own auth mount (one Vault, a mount per cluster).
        vault = data.get("vault")
        if data.get("environment") and isinstance(vault, Mapping) and vault.get("authMount") is None:
            data["vault"] = {**vault, "authMount": cluster_auth_mount(str(data["stack"]))}
        return data

    @model_validator(mode="after")
    def _stack_rules(self, info: ValidationInfo) -> StackConfig:
        if self.spec.vault and self.vault is None:
            vault = VaultConfig(auth_mount=cluster_auth_mount(self.stack)) if self.environment else VaultConfig()
            object.__setattr__(self, "vault", vault)
        if f.is_raw(info):
            from ksecrets.config import rules

            rules.check(self)
        return self

    @property
    def spec(self) -> BackendSpec:
        """The stack's backend: what the builders and workflows ask instead of comparing its name."""
        return backends.get(self.backend)

    @property
    def installs_vault(self) -> bool:
        """Vault and the operator are part of this stack: a vault stack, phase 1 of a move to Vault
        (`install`), or the last phase of a move away from it (`uninstall`, until `--finish`)."""
        return self.vault is not None and (self.spec.vault or self.vault_migration in ("install", "uninstall"))

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
        names = set(SYSTEM_NAMESPACES) | {
            self.flux.namespace,
            self.monitoring.namespace,
            self.sealed_secrets.controller_namespace,
        }
        return tuple(sorted(names))

    def vault_namespaces(self) -> tuple[str, ...]:
        """The namespaces Vault and its operator run in, when this stack installs them."""
        if not self.installs_vault or self.vault is None:
            return ()
        return tuple(sorted({self.vault.namespace, self.vault.operator.namespace}))

    def known_namespaces(self) -> frozenset[str]:
        """Every namespace an exported object of this stack may sit in: created here, declared
        external, a system namespace, or a shared one this stack relies on."""
        return frozenset(
            set(self.all_namespaces())
            | set(self.external_namespaces)
            | set(self.shared_namespaces())
            | set(self.vault_namespaces())
        )

    @functools.cached_property
    def _sealed_index(self) -> dict[tuple[str, str], SealedEntry]:
        # Built once per model (frozen, so it cannot go stale): lookups per app stay O(1), and
        # a stack of thousands of apps loads in linear time.
        return {(e.namespace, e.name): e for e in self.sealed}

    def sealed_entry(self, namespace: str, name: str) -> SealedEntry | None:
        return self._sealed_index.get((namespace, name))

    def secret_keys(self, app: App) -> tuple[str, ...]:
        """The keys the app's Secret has under this stack's backend, as far as config knows."""
        if self.spec.seals:
            entry = self.sealed_entry(app.namespace, app.secret_name)
            return entry.keys if entry else app.keys
        if self.spec.pulumi_values:
            return dict(self.manual_keys).get(app.secret_name, app.keys)
        return app.keys


def _with_schedule(app: Any, schedule: str) -> Any:
    """A raw app whose rotations without a schedule get `schedule` (anything else left to the checks)."""
    if not isinstance(app, Mapping) or not isinstance(app.get("rotation"), list):
        return app
    rotation = [
        {**r, "schedule": schedule} if isinstance(r, Mapping) and r.get("schedule") is None else r
        for r in app["rotation"]
    ]
    return {**app, "rotation": rotation}


_STACK = TypeAdapter(StackConfig)


def cluster_auth_mount(stack: str) -> str:
    """The kubernetes auth mount of a fleet's cluster: one Vault serves every cluster of a fleet,
    each cluster's API server reviews its own tokens, so each has its own mount (and roles)."""
    return f"kubernetes-{stack}"


def validate_raw(raw: Any, *, stack: str, source: str, root: str, environment: str = "") -> StackConfig:
    """Raw `k8s-secrets:` keys (prefix removed) → StackConfig; a `ValidationError` names the first
    problem (`fields.config_error` spells it). `environment`: the environment file it extends."""
    origin = {"stack": stack, "source": source, "root": root, "environment": environment}
    return _STACK.validate_python(raw, context=f.raw_context(origin=origin), by_alias=True, by_name=False)

"""Vault in HA (integrated raft storage) and the Vault Secrets Operator, as Flux HelmReleases, and
the operator's objects per app: VaultConnection, VaultAuth, VaultStaticSecret, VaultDynamicSecret.

Why not the guide's values: `server.ha.enabled` alone keeps the chart's default HA storage, Consul
(`storage "consul"` at HOST_IP:8500); with no Consul the pods never become ready. Here raft is on,
each pod gets its own node id (`setNodeId`), and `retry_join` lists every peer, so pods 1..N-1 join
pod 0 as soon as it is initialised and unsealed.

Nothing here is secret: the objects name Vault paths and roles, never values, so vault stacks
export to k8s/ like the others.
"""

from __future__ import annotations

from typing import Any

from ksecrets.config.model import App, DynamicSecretSpec, StackConfig, VaultConfig
from ksecrets.manifests import flux
from ksecrets.manifests.plan import PART_OF, Manifest, Planned, metadata
from ksecrets.manifests.sealed_secrets import MANAGED_ANNOTATION

VSO_API = f"{flux.VSO_GROUP}/v1beta1"
REPOSITORY = "hashicorp"
VAULT_RELEASE = "vault"  # also the chart's fullname: pods vault-N, headless service vault-internal
VSO_RELEASE = "vault-secrets-operator"
CONNECTION = "vault"  # the stack's one VaultConnection, in the operator's namespace

TLS_DIR = "/vault/userconfig/tls"  # where the server's TLS Secret is mounted
DATA_PATH = "/vault/data"
AUDIT_PATH = "/vault/audit"
AUDIT_FILE = f"{AUDIT_PATH}/vault-audit.log"  # bootstrap enables the file audit device here


def vault_release_id(cfg: StackConfig) -> str:
    return f"{flux.HELM_API}/HelmRelease/{cfg.flux.namespace}/{VAULT_RELEASE}"


def vso_release_id(cfg: StackConfig) -> str:
    """What every operator object `needs`: the HelmRelease that installs the VSO CRDs."""
    return f"{flux.HELM_API}/HelmRelease/{cfg.flux.namespace}/{VSO_RELEASE}"


def _vault(cfg: StackConfig) -> VaultConfig:
    return cfg.vault or VaultConfig()


# --- the Vault server -------------------------------------------------------------------------


def raft_config(vc: VaultConfig, *, metrics: bool = False) -> str:
    """The server's HCL: a tcp listener (TLS per config), raft storage joining every peer, and
    with `metrics` the Prometheus telemetry the VaultSealed/VaultDown alerts read."""
    scheme = "https" if vc.tls.enabled else "http"
    lines = [
        "ui = true",
        # Integrated storage keeps data on disk and memory-maps it; mlock would pin it all.
        "disable_mlock = true",
        'listener "tcp" {',
        '  address = "[::]:8200"',
        '  cluster_address = "[::]:8201"',
    ]
    if vc.tls.enabled:
        lines += [
            "  tls_disable = 0",
            f'  tls_cert_file = "{TLS_DIR}/tls.crt"',
            f'  tls_key_file = "{TLS_DIR}/tls.key"',
        ]
    else:
        lines.append("  tls_disable = 1")
    if metrics:
        # /v1/sys/metrics without a token, so the chart's ServiceMonitor can scrape it; it
        # reveals counters, never secret data.
        lines += ["  telemetry {", '    unauthenticated_metrics_access = "true"', "  }"]
    lines += ["}", 'storage "raft" {', f'  path = "{DATA_PATH}"']
    for n in range(vc.replicas):
        lines += [
            "  retry_join {",
            f'    leader_api_addr = "{scheme}://{VAULT_RELEASE}-{n}.{VAULT_RELEASE}-internal:8200"',
        ]
        if vc.tls.enabled:
            # The peer's certificate must name vault-N.vault-internal (see README.md, "TLS").
            lines += [
                f'    leader_ca_cert_file = "{TLS_DIR}/ca.crt"',
                f'    leader_client_cert_file = "{TLS_DIR}/tls.crt"',
                f'    leader_client_key_file = "{TLS_DIR}/tls.key"',
            ]
        lines.append("  }")
    lines += ["}", 'service_registration "kubernetes" {}']
    if metrics:
        lines += ["telemetry {", '  prometheus_retention_time = "30s"', "  disable_hostname = true", "}"]
    return "\n".join(lines) + "\n"


def _selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "vault", "app.kubernetes.io/instance": VAULT_RELEASE, "component": "server"}


def vault_values(cfg: StackConfig) -> dict[str, Any]:
    """Chart values. Every key exists in the chart's values.yaml; the whole validates against
    its values.schema.json (tests check both)."""
    vc = _vault(cfg)

    def storage(size: str, mount_path: str) -> dict[str, Any]:
        s: dict[str, Any] = {"enabled": True, "size": size, "mountPath": mount_path, "accessMode": "ReadWriteOnce"}
        if vc.storage_class:
            s["storageClass"] = vc.storage_class
        return s

    server: dict[str, Any] = {
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
    }
    if vc.tls.enabled:
        # The Secret (tls.crt, tls.key, ca.crt) is mounted read-only; VAULT_CACERT lets
        # `vault operator ...` inside a pod trust its own listener.
        server["extraEnvironmentVars"] = {"VAULT_CACERT": f"{TLS_DIR}/ca.crt"}
        server["volumes"] = [{"name": "tls", "secret": {"secretName": vc.tls.secret_name, "defaultMode": 0o440}}]
        server["volumeMounts"] = [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}]
    server.update(
        {
            # One pod per node: losing a node loses one raft voter, not quorum.
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": _selector_labels()}, "topologyKey": "kubernetes.io/hostname"}
                    ]
                }
            },
            "dataStorage": storage(vc.data_storage_size, DATA_PATH),
            "auditStorage": storage(vc.audit_storage_size, AUDIT_PATH),
            "standalone": {"enabled": False},
            "ha": {
                "enabled": True,
                "replicas": vc.replicas,
                "raft": {"enabled": True, "setNodeId": True, "config": raft_config(vc, metrics=cfg.monitoring.enabled)},
                "disruptionBudget": {"enabled": True},
            },
            # The server's own service account reviews app tokens for the kubernetes auth method
            # (authDelegator binds it to system:auth-delegator).
            "authDelegator": {"enabled": True},
            "serviceAccount": {"create": True, "name": VAULT_RELEASE},
            # Meets the `restricted` Pod Security Standard, which the vault namespace enforces.
            "statefulSet": {
                "securityContext": {
                    "pod": {
                        "runAsNonRoot": True,
                        "runAsUser": 100,
                        "runAsGroup": 1000,
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            },
        }
    )
    values: dict[str, Any] = {
        "global": {"enabled": True, "tlsDisable": not vc.tls.enabled},
        # The operator syncs Secrets; the agent injector is not used.
        "injector": {"enabled": False},
        "server": server,
        "ui": {"enabled": True, "serviceType": "ClusterIP"},
    }
    if cfg.monitoring.operator_objects:
        monitor: dict[str, Any] = {"enabled": True, "selectors": dict(cfg.monitoring.rule_labels)}
        if vc.tls.enabled:
            monitor["tlsConfig"] = {"ca": {"secret": {"name": vc.tls.secret_name, "key": "ca.crt"}}}
        values["serverTelemetry"] = {"serviceMonitor": monitor}
    return values


def operator_values(cfg: StackConfig) -> dict[str, Any]:
    """VSO chart values (keys exist in the chart's values.yaml; the chart ships no schema)."""
    return {
        "controller": {
            "replicas": 1,
            "manager": {
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
            },
            # podSecurityContext/securityContext stay the chart's (runAsNonRoot, no privilege
            # escalation): that meets `baseline`, which the operator's namespace enforces.
        },
        # The stack's VaultConnection and per-app VaultAuths are explicit objects (apps layer),
        # so no implicit defaults that some other namespace could fall back on.
        "defaultVaultConnection": {"enabled": False},
        "defaultAuthMethod": {"enabled": False},
        # The operator's sync and login-error metrics feed the VaultSecretsOperator* alerts.
        "telemetry": {
            "serviceMonitor": {
                "enabled": cfg.monitoring.operator_objects,
                "selectors": dict(cfg.monitoring.rule_labels),
            }
        },
    }


def _namespace(name: str, enforce: str) -> Manifest:
    labels = {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(name, labels=labels)}


def infrastructure(cfg: StackConfig) -> list[Planned]:
    vc = _vault(cfg)
    ns = cfg.flux.namespace
    out: list[Planned] = []
    known = set(cfg.all_namespaces()) | set(cfg.external_namespaces)
    # Namespaces the stack does not already create. The Vault pods meet `restricted`; the
    # operator chart's sidecar is not ours to vouch for, so `baseline` there, warning on restricted.
    for name, enforce in ((vc.namespace, "restricted"), (vc.operator.namespace, "baseline")):
        if name not in known:
            known.add(name)
            out.append(Planned(_namespace(name, enforce), "infrastructure"))
    out.append(Planned(flux.helm_repository(REPOSITORY, ns, vc.chart_repository), "infrastructure"))

    vault = flux.helm_release(
        VAULT_RELEASE,
        ns,
        chart="vault",
        version=vc.chart_version,
        repository=REPOSITORY,
        target_namespace=vc.namespace,
        values=vault_values(cfg),
        release_name=VAULT_RELEASE,
    )
    # A fresh Vault is sealed and so never Ready until an operator runs `vault operator init`
    # and unseals it; waiting for it would fail the install and its remediation would uninstall.
    vault["spec"]["install"]["disableWait"] = True
    vault["spec"]["upgrade"]["disableWait"] = True
    out.append(Planned(vault, "infrastructure"))

    out.append(
        Planned(
            flux.helm_release(
                VSO_RELEASE,
                ns,
                chart="vault-secrets-operator",
                version=vc.operator.chart_version,
                repository=REPOSITORY,
                target_namespace=vc.operator.namespace,
                values=operator_values(cfg),
                release_name=VSO_RELEASE,
            ),
            "infrastructure",
        )
    )
    return out


# --- the operator's objects -------------------------------------------------------------------


def vault_connection(cfg: StackConfig) -> Manifest:
    """One per stack, in the operator's namespace: one place for the address and CA, which the
    CA Secret must sit beside (caCertSecretRef is namespace-local); VaultAuths point at it as
    `<operator namespace>/vault`."""
    vc = _vault(cfg)
    spec: dict[str, Any] = {"address": vc.service_address, "skipTLSVerify": False}
    if vc.tls.enabled:
        spec["caCertSecretRef"] = vc.tls.ca_secret_name
    return {
        "apiVersion": VSO_API,
        "kind": "VaultConnection",
        "metadata": metadata(CONNECTION, vc.operator.namespace),
        "spec": spec,
    }


def app_role(app: App) -> str:
    return (app.vault.role if app.vault and app.vault.role else "") or app.name


def vault_auth(cfg: StackConfig, app: App) -> Manifest:
    vc = _vault(cfg)
    return {
        "apiVersion": VSO_API,
        "kind": "VaultAuth",
        "metadata": metadata(app.name, app.namespace),
        "spec": {
            "vaultConnectionRef": f"{vc.operator.namespace}/{CONNECTION}",
            "method": "kubernetes",
            "mount": vc.auth_mount,
            "kubernetes": {
                "role": app_role(app),
                "serviceAccount": app.service_account,
                "audiences": [vc.audience],
            },
        },
    }


def _restart_targets(app: App) -> list[dict[str, str]]:
    return [{"kind": "Deployment", "name": d.name} for d in app.deployments]


def _destination(name: str, overwrite: bool = False, release: bool = False) -> dict[str, Any]:
    dest: dict[str, Any] = {"name": name, "create": True}
    if overwrite:
        # The Secret exists (the SealedSecret made it): take it over in place. The operator then
        # owns it (its ownerReference replaces any other), so pruning the SealedSecret leaves it.
        dest["overwrite"] = True
    dest["labels"] = dict(PART_OF)  # the operator owns managed-by on its Secrets
    if release:
        # `release` (a vault stack's `migrate --prepare`): the operator writes the sealed-secrets
        # controller's `managed` annotation on the Secret (it sets the destination's annotations at
        # every sync), so a SealedSecret takes the Secret over in place, its ownerReference replacing
        # the operator's; a SOPS Secret Flux applies ignores it.
        dest["annotations"] = dict(MANAGED_ANNOTATION)
        # And it drops its `_raw` key (Vault's whole answer as JSON, every value again): the next
        # backend's apply does not remove a key it does not own (Flux's server-side apply leaves
        # it), so the migrated Secret would keep a copy of every value under a key no one writes.
        # Only here: a running vault stack keeps its Secrets as they are (no data change, no
        # rollout); the release phase changes the data once, before the handover.
        dest["transformation"] = {"excludeRaw": True}
    return dest


def vault_static_secret(cfg: StackConfig, app: App) -> Manifest:
    vc = _vault(cfg)
    assert app.vault is not None
    spec: dict[str, Any] = {
        "vaultAuthRef": app.name,
        "mount": vc.kv_mount,
        "type": "kv-v2",
        "path": app.vault.path,
        "refreshAfter": app.vault.refresh_after,
        # The operator restarts the Deployments only when the data's HMAC changes.
        "hmacSecretData": True,
        "destination": _destination(
            app.secret_name,
            overwrite=cfg.vault_migration == "handover",
            release=cfg.vault_migration == "release",
        ),
    }
    targets = _restart_targets(app)
    if targets:
        spec["rolloutRestartTargets"] = targets
    # `release`: Flux leaves the VaultStaticSecret when the switch drops it. The operator's Secret
    # carries its ownerReference, and Flux prunes with background propagation, so pruning it would
    # have the garbage collector delete the Secret the next backend is taking over.
    annotations = dict(flux.FLUX_PRUNE_DISABLED) if cfg.vault_migration == "release" else None
    return {
        "apiVersion": VSO_API,
        "kind": "VaultStaticSecret",
        "metadata": metadata(app.name, app.namespace, annotations=annotations),
        "spec": spec,
    }


def dynamic_path(d: DynamicSecretSpec) -> str:
    return f"creds/{d.role}"


def vault_dynamic_secret(cfg: StackConfig, app: App, d: DynamicSecretSpec) -> Manifest:
    spec: dict[str, Any] = {
        "vaultAuthRef": app.name,
        "mount": d.mount,
        "path": dynamic_path(d),
        "renewalPercent": d.renewal_percent,
        "destination": _destination(d.name),
    }
    targets = _restart_targets(app)
    if targets:
        spec["rolloutRestartTargets"] = targets
    return {
        "apiVersion": VSO_API,
        "kind": "VaultDynamicSecret",
        "metadata": metadata(d.name, app.namespace),
        "spec": spec,
    }


def app_objects(cfg: StackConfig) -> list[Planned]:
    needs = (vso_release_id(cfg),)
    out = [Planned(vault_connection(cfg), "apps", needs)]
    for app in cfg.apps:
        if app.vault is None:
            continue
        out.append(Planned(vault_auth(cfg, app), "apps", needs))
        out.append(Planned(vault_static_secret(cfg, app), "apps", needs))
        for d in app.vault.dynamic:
            out.append(Planned(vault_dynamic_secret(cfg, app, d), "apps", needs))
    return out

"""`ksecrets migrate --stack S --to B`: move a stack's values from its backend to backend B, for
every pair of sealed-secrets, sops and vault (manual as a source), losing no value.

A backend says what it can do (`BackendSpec.migrate_out`, `migrate_in`, `migrate_switch`); the
reading out and writing in run here, by the mechanism a backend uses (its flags: `seals`, `sops_files`,
`vault`, `pulumi_values`), so a new backend adds its mechanism once and no pair is written out:

- read out (`read_values`): every Secret of the stack, (namespace, name) -> type and key -> bytes,
  decrypted in memory with the source's key material (`Material`): the sealing private keys for
  sealed entries (as `ksecrets unseal`), the age identities for SOPS files, Vault for kv paths,
  the `pulumi` CLI for `manualValues`;
- write in (`write_values`): sealed into the stack file with the stack's certificate (`seal
  --stack`, pruned to exactly these keys), SOPS files for the stack's age recipients, kv-v2 at each
  app's vault path (check-and-set, read back and compared);
- then, only when every write succeeded, the stack file is switched (`migrate_switch` of the
  target's module): the source's values stay where they were, so switching back is one line.

Every key moves, empty values and values with `=` or newlines included; a value Vault cannot hold
(not UTF-8) or a Secret type the operator does not write (not Opaque) stops the run before anything
is written.

Phases that keep workloads running (see README): `--prepare` on a sealed-secrets stack sets
`vaultMigration: release` (or `install` when Vault is the target, `vault_migrate.prepare`): the
SealedSecrets release their Secrets, so pruning them later leaves the Secret for the new source to
take over; on a vault stack `release` leaves the VaultStaticSecrets to Flux's prune (their Secrets
carry their ownerReference) and has the operator write the sealed-secrets controller's `managed`
annotation. A move to Vault ends in `vaultMigration: handover` (the operator takes over the existing
Secret) and `--finish`; a move away from Vault in `uninstall` (Vault and the operator stay installed,
Flux keeps its rights to prune the operator's objects) and `--finish`, which drops the install.
A manual stack's `--prepare` sets `release` too: `pulumi up` then records `retainOnDelete` on its
Secrets (and writes the sealed-secrets controller's `managed` annotation on them), so the `pulumi up`
after the switch forgets them instead of deleting them while the new backend takes them over
(manifests/manual.py).
sealed-secrets -> vault keeps its own use case (`vault_migrate`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ksecrets import backends
from ksecrets.backends.base import BackendSpec
from ksecrets.backends.sops import secret_file
from ksecrets.config import stackfile
from ksecrets.config.load import load_stack, load_stack_file, parse, raw_from_text
from ksecrets.config.model import App, StackConfig
from ksecrets.config.names import PREFIX
from ksecrets.errors import KsecretsError
from ksecrets.fileio import atomic_write_text, locked, read_bytes
from ksecrets.manifests import flux as flux_manifests
from ksecrets.manifests.plan import metadata
from ksecrets.manifests.sealed_secrets import sealed_secret
from ksecrets.sealing import sops
from ksecrets.sealing.sealedsecret import unseal
from ksecrets.vault import kv

SecretId = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class SecretValues:
    namespace: str
    name: str
    type: str
    values: Mapping[str, bytes] = field(repr=False)


@dataclass
class Material:
    """The key material `migrate` reads with and writes with; only what the pair needs is asked."""

    private_keys: Sequence[Any] = ()  # sealing private keys (source sealed-secrets)
    age_identities: Sequence[str] = ()  # age identities (source sops; target sops to keep files)
    vault_client: Any = None  # an hvac client (source or target vault)
    pulumi_config: Callable[[StackConfig], Mapping[str, Any]] | None = None  # source manual
    age_recipients: Sequence[str] = ()  # target sops, when the stack has none yet


@dataclass
class MigrateReport:
    source: str
    target: str
    written: list[str] = field(default_factory=list)  # one line per Secret
    values: int = 0
    switched: bool = False
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        tail = f"backend switched to {self.target}" if self.switched else "stack file unchanged"
        return [*self.written, f"{self.values} values moved from {self.source} to {self.target}; {tail}"]


# --- reading out -----------------------------------------------------------------------------------


def read_values(cfg: StackConfig, material: Material) -> list[SecretValues]:
    """Every Secret of the stack with its values, decrypted in memory, sorted by (namespace, name)."""
    spec = cfg.spec
    if not spec.migrate_out:
        raise KsecretsError(f"{cfg.source}: backend {cfg.backend}: migrate cannot read its values")
    if spec.seals:
        out = _read_sealed(cfg, material)
    elif spec.sops_files:
        out = _read_sops(cfg, material)
    elif spec.vault:
        out = _read_vault(cfg, material)
    elif spec.pulumi_values:
        out = _read_manual(cfg, material)
    else:  # pragma: no cover - a backend that reads out names its mechanism
        raise KsecretsError(f"{cfg.source}: backend {cfg.backend}: no way to read its values")
    return sorted(out, key=lambda s: (s.namespace, s.name))


def _read_sealed(cfg: StackConfig, material: Material) -> list[SecretValues]:
    if not material.private_keys:
        raise KsecretsError(f"{cfg.source}: reading sealed values needs {cfg.spec.migrate_material()}")
    out = []
    for i, entry in enumerate(cfg.sealed):
        where = f"{cfg.source}: sealed[{i}] ({entry.namespace}/{entry.name})"
        secret = unseal(sealed_secret(cfg, entry), list(material.private_keys), where)
        values = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        out.append(SecretValues(entry.namespace, entry.name, entry.type, values))
    return out


def _read_sops(cfg: StackConfig, material: Material) -> list[SecretValues]:
    from ksecrets.usecases.stack_facts import sops_secrets

    files = sops_secrets(cfg)
    if files and not material.age_identities:
        raise KsecretsError(f"{cfg.source}: reading SOPS files needs {cfg.spec.migrate_material()}")
    out = []
    for f in files:
        values = sops.secret_values(f.raw.decode("utf-8"), list(material.age_identities), f.path)
        meta = f.obj["metadata"]
        out.append(SecretValues(str(meta["namespace"]), str(meta["name"]), str(f.obj.get("type") or "Opaque"), values))
    return out


def vault_path(app: App) -> str:
    return app.vault.path if app.vault else app.name


def _read_vault(cfg: StackConfig, material: Material) -> list[SecretValues]:
    if material.vault_client is None:
        raise KsecretsError(f"{cfg.source}: reading Vault needs {cfg.spec.migrate_material()}")
    mount = cfg.vault.kv_mount if cfg.vault else "secret"
    out = []
    for app in cfg.apps:
        data, _ = kv.read_current(material.vault_client, mount, vault_path(app))
        if not data:
            continue  # nothing pushed for this app: no Secret to move
        out.append(SecretValues(app.namespace, app.secret_name, "Opaque", {k: v.encode() for k, v in data.items()}))
    return out


def pulumi_config_cli(cfg: StackConfig) -> Mapping[str, Any]:
    """`pulumi config --stack S --show-secrets --json` in the project folder: the stack's config
    with its secrets decrypted by Pulumi (its secrets provider, PULUMI_CONFIG_PASSPHRASE...)."""
    try:
        res = subprocess.run(
            ["pulumi", "config", "--stack", cfg.stack, "--show-secrets", "--json"],
            cwd=cfg.root,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KsecretsError(f"{cfg.source}: reading manualValues needs the pulumi CLI ({type(exc).__name__})") from None
    if res.returncode != 0:
        last = (res.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1][:200]
        raise KsecretsError(f"{cfg.source}: pulumi config --stack {cfg.stack} failed: {last}")
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise KsecretsError(f"{cfg.source}: pulumi config --json: not JSON") from None


def _read_manual(cfg: StackConfig, material: Material) -> list[SecretValues]:
    reader = material.pulumi_config or pulumi_config_cli
    entry = reader(cfg).get(PREFIX + "manualValues")
    if entry is None:
        return []
    manual = entry.get("objectValue") if isinstance(entry, dict) and "objectValue" in entry else None
    if manual is None and isinstance(entry, dict) and "value" in entry:
        try:
            manual = json.loads(entry["value"])
        except (TypeError, ValueError):
            raise KsecretsError(f"{cfg.source}: {PREFIX}manualValues: not a mapping") from None
    if not isinstance(manual, dict):
        raise KsecretsError(f"{cfg.source}: {PREFIX}manualValues: not a mapping")
    out = []
    for secret, values in sorted(manual.items()):
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise KsecretsError(f"{cfg.source}: {PREFIX}manualValues.{secret}: must map keys to strings")
        apps = [a for a in cfg.apps if a.secret_name == secret]
        if not apps:
            raise KsecretsError(f"{cfg.source}: {PREFIX}manualValues.{secret}: no app uses it; nothing was written")
        for ns in sorted({a.namespace for a in apps}):
            out.append(SecretValues(ns, str(secret), "Opaque", {k: v.encode() for k, v in values.items()}))
    return out


# --- writing in ------------------------------------------------------------------------------------


def _check_for_vault(cfg: StackConfig, secrets: Iterable[SecretValues]) -> dict[SecretId, App]:
    """Each Secret's app (its kv path), every value UTF-8, every type Opaque, no shared path."""
    apps: dict[SecretId, App] = {}
    paths: dict[str, SecretId] = {}
    for s in secrets:
        where = f"{cfg.source}: {s.namespace}/{s.name}"
        app = next((a for a in cfg.apps if a.namespace == s.namespace and a.secret_name == s.name), None)
        if app is None:
            raise KsecretsError(f"{where}: no app uses this Secret, so it has no Vault path; nothing was written")
        if s.type != "Opaque":
            raise KsecretsError(f"{where}: type {s.type} is not Opaque, which the Vault Secrets Operator creates")
        for key, value in s.values.items():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise KsecretsError(f"{where}: key {key}: not UTF-8 text, which Vault kv cannot hold") from None
        p = vault_path(app)
        if p in paths and paths[p] != (s.namespace, s.name):
            raise KsecretsError(f"{cfg.source}: two Secrets would share Vault path {p!r}; set vault.path")
        paths[p] = (s.namespace, s.name)
        apps[(s.namespace, s.name)] = app
    return apps


def _write_vault(target: StackConfig, secrets: list[SecretValues], material: Material) -> list[str]:
    if material.vault_client is None:
        raise KsecretsError(f"{target.source}: writing to Vault needs {target.spec.migrate_material()}")
    apps = _check_for_vault(target, secrets)
    mount = target.vault.kv_mount if target.vault else "secret"
    lines = []
    for s in secrets:
        path = vault_path(apps[(s.namespace, s.name)])
        values = {k: v.decode("utf-8") for k, v in s.values.items()}
        result = kv.write_if_changed(material.vault_client, mount, path, values)
        back, version = kv.read_current(material.vault_client, mount, path)
        if back != values:
            raise KsecretsError(
                f"{kv.data_path(mount, path)}: version {version} does not hold what was written "
                "(changed concurrently?); the stack file is unchanged"
            )
        lines.append(f"{kv.data_path(mount, path)}: version {result.version} ({len(values)} keys)")
    return lines


def _write_sops(target: StackConfig, secrets: list[SecretValues], material: Material) -> list[str]:
    recipients = list(target.sops.recipients) or list(material.age_recipients)
    if not recipients:
        raise KsecretsError(
            f"{target.source}: {PREFIX}sops.recipients: empty; pass --age-recipient (the stack's age public key)"
        )
    texts: list[tuple[Path, str, str]] = []
    for s in secrets:
        rel = secret_file(target.stack, s.name)
        path = Path(target.root) / rel
        data = {k: base64.b64encode(s.values[k]).decode("ascii") for k in sorted(s.values)}
        if path.exists() and material.age_identities:
            try:
                same = sops.secret_values(path.read_text(encoding="utf-8"), list(material.age_identities), rel)
            except (KsecretsError, UnicodeDecodeError):
                same = None
            if same == dict(s.values):
                texts.append((path, rel, ""))  # already there: keep the file (and its ciphertexts)
                continue
        if any(t[1] == rel for t in texts):
            raise KsecretsError(f"{target.source}: two Secrets named {s.name} in different namespaces: one SOPS file")
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(s.name, s.namespace),
            "type": s.type,
            "data": data,
        }
        texts.append((path, rel, sops.encrypt_secret(manifest, recipients, rel)))
    lines = []
    for path, rel, text in texts:  # every file encrypted before any is written
        if text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text, 0o644)
        lines.append(f"{rel}: {'written' if text else 'already there'}")
    return lines


def _write_sealed(target: StackConfig, secrets: list[SecretValues], material: Material) -> list[str]:
    from ksecrets.sealing import churn
    from ksecrets.usecases.seal_stack import SealRequest, certificate_path, seal_into_stack

    if not certificate_path(target)[0].exists():
        raise KsecretsError(
            f"{target.source}: {PREFIX}sealedSecrets.certificate: {certificate_path(target)[1]} does not exist; "
            f"fetch it (kubeseal --fetch-cert) or ksecrets keygen --stack {target.stack}"
        )
    seal_key = churn.seal_key_from_env()
    lines = []
    for s in secrets:
        if not s.values:
            raise KsecretsError(f"{target.source}: {s.namespace}/{s.name}: no keys; a SealedSecret needs one")
    for s in secrets:
        request = SealRequest(
            name=s.name, values=dict(s.values), namespace=s.namespace, secret_type=s.type, prune=True, seal_key=seal_key
        )
        report = seal_into_stack(target.root, target.stack, request)
        lines.append(f"{report.source}: sealed {s.namespace}/{s.name} ({len(s.values)} keys)")
    return lines


def write_values(target: StackConfig, secrets: list[SecretValues], material: Material) -> list[str]:
    """Write every Secret into the target backend (`target`: the stack parsed as that backend)."""
    spec = target.spec
    if not spec.migrate_in:
        raise KsecretsError(f"{target.source}: backend {spec.name}: migrate cannot write into it")
    if spec.vault:
        return _write_vault(target, secrets, material)
    if spec.sops_files:
        return _write_sops(target, secrets, material)
    if spec.seals:
        return _write_sealed(target, secrets, material)
    raise KsecretsError(f"{target.source}: backend {spec.name}: no way to write its values")  # pragma: no cover


# --- the whole move --------------------------------------------------------------------------------


def _as_target(path: Path, cfg: StackConfig, spec: BackendSpec, keys: dict[tuple[str, str], list[str]], material):
    """The stack parsed as if already switched (its defaults, paths, recipients checked)."""
    doc, y, _ = stackfile.load_round_trip(path, cfg.source)  # bounded: size, depth, aliases (yamlio)
    _switch(doc["config"], cfg, spec, keys, material)
    import io

    buf = io.StringIO()
    y.dump(doc, buf)
    return parse(raw_from_text(buf.getvalue(), cfg.source), stack=cfg.stack, source=cfg.source, root=cfg.root)


def _switch(config: Any, cfg: StackConfig, spec: BackendSpec, keys, material: Material) -> None:
    """The stack's config made the target's: its module's switch, the age recipients given, and
    after Vault `vaultMigration: uninstall` (Vault and the operator stay installed and Flux keeps its
    rights to prune the operator's objects until `--finish`: manifests/flux.py)."""
    spec.migrate_switch(config, cfg.stack, PREFIX, keys)
    if spec.sops_files and material.age_recipients:
        _add_recipients(config, material.age_recipients)
    if cfg.spec.vault and not spec.vault:
        # A vault stack may rely on Vault's defaults (no `vault:` section): the switched stack must
        # still install that same Vault until `--finish`, so the defaults are written out (an empty
        # section is the defaults, as the model reads it).
        config.setdefault(PREFIX + "vault", {})
        config[PREFIX + "vaultMigration"] = "uninstall"


def _add_recipients(config: Any, recipients: Sequence[str]) -> None:
    section = config.get(PREFIX + "sops")
    if section is None:
        section = config[PREFIX + "sops"] = {}
    have = list(section.get("recipients") or [])
    section["recipients"] = have + [r for r in recipients if r not in have]


def _app_keys(cfg: StackConfig, secrets: list[SecretValues]) -> dict[tuple[str, str], list[str]]:
    by_secret = {(s.namespace, s.name): sorted(s.values) for s in secrets}
    return {
        (a.namespace, a.name): by_secret[(a.namespace, a.secret_name)]
        for a in cfg.apps
        if (a.namespace, a.secret_name) in by_secret
    }


def refuse_dynamic(cfg: StackConfig, to: str) -> None:
    """A VaultDynamicSecret's credentials are made by Vault per lease (a database role): no other
    backend makes them, and copying one lease's credentials into Git would freeze them there. A move
    away from Vault stops before anything is written while an app still has `vault.dynamic`."""
    if not cfg.spec.vault:
        return
    for i, app in enumerate(cfg.apps):
        for d in app.vault.dynamic if app.vault else ():
            raise KsecretsError(
                f"{cfg.source}: apps[{i}] ({app.name}): vault.dynamic: Secret {d.name} holds credentials Vault "
                f"makes per lease (role {d.role}), which {to} cannot make; give the app static credentials "
                "(ksecrets vault push, then remove vault.dynamic) or keep the stack on vault; nothing was written"
            )


def migrate(root: str | os.PathLike[str], stack: str, to: str, material: Material) -> MigrateReport:
    """Read every value out of the stack's backend, write it into `to`, then switch the stack file."""
    cfg = load_stack(stack, root)
    path = stackfile.stack_file_path(stack, root)
    target_spec = backends.find(to)
    if target_spec is None:
        raise KsecretsError(f"--to {to}: not a backend ({', '.join(backends.BACKENDS)})")
    if cfg.spec is target_spec:
        raise KsecretsError(f"{cfg.source}: backend: already {to}; nothing to migrate")
    if not target_spec.migrate_in:
        raise KsecretsError(f"--to {to}: migrate cannot write into backend {to} (a source only)")
    refuse_dynamic(cfg, to)
    secrets = read_values(cfg, material)
    keys = _app_keys(cfg, secrets)
    target = _as_target(path, cfg, target_spec, keys, material)
    if target_spec.vault:
        _check_for_vault(target, secrets)  # before anything is written
    report = MigrateReport(cfg.backend, to)
    report.written = write_values(target, secrets, material)
    report.values = sum(len(s.values) for s in secrets)

    def mutate(config: Any) -> None:
        _switch(config, cfg, target_spec, keys, material)

    def check(text: str) -> None:
        parse(raw_from_text(text, cfg.source), stack=cfg.stack, source=cfg.source, root=cfg.root)

    report.switched = stackfile.update_stack_file(path, mutate, check=check)  # locked read to write
    if cfg.spec.seals and cfg.vault_migration not in ("install", "release"):
        report.warnings.append(
            f"{cfg.source}: the stack skipped `migrate --prepare`: its Secrets are still owned by their "
            "SealedSecrets, so when Flux prunes those the Secrets are deleted until the new backend writes them "
            "again; apply `--prepare` first on a live cluster"
        )
    if cfg.spec.sops_files:
        from ksecrets.usecases.stack_facts import sops_secrets

        bare = [
            f.path
            for f in sops_secrets(cfg)
            if not FLUX_PRUNE_DISABLED.items() <= ((f.obj.get("metadata") or {}).get("annotations") or {}).items()
        ]
        if bare:
            report.warnings.append(
                f"{', '.join(bare)}: without `migrate --prepare` (prune: disabled) Flux deletes these Secrets when "
                "the switch drops them, until the new backend writes them again; apply `--prepare` first on a live cluster"
            )
    if cfg.spec.vault and cfg.vault_migration == "release":
        from ksecrets.usecases.vault_migrate import kube_context
        from ksecrets.vault.operator import orphan_delete_command

        context = kube_context(path)
        report.warnings.append(
            f"{cfg.source}: Flux leaves the VaultStaticSecrets (prune: disabled), whose Secrets still carry their "
            "ownerReference: once the new backend wrote the Secrets, and before `--finish` uninstalls the operator "
            "(it refuses while one is left), delete them without their Secrets: "
            + "; ".join(orphan_delete_command(context, a.namespace, a.name) for a in cfg.apps if a.vault is not None)
        )
    elif cfg.spec.vault:
        report.warnings.append(
            f"{cfg.source}: the Secrets of a {cfg.backend} stack are owned by their VaultStaticSecrets: removing "
            "those deletes them until the new backend writes them; apply `migrate --prepare` first on a live cluster"
        )
    if cfg.spec.pulumi_values and cfg.vault_migration != "release":
        report.warnings.append(
            f"{cfg.source}: the stack skipped `migrate --prepare`: the next `pulumi up` deletes its Secrets (the "
            "program no longer declares them), and a SealedSecret applied before that finds the Secret not its own and "
            "gives up (the end-to-end run saw no Secret until it ended). On a live cluster, switch "
            f"back first (backend: {cfg.backend}, no vaultMigration; the values are still in {PREFIX}manualValues), then "
            f"`ksecrets migrate --prepare --to {to}`, `pulumi up`, and this switch again"
        )
    return report


# A sops stack's Secrets are applied by Flux (in its inventory): at the switch Flux would prune
# them. With this annotation in the SOPS file Flux leaves the Secret in place when it drops it.
FLUX_PRUNE_DISABLED = flux_manifests.FLUX_PRUNE_DISABLED


def prepare(root: str | os.PathLike[str], stack: str, to: str, identities: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The phase before the switch that keeps workloads running; returns (what, files written).

    - a sealed-secrets stack (any target but Vault, which installs it: `vault_migrate.prepare`):
      `vaultMigration: release`, its SealedSecrets release their Secrets. Needs no key.
    - a sops stack: each SOPS file re-encrypted (same values, same recipients) with
      `FLUX_PRUNE_DISABLED` in its metadata, and for a sealed-secrets target the controller's
      `managed` annotation (it then takes over the existing Secret). Needs the age key.
    - a vault stack: `vaultMigration: release`, its VaultStaticSecrets carry `FLUX_PRUNE_DISABLED`
      (Flux leaves them at the switch, so the garbage collector does not delete their Secrets) and
      have the operator write the controller's `managed` annotation on their Secrets (a SealedSecret
      then takes them over in place). Needs no key.
    - a manual stack: `vaultMigration: release`, its Secrets planned with `retain` and the
      controller's `managed` annotation; the `pulumi up` that follows records `retainOnDelete` in
      Pulumi's state. Needs no key."""
    from ksecrets.manifests.sealed_secrets import HANDOVER_ANNOTATIONS

    path = stackfile.stack_file_path(stack, root)
    cfg = load_stack_file(path)
    target = backends.find(to)
    if target is None or not target.migrate_in or cfg.spec is target:
        raise KsecretsError(f"--to {to}: not a backend this stack can move to")
    refuse_dynamic(cfg, to)
    if cfg.spec.sops_files:
        from ksecrets.usecases.stack_facts import sops_secrets

        wanted = dict(FLUX_PRUNE_DISABLED)
        if target.seals:
            wanted["sealedsecrets.bitnami.com/managed"] = HANDOVER_ANNOTATIONS["sealedsecrets.bitnami.com/managed"]
        files = sops_secrets(cfg)
        if files and not identities:
            raise KsecretsError(f"{cfg.source}: --prepare re-encrypts the SOPS files: {cfg.spec.migrate_material()}")
        texts = []
        for f in files:
            text = f.raw.decode("utf-8")
            plain = sops.decrypt(text, list(identities), f.path)
            meta = plain.setdefault("metadata", {})
            annotations = dict(meta.get("annotations") or {})
            if wanted.items() <= annotations.items():
                continue
            meta["annotations"] = {**annotations, **wanted}
            plain.pop("sops", None)
            recipients = sops.parse(text, f.path).recipients
            texts.append((Path(cfg.root) / f.path, f.path, sops.encrypt_secret(plain, recipients, f.path)))
        for real, _, new in texts:  # every file encrypted before any is written
            atomic_write_text(real, new, 0o644)
        return ", ".join(f"{k}: {v}" for k, v in wanted.items()), [rel for _, rel, _ in texts]
    if "release" not in cfg.spec.migration_phases:
        raise KsecretsError(
            f"{cfg.source}: backend: {cfg.backend}; its Secrets have no phase that hands them over in place (--prepare)"
        )
    with locked(path, "stack file", source=path.name):
        cfg = load_stack_file(path)

        def mutate(config: Any) -> None:
            config[PREFIX + "vaultMigration"] = "release"

        def check(text: str) -> None:
            parse(raw_from_text(text, cfg.source), stack=cfg.stack, source=cfg.source, root=cfg.root)

        wrote = stackfile.update_stack_file(path, mutate, check=check)
        return "vaultMigration: release", [path.name] if wrote else []


def identities_of(key_files: Iterable[str | os.PathLike[str]]) -> list[str]:
    out: list[str] = []
    for f in key_files:
        data = read_bytes(f, "age key file", source=str(f))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KsecretsError(f"{f}: not an age key file (not UTF-8)") from None
        out += sops.identities_from_key_file(text, str(f))
    return out

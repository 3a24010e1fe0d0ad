"""Sealing straight into a stack file: `seal --stack`, `reseal` and `verify` work here.

A stack keeps its sealed values under `k8s-secrets:sealed`, one entry per Secret (see
`ksecrets.config.model.SealedEntry`); its certificate is `k8s-secrets:sealedSecrets.certificate`
(default `certs/<stack>.pem`), relative to the stack file's directory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from ksecrets.config import load_stack, load_stack_file, parse
from ksecrets.config.load import raw_from_text
from ksecrets.config.model import SealedEntry, StackConfig
from ksecrets.config.names import PREFIX, stack_files
from ksecrets.config.stackfile import (
    PendingWrite,
    prepare_stack_update,
    set_certificate_path,
    stack_file_path,
    upsert_sealed_secret,
)
from ksecrets.errors import KsecretsError
from ksecrets.fileio import Transaction, locked
from ksecrets.sealing import churn, crypto
from ksecrets.sealing.certs import SealingCert, load_certificate, not_yet_valid, not_yet_valid_problem
from ksecrets.sealing.secret_input import check_size


def certificate_path(cfg: StackConfig) -> tuple[Path, str]:
    """(absolute path, the path as written in the stack file) of the stack's sealing certificate."""
    rel = cfg.sealed_secrets.certificate or f"certs/{cfg.stack}.pem"
    return Path(cfg.root) / rel, rel


def stack_certificate(
    cfg: StackConfig,
    *,
    now: _dt.datetime | None = None,
    allow_expired: bool = False,
    allow_not_yet_valid: bool = False,
) -> SealingCert:
    path, rel = certificate_path(cfg)
    return load_certificate(
        path,
        source=f"{cfg.source}: {PREFIX}sealedSecrets.certificate: {rel}",
        now=now,
        allow_expired=allow_expired,
        regular=True,
        allow_not_yet_valid=allow_not_yet_valid,
    )


def _entry_index(cfg: StackConfig, entry: SealedEntry) -> int:
    return cfg.sealed.index(entry)


def _validator(stack: str, source: str, root: str):
    """Re-validate the edited file with the config loader before it is written."""

    def check(text: str) -> None:
        parse(raw_from_text(text, source), stack=stack, source=source, root=root)

    return check


def not_a_sealed_stack(cfg: StackConfig, name: str, namespace: str | None) -> str:
    """Why `seal --stack` does not apply to a vault or manual stack, and the command that does."""
    apps = [a for a in cfg.apps if a.secret_name == name and namespace in (None, a.namespace)]
    paths = sorted({a.vault.path if a.vault is not None and a.vault.path else a.name for a in apps}) or ["APP"]
    how, where = cfg.spec.put_values(cfg.stack, name, paths)
    return (
        f"{cfg.source}: {PREFIX}backend is {cfg.backend}: its values {where}, not sealed in the stack file "
        f"(it has no sealing certificate); instead: {how}"
    )


def resolve_namespace(cfg: StackConfig, name: str, namespace: str | None) -> str:
    if namespace:
        return namespace
    found = sorted({a.namespace for a in cfg.apps if a.secret_name == name})
    if not found:
        raise KsecretsError(f"{cfg.source}: no app has secretName {name}; pass --namespace")
    if len(found) > 1:
        raise KsecretsError(
            f"{cfg.source}: apps in namespaces {', '.join(found)} use secretName {name}; pass --namespace"
        )
    return found[0]


@dataclass
class SealReport:
    source: str
    name: str
    namespace: str
    scope: str
    fingerprint: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    resealed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reason: str | None = None  # why every value was re-encrypted, when it was
    warnings: list[str] = field(default_factory=list)
    written: bool = False

    def lines(self) -> list[str]:
        head = f"{self.source}: {self.namespace}/{self.name} ({self.scope}, {self.fingerprint})"
        out = [f"warning: {w}" for w in self.warnings]
        if self.reason:
            out.append(f"{head}: re-sealed every value: {self.reason}")
        parts = []
        for label, keys in (
            ("added", self.added),
            ("changed", self.changed),
            ("re-sealed", self.resealed),
            ("unchanged", self.unchanged),
            ("kept (not in input)", self.kept),
            ("removed", self.removed),
        ):
            if keys:
                parts.append(f"{label}: {', '.join(keys)}")
        out.append(f"{head}: {'; '.join(parts) or 'no keys'}" + ("" if self.written else " (file unchanged)"))
        return out


@dataclass(frozen=True)
class SealRequest:
    """One Secret's values to seal into a stack (or several): what `seal --stack`, `rotate` and
    `adopt` ask for. `labels`, `annotations` and `immutable` (from a Secret manifest: `adopt`) go
    into the entry, which carries them into the SealedSecret's template; None keeps the entry's.
    With `seal_key`, a value whose keyed digest matches keeps its ciphertext (churn-free)."""

    name: str
    values: Mapping[str, bytes]
    namespace: str | None = None  # default: from the app that uses the Secret
    scope: str | None = None  # default: the entry's, else strict
    secret_type: str | None = None  # default: the entry's, else Opaque
    prune: bool = False  # drop keys of the entry that are not in `values`
    seal_key: bytes | None = None
    now: _dt.datetime | None = None  # the certificate's validity is checked at this time
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    immutable: bool | None = None
    allow_not_yet_valid: bool = False


def seal_into_stack(root: str | os.PathLike[str], stack: str, request: SealRequest) -> SealReport:
    """Seal `values` for Secret `name` with the stack's certificate and upsert the stack's entry.

    Churn-free: with `seal_key`, a value whose keyed digest matches keeps its ciphertext.
    The stack file stays locked from the read to the write, so parallel runs serialise.
    """
    path = stack_file_path(stack, root)
    with locked(path, "stack file", source=path.name):
        report, pending = prepare_seal_into_stack(root, stack, request)
        report.source = pending.where()  # after `stack split`: the included file, not the stack file
        report.written = pending.commit()
    return report


def seal_into_stacks(root: str | os.PathLike[str], stacks: Iterable[str], request: SealRequest) -> list[SealReport]:
    """The same values into several stacks, each sealed with its own certificate. Every stack is
    sealed and validated before any file is written: one failure writes nothing. Every stack file
    is locked from the first read to the last write, in one global order (`lock_order`), so two
    such runs over overlapping stacks, named in any order, cannot deadlock."""
    stacks = list(stacks)
    with contextlib.ExitStack() as held:
        for path in lock_order(stack_file_path(stack, root) for stack in stacks):
            held.enter_context(locked(path, "stack file", source=path.name))
        prepared = [prepare_seal_into_stack(root, stack, request) for stack in stacks]
        # One stack that cannot be written: the stacks written before it are restored too.
        with Transaction() as tx:
            for report, pending in prepared:
                for f in pending.files():
                    tx.keep(f)
                report.source = pending.where()
                report.written = pending.commit()
    return [report for report, _ in prepared]


def lock_order(paths: Iterable[Path]) -> list[Path]:
    """The order every writer that holds several stack files takes their locks in: the files' real
    absolute paths (symlinks resolved, as `locked` locks them), sorted, each once. One order for
    every run, whatever order its stacks were named in, whatever its working directory or --root,
    so no two runs each hold a file the other waits for."""
    real = {Path(os.path.realpath(p)): Path(p) for p in paths}
    return [real[r] for r in sorted(real, key=str)]


def sealed_stack_names(root: str | os.PathLike[str] = ".") -> list[str]:
    """Stacks whose backend is sealed-secrets (what `seal --all-stacks` seals into)."""
    out = []
    for path in stack_files(root):
        cfg = load_stack_file(path)
        if cfg.spec.seals:
            out.append(cfg.stack)
    if not out:
        raise KsecretsError(f"{root}: no stack with backend sealed-secrets")
    return out


def prepare_seal_into_stack(
    root: str | os.PathLike[str], stack: str, request: SealRequest
) -> tuple[SealReport, PendingWrite]:
    """The seal of one Secret into a stack, validated, not yet written."""
    name, values, namespace, scope, prune, seal_key = (
        request.name,
        request.values,
        request.namespace,
        request.scope,
        request.prune,
        request.seal_key,
    )
    secret_type, labels, annotations, immutable = (
        request.secret_type,
        request.labels,
        request.annotations,
        request.immutable,
    )
    cfg = load_stack(stack, root)
    source = cfg.source
    if not cfg.spec.seals and not certificate_path(cfg)[0].exists():
        raise KsecretsError(not_a_sealed_stack(cfg, name, namespace))
    cert = stack_certificate(cfg, now=request.now, allow_not_yet_valid=request.allow_not_yet_valid)
    ns = resolve_namespace(cfg, name, namespace)
    entry = cfg.sealed_entry(ns, name)
    scope = crypto.check_scope(scope) if scope else (entry.scope if entry else "strict")
    where = f"{PREFIX}sealed[{_entry_index(cfg, entry)}]" if entry else f"{PREFIX}sealed"
    report = SealReport(source, name, ns, scope, cert.fingerprint)
    if not cfg.spec.seals:
        report.warnings.append(
            f"{source}: {PREFIX}backend is {cfg.backend}; these values are used once it is sealed-secrets"
        )
    if not values and not prune:
        raise KsecretsError(f"{source}: {ns}/{name}: no values given (use --from-env-file or --from-literal)")
    check_size(values, f"{source}: {ns}/{name}", "values")

    old_enc = dict(entry.encrypted_data) if entry else {}
    old_dig = dict(entry.digests) if entry else {}
    old_fleet = dict(entry.fleet_digests) if entry else {}
    same_slot = entry is not None and entry.scope == scope and entry.certificate_fingerprint == cert.fingerprint
    if entry is not None and entry.certificate_fingerprint != cert.fingerprint:
        report.reason = f"the certificate changed (was {entry.certificate_fingerprint or 'not recorded'})"
    elif entry is not None and entry.scope != scope:
        report.reason = f"the scope changed (was {entry.scope})"
    elif seal_key is None and old_enc:
        report.reason = f"{churn.ENV_VAR} is not set, so unchanged values cannot be recognised"

    label = crypto.label_for(scope, ns, name)
    new_enc: dict[str, str] = {}
    new_dig: dict[str, str] = {}
    new_fleet: dict[str, str] = {}
    for key in sorted(values):
        slot: dict[str, Any] = dict(
            namespace=ns, name=name, key=key, scope=scope, fingerprint=cert.fingerprint, value=values[key]
        )
        if (
            seal_key is not None
            and same_slot
            and key in old_enc
            and churn.unchanged(old_dig.get(key), seal_key, **slot)
        ):
            new_enc[key] = old_enc[key]
            report.unchanged.append(key)
        else:
            new_enc[key] = crypto.encrypt_value(cert.public_key, values[key], label)
            if key not in old_enc:
                report.added.append(key)
            elif seal_key is not None and same_slot and old_dig.get(key):
                report.changed.append(key)
            else:
                report.resealed.append(key)
        if seal_key is not None:
            new_dig[key] = churn.value_digest(seal_key, **slot)
            new_fleet[key] = churn.fleet_digest(seal_key, namespace=ns, name=name, key=key, value=values[key])
    if report.reason is None and old_enc and not report.unchanged and not report.changed and report.resealed:
        report.reason = f"no stored digests to compare (sealed without {churn.ENV_VAR}, or with another key)"
    leftover = [k for k in sorted(old_enc) if k not in values]
    if leftover and prune:
        report.removed = leftover
    elif leftover and not same_slot:
        raise KsecretsError(
            f"{source}: {where}: {', '.join(leftover)} not in the input but sealed for another certificate or scope; "
            f"give their values, pass --prune to drop them, or run `ksecrets reseal`"
        )
    else:
        for key in leftover:
            new_enc[key] = old_enc[key]
            if key in old_dig:
                new_dig[key] = old_dig[key]
            if key in old_fleet:
                new_fleet[key] = old_fleet[key]
            report.kept.append(key)
    if not new_enc:
        raise KsecretsError(f"{source}: {ns}/{name}: nothing left to seal")
    if secret_type is None:
        secret_type = entry.type if entry else "Opaque"
    _check_result(
        cfg,
        report,
        where,
        name=name,
        namespace=ns,
        scope=scope,
        encrypted_data=new_enc,
        secret_type=secret_type,
        fingerprint=cert.fingerprint,
        labels=dict(labels) if labels else (dict(entry.labels) if entry else None),
        annotations=dict(annotations) if annotations else (dict(entry.annotations) if entry else None),
        immutable=immutable if immutable is not None else (entry.immutable if entry else None),
    )

    def mutate(config) -> None:
        upsert_sealed_secret(
            config,
            name=name,
            namespace=ns,
            scope=scope,
            encrypted_data=new_enc,
            certificate_fingerprint=cert.fingerprint,
            digests=new_dig,
            fleet_digests=new_fleet,
            secret_type=secret_type,
            labels=labels,
            annotations=annotations,
            immutable=immutable,
        )

    path = stack_file_path(stack, root)
    return report, prepare_stack_update(path, mutate, check=_validator(stack, source, cfg.root))


def _check_result(
    cfg: StackConfig,
    report: SealReport,
    where: str,
    *,
    name: str,
    namespace: str,
    scope: str,
    encrypted_data: Mapping[str, str],
    secret_type: str,
    fingerprint: str,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    immutable: bool | None,
) -> None:
    """The SealedSecret this seal leaves in the stack (every key, not only this run's): refused
    when the cluster would refuse it; a warning when export will refuse its namespace."""
    from ksecrets.limits import size_problem
    from ksecrets.sealing.sealedsecret import build_sealed_secret

    obj = build_sealed_secret(
        name=name,
        namespace=namespace,
        scope=scope,
        encrypted_data=encrypted_data,
        secret_type=secret_type,
        labels=labels,
        annotations=annotations,
        immutable=immutable,
        fingerprint=fingerprint,
    )
    problem = size_problem(obj)
    if problem:
        raise KsecretsError(
            f"{cfg.source}: {where}: {namespace}/{name}: with {len(encrypted_data)} keys {problem}; nothing written"
        )
    if namespace not in cfg.known_namespaces():
        report.warnings.append(
            f'{cfg.source}: namespace "{namespace}" is not created by this stack nor listed in externalNamespaces: '
            f"`ksecrets export` refuses {namespace}/{name} until it is (add an app there, or list the namespace under "
            "namespaces or externalNamespaces)"
        )


@dataclass
class ResealReport:
    source: str
    fingerprint: str
    resealed: list[str] = field(default_factory=list)  # "ns/name (n keys)"
    skipped: list[str] = field(default_factory=list)
    certificate_path: str | None = None
    written: bool = False

    def lines(self) -> list[str]:
        out = [
            f"{self.source}: re-sealed {len(self.resealed)} Secret(s) for {self.fingerprint}"
            + (f": {', '.join(self.resealed)}" if self.resealed else "")
        ]
        if self.skipped:
            out.append(f"{self.source}: already sealed for {self.fingerprint}, left as is: {', '.join(self.skipped)}")
        if self.certificate_path:
            out.append(f"{self.source}: {PREFIX}sealedSecrets.certificate set to {self.certificate_path}")
        return out


def reseal_stack(
    root: str | os.PathLike[str],
    stack: str,
    *,
    private_keys: Iterable[rsa.RSAPrivateKey],
    cert: SealingCert,
    set_certificate: bool = False,
    cert_path: str | os.PathLike[str] | None = None,
    seal_key: bytes | None = None,
    force: bool = False,
) -> ResealReport:
    """Decrypt every sealed value of a stack with the old keys and encrypt it for `cert`, in one write."""
    path = stack_file_path(stack, root)
    with locked(path, "stack file", source=path.name):
        plan = _reseal_plan(root, stack, list(private_keys), cert, seal_key, force)
        assert plan is not None  # with a certificate, a plan (maybe of nothing)
        rel = None
        if set_certificate:
            if cert_path is None:
                raise KsecretsError("--set-certificate needs --cert")
            rel = os.path.relpath(Path(cert_path).resolve(), Path(plan.root).resolve())
            if rel.startswith(".."):
                raise KsecretsError(
                    f"{cert_path}: must be inside the repository ({plan.root}) to be the stack's certificate"
                )
            plan.report.certificate_path = rel
        pending = _prepare_reseal(root, stack, plan, rel)
        plan.report.written = pending.commit()
        plan.report.source = pending.where() if plan.report.written else plan.report.source
        return plan.report


def reseal_stacks(
    root: str | os.PathLike[str],
    stacks: Iterable[str],
    *,
    private_keys: Iterable[rsa.RSAPrivateKey],
    seal_key: bytes | None = None,
    force: bool = False,
    jobs: int = 1,
) -> list[ResealReport]:
    """Re-seal several stacks (a fleet after key renewals), each for its own configured certificate
    (`k8s-secrets:sealedSecrets.certificate`: fetch the renewed ones first). Stacks with nothing
    sealed are left out. As `seal_into_stacks`: every stack file locked in `lock_order` from the
    first read to the last write, every stack re-sealed and validated before any file is written,
    and one that cannot be written restores the ones written before it. A stack's whole work runs
    in one of `jobs` processes, a stack per task (`_reseal_one`): its RSA (one private and one
    public operation per value), and reading, editing, dumping and validating its file (about
    half of the time: ruamel's round trip of a 200-app stack file costs nearly what its 600
    values' RSA costs). With fewer stacks than jobs, a stack's values are cut into slices first
    (`_reseal_prepared`).
    This process only takes the locks, gathers the new texts in the stacks' order and writes
    them. What comes back from a worker is ciphertext, digests and file text: no plaintext."""
    stacks = list(stacks)
    keys = list(private_keys)
    with contextlib.ExitStack() as held:
        for path in lock_order(stack_file_path(stack, root) for stack in stacks):
            held.enter_context(locked(path, "stack file", source=path.name))
        done = [one for one in _reseal_prepared(root, stacks, keys, seal_key, force, jobs) if one is not None]
        with Transaction() as tx:  # in the order the stacks were given: the same writes whatever `jobs`
            for report, pending in done:
                if pending is None:
                    continue
                for f in pending.files():
                    tx.keep(f)
                report.written = pending.commit()
                report.source = pending.where() if report.written else report.source
    return [report for report, _ in done]


@dataclass
class _ResealPlan:
    stack: str
    root: str
    report: ResealReport
    # per entry: name, namespace, scope, type, encryptedData, digests, fleetDigests (plain data: it
    # crosses from a worker process)
    updates: list[tuple[str, str, str, str, dict[str, str], dict[str, str], dict[str, str]]]
    source: str


def _keys_first_for(keys: list[rsa.RSAPrivateKey], fingerprints: list[str], fingerprint: str | None):
    """`keys` with those whose public key has `fingerprint` first: a fleet's reseal gets every
    cluster's old key, and each value is then decrypted with one RSA operation, not one per key."""
    if not fingerprint:
        return keys
    return [k for k, f in zip(keys, fingerprints) if f == fingerprint] + [
        k for k, f in zip(keys, fingerprints) if f != fingerprint
    ]


def _reseal_plan(
    root: str | os.PathLike[str],
    stack: str,
    keys: list[rsa.RSAPrivateKey],
    cert: SealingCert | None,
    seal_key: bytes | None,
    force: bool,
    part: tuple[int, int] = (0, 1),
    cfg: StackConfig | None = None,
) -> _ResealPlan | None:
    """The new ciphertexts of a stack's entries (for `cert`; else for the stack's own certificate,
    and None when the stack has nothing sealed). `part` (k, n): only the k-th of n contiguous
    slices of the entries (`_merged` puts the n plans back together, in order). `cfg`: the
    stack's config already loaded (a slice's worker inherits it from the parent)."""
    from ksecrets.sealing.certs import public_key_fingerprint

    cfg = cfg if cfg is not None else load_stack(stack, root)
    if cert is None:
        if not cfg.sealed:
            return None
        cert = stack_certificate(cfg)
    fingerprints = [public_key_fingerprint(k.public_key()) for k in keys]
    report = ResealReport(cfg.source, cert.fingerprint)
    updates: list[tuple[str, str, str, str, dict[str, str], dict[str, str], dict[str, str]]] = []
    k, n = part
    lo, hi = len(cfg.sealed) * k // n, len(cfg.sealed) * (k + 1) // n
    for i, entry in enumerate(cfg.sealed[lo:hi], start=lo):
        ident = f"{entry.namespace}/{entry.name}"
        if entry.certificate_fingerprint == cert.fingerprint and not force:
            report.skipped.append(ident)
            continue
        ordered = _keys_first_for(keys, fingerprints, entry.certificate_fingerprint)
        old_label = crypto.label_for(entry.scope, entry.namespace, entry.name)
        enc: dict[str, str] = {}
        dig: dict[str, str] = {}
        fleet: dict[str, str] = {}
        for key, value in entry.encrypted_data:
            try:
                plain = crypto.decrypt_value(ordered, value, old_label)
            except crypto.DecryptError as exc:
                raise KsecretsError(f"{cfg.source}: {PREFIX}sealed[{i}].encryptedData.{key}: {exc}") from None
            enc[key] = crypto.encrypt_value(cert.public_key, plain, old_label)
            if seal_key is not None:
                dig[key] = churn.value_digest(
                    seal_key,
                    namespace=entry.namespace,
                    name=entry.name,
                    key=key,
                    scope=entry.scope,
                    fingerprint=cert.fingerprint,
                    value=plain,
                )
                fleet[key] = churn.fleet_digest(
                    seal_key, namespace=entry.namespace, name=entry.name, key=key, value=plain
                )
            del plain
        updates.append((entry.name, entry.namespace, entry.scope, entry.type, enc, dig, fleet))
        report.resealed.append(f"{ident} ({len(enc)} keys)")
    return _ResealPlan(stack, str(cfg.root), report, updates, cfg.source)


def _prepare_reseal(root: str | os.PathLike[str], stack: str, plan: _ResealPlan, rel: str | None) -> PendingWrite:
    fingerprint = plan.report.fingerprint

    def mutate(config) -> None:
        for name, namespace, scope, secret_type, enc, dig, fleet in plan.updates:
            upsert_sealed_secret(
                config,
                name=name,
                namespace=namespace,
                scope=scope,
                encrypted_data=enc,
                certificate_fingerprint=fingerprint,
                digests=dig,
                fleet_digests=fleet,
                secret_type=secret_type,
            )
        if rel is not None:
            set_certificate_path(config, rel)

    return prepare_stack_update(stack_file_path(stack, root), mutate, check=_validator(stack, plan.source, plan.root))


def _reseal_one(
    root: str | os.PathLike[str],
    stack: str,
    keys: list[rsa.RSAPrivateKey],
    seal_key: bytes | None,
    force: bool,
) -> tuple[ResealReport, PendingWrite | None] | None:
    """A fleet reseal's work on one stack (for its own certificate), validated, not written: None
    when it has nothing sealed; no PendingWrite when every entry is already sealed for it (its
    file would not change: no round trip of it)."""
    plan = _reseal_plan(root, stack, keys, None, seal_key, force)
    if plan is None:
        return None
    if not plan.updates:
        return plan.report, None
    return plan.report, _prepare_reseal(root, stack, plan, None)


# A worker's recovery keys, set once per process by `_init_worker`. The pool forks, so the DER
# bytes are inherited, not sent: no private key is in a task message, and a task is a stack name.
_WORKER_KEYS: list[rsa.RSAPrivateKey] = []
# The configs of the stacks cut into slices, loaded once by the parent and inherited the same way
# (each slice's worker loading the whole stack again cost 0.17 s of CPU per slice of a 200-app stack).
_WORKER_CONFIGS: dict[str, StackConfig] = {}


# With slices: a barrier of `jobs` parties that the first `jobs` slices wait at before their RSA, so
# each of them is in a worker of its own (the queue hands tasks out in order): a worker that is
# quick with a small slice cannot take its neighbour's too while the other worker is still starting.
_WORKER_START: list[Any] = []


def _init_worker(ders: list[bytes], configs: dict[str, StackConfig] | None = None, start: Any = None) -> None:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    _WORKER_CONFIGS.clear()
    _WORKER_CONFIGS.update(configs or {})
    _WORKER_START[:] = [start] if start is not None else []

    # The parent loaded and checked these very keys (`check_private_keys` or a validating load):
    # the workers skip the RSA consistency check (about 0.25 s of CPU per 4096-bit key, per worker).
    loaded = [load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True) for der in ders]
    _WORKER_KEYS[:] = [k for k in loaded if isinstance(k, rsa.RSAPrivateKey)]


def _worker_reseal(args: tuple[str, str, bytes | None, bool]) -> tuple[ResealReport, PendingWrite | None] | None:
    root, stack, seal_key, force = args
    return _reseal_one(root, stack, _WORKER_KEYS, seal_key, force)


def _worker_plan_part(args: tuple[str, str, bytes | None, bool, tuple[int, int], bool]) -> _ResealPlan | None:
    root, stack, seal_key, force, part, first = args
    if first and _WORKER_START:
        import threading

        try:
            _WORKER_START[0].wait(timeout=30)
        except threading.BrokenBarrierError:
            pass  # a worker that did not come: the slices run anyway, fewer at once
    return _reseal_plan(root, stack, _WORKER_KEYS, None, seal_key, force, part, _WORKER_CONFIGS.get(stack))


def _worker_prepare(args: tuple[str, _ResealPlan | None]) -> tuple[ResealReport, PendingWrite | None] | None:
    root, plan = args
    if plan is None:
        return None
    if not plan.updates:
        return plan.report, None
    return plan.report, _prepare_reseal(root, plan.stack, plan, None)


def _merged(parts: list[_ResealPlan | None]) -> _ResealPlan | None:
    """The slices of one stack's plan, in order, as the plan of the whole stack."""
    if parts[0] is None:
        return None
    whole = parts[0]
    for plan in parts[1:]:
        assert plan is not None
        whole.updates.extend(plan.updates)
        whole.report.resealed.extend(plan.report.resealed)
        whole.report.skipped.extend(plan.report.skipped)
    return whole


def _reseal_prepared(
    root, stacks: list[str], keys, seal_key, force, jobs: int
) -> list[tuple[ResealReport, PendingWrite | None] | None]:
    """`_reseal_one` of each stack, in the stacks' order, in `jobs` processes: a stack per task
    when there are at least as many stacks as jobs; with fewer (one cluster), each stack's entries
    are cut into contiguous slices whose RSA runs on every core, then each stack's file is edited
    in one task. The first stack, and entry, (in that order) that fails is the error, as with one
    process; the rest are cancelled."""
    root = str(root)
    jobs = min(jobs, 8 * len(stacks))  # at most 8 slices of a stack: `--jobs 1000` is not 1000 processes
    if jobs <= 1 or not stacks:
        return [_reseal_one(root, stack, keys, seal_key, force) for stack in stacks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cryptography.hazmat.primitives import serialization

    ders = [
        k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        for k in keys
    ]
    # Fewer stacks than jobs: each stack's values are cut into slices, and its config, loaded here
    # once, reaches the slices' workers by the fork (as the keys do), not loaded again by each.
    slicing = len(stacks) < jobs
    configs = {stack: load_stack(stack, root) for stack in stacks} if slicing else {}
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(ders, configs, context.Barrier(jobs) if slicing else None),
    )
    try:
        if not slicing:
            return list(pool.map(_worker_reseal, [(root, stack, seal_key, force) for stack in stacks]))
        n = -(-jobs // len(stacks))  # slices per stack
        slices = [(stack, k) for stack in stacks for k in range(n)]
        tasks = [(root, stack, seal_key, force, (k, n), i < jobs) for i, (stack, k) in enumerate(slices)]
        parts = list(pool.map(_worker_plan_part, tasks))
        plans = [_merged(parts[i * n : (i + 1) * n]) for i in range(len(stacks))]
        return list(pool.map(_worker_prepare, [(root, plan) for plan in plans]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class VerifyResult:
    lines: list[str] = field(default_factory=list)
    problems: int = 0
    warnings: int = 0


def verify_stack(cfg: StackConfig, result: VerifyResult, now: _dt.datetime | None = None) -> None:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    st = cfg.stack
    uses_sealing = cfg.spec.seals or cfg.sealed or cfg.sealed_secrets.certificate
    if not uses_sealing:
        result.lines.append(f"{st}: backend {cfg.backend}, nothing sealed")
        return
    path, rel = certificate_path(cfg)
    try:
        cert = load_certificate(path, source=rel, now=now, allow_expired=True, regular=True, allow_not_yet_valid=True)
    except KsecretsError as exc:
        result.lines.append(f"{st}: FAIL: {cfg.source}: {exc}")
        result.problems += 1
        return
    days = (cert.not_after - now).total_seconds() / 86400
    expiry = f"{cert.not_after:%Y-%m-%d %H:%M} UTC"
    result.lines.append(f"{st}: certificate {rel} {cert.fingerprint} expires {expiry} ({int(days)} days)")
    warn_days = cfg.monitoring.certificate_expiry_warning_days
    if days < 0:
        result.lines.append(f"{st}: FAIL: certificate {rel} expired on {expiry}")
        result.problems += 1
    elif days <= warn_days:
        result.lines.append(f"{st}: warning: certificate {rel} expires within {warn_days} days ({expiry})")
        result.warnings += 1
    if not_yet_valid(cert, now):
        result.lines.append(f"{st}: FAIL: {rel}: {not_yet_valid_problem(cert)}")
        result.problems += 1
    stale = 0
    for i, entry in enumerate(cfg.sealed):
        where = f"{cfg.source}: {PREFIX}sealed[{i}] {entry.namespace}/{entry.name}"
        if entry.certificate_fingerprint != cert.fingerprint:
            stale += 1
            result.problems += 1
            result.lines.append(
                f"{st}: STALE: {where}: sealed for {entry.certificate_fingerprint or 'an unrecorded certificate'}, "
                f"not the current {cert.fingerprint}"
            )
            continue
        for key, value in entry.encrypted_data:
            problem = crypto.sealed_value_problem(value, cert.key_bytes)
            if problem:
                result.problems += 1
                result.lines.append(f"{st}: FAIL: {where}: encryptedData.{key}: {problem}")
    if not stale:
        result.lines.append(f"{st}: {len(cfg.sealed)} sealed Secret(s), all sealed for the current certificate")


def verify_stacks(
    root: str | os.PathLike[str] = ".", stack: str | list[str] | None = None, now: _dt.datetime | None = None
) -> VerifyResult:
    result = VerifyResult()
    stacks = [stack] if isinstance(stack, str) else stack
    paths = [stack_file_path(s, root) for s in stacks] if stacks else list(stack_files(root))
    if not paths:
        raise KsecretsError(f"{root}: no stack files (Pulumi.<stack>.yaml)")
    for path in paths:
        verify_stack(load_stack_file(path), result, now)
    return result

"""`ksecrets drift`: what differs between the clusters of a fleet, found without decrypting.

Per environment (its cluster stacks, config/environments.py): a key present in one cluster and
missing in another; a value that differs between clusters, found by comparing the fleet digests
the sealer stores beside each ciphertext (`fleetDigests`, sealing/churn.fleet_digest: keyed with
`KSECRETS_SEAL_KEY`, the same on every cluster for one value); rotation schedules that differ.
Across environments: a key one environment has and another lacks. Per cluster: a sealing
certificate that is missing, expired or expires within `monitoring.certificateExpiryWarningDays`.

Nothing here decrypts or needs a key: stored digests are compared as they are. A key sealed
without `KSECRETS_SEAL_KEY` has no digest: it is counted as not comparable, never as drift.
`ksecrets report` draws the same `Fleet` (usecases/report.py).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from ksecrets.config import load_stack
from ksecrets.config.model import StackConfig
from ksecrets.config.selection import Selector, fleet, select

# One secret key of a fleet: (namespace, Secret name, key).
Slot = tuple[str, str, str]


@dataclass
class Certificate:
    path: str
    fingerprint: str | None = None
    not_before: str | None = None  # ISO 8601, UTC
    not_after: str | None = None
    age_days: int | None = None
    days_left: int | None = None
    problem: str | None = None  # missing, unreadable, expired, expires soon


@dataclass
class Cluster:
    """What one stack says about its Secrets (names, digests, schedules): never a value."""

    stack: str
    environment: str
    backend: str
    keys: set[Slot] = field(default_factory=set)
    digests: dict[Slot, str] = field(default_factory=dict)  # fleet digests, where stored
    schedules: dict[Slot, str] = field(default_factory=dict)  # rotated keys → cron schedule
    certificate: Certificate | None = None


@dataclass(frozen=True)
class Finding:
    kind: str  # missing-key | value-differs | rotation-differs | certificate
    scope: str  # environment | across-environments | cluster
    where: str  # the environment ("production"), "staging/production" across, or the stack
    secret: str = ""  # namespace/name
    key: str = ""
    present: tuple[str, ...] = ()  # stacks (or environments) that have it
    missing: tuple[str, ...] = ()  # stacks (or environments) that lack it
    groups: tuple[tuple[str, ...], ...] = ()  # value-differs: stacks holding the same value
    detail: str = ""

    def line(self) -> str:
        at = f"{self.secret} {self.key}".strip()
        if self.kind == "missing-key":
            return f"{self.where}: {at}: in {', '.join(self.present)}, missing in {', '.join(self.missing)}"
        if self.kind == "value-differs":
            shown = " | ".join(", ".join(g) for g in self.groups)
            return f"{self.where}: {at}: values differ between clusters ({shown})"
        if self.kind == "rotation-differs":
            return f"{self.where}: {at}: rotation schedules differ ({self.detail})"
        return f"{self.where}: certificate: {self.detail}"


@dataclass
class Fleet:
    now: str
    clusters: dict[str, Cluster]
    findings: list[Finding]
    not_comparable: int = 0  # keys present in 2+ clusters of an environment without digests to compare

    @property
    def environments(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in self.clusters.values():
            out.setdefault(c.environment, []).append(c.stack)
        return {env: sorted(s) for env, s in sorted(out.items())}

    def slots(self) -> list[Slot]:
        return sorted(set().union(*(c.keys for c in self.clusters.values())) if self.clusters else set())

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "environments": self.environments,
            "clusters": {
                s: {
                    "environment": c.environment,
                    "backend": c.backend,
                    "keys": [f"{ns}/{n}/{k}" for ns, n, k in sorted(c.keys)],
                    "digestsStored": len(c.digests),
                    "rotation": {f"{ns}/{n}/{k}": v for (ns, n, k), v in sorted(c.schedules.items())},
                    "certificate": asdict(c.certificate) if c.certificate else None,
                }
                for s, c in sorted(self.clusters.items())
            },
            "findings": [
                {
                    k: (list(map(list, v)) if k == "groups" else list(v) if isinstance(v, tuple) else v)
                    for k, v in asdict(f).items()
                }
                for f in self.findings
            ],
            "notComparable": self.not_comparable,
            "drift": bool(self.findings),
        }


# --- reading the stacks ---------------------------------------------------------------------------


def cluster_of(cfg: StackConfig, environment: str, now: _dt.datetime) -> Cluster:
    c = Cluster(cfg.stack, environment, cfg.backend)
    for entry in cfg.sealed:
        fleet_digests = dict(entry.fleet_digests)
        for key in entry.keys:
            slot = (entry.namespace, entry.name, key)
            c.keys.add(slot)
            if fleet_digests.get(key):
                c.digests[slot] = fleet_digests[key]
    manual = dict(cfg.manual_keys)
    for app in cfg.apps:
        declared = list(app.keys) + list(manual.get(app.secret_name, ()))
        if not cfg.spec.seals:  # sealing stacks: what is sealed is what exists
            c.keys.update((app.namespace, app.secret_name, str(k)) for k in declared)
        for spec in app.rotation:
            c.schedules[(app.namespace, app.secret_name, str(spec.key))] = spec.schedule
    uses_sealing = cfg.spec.seals or cfg.sealed or cfg.sealed_secrets.certificate
    if uses_sealing:
        c.certificate = certificate_of(cfg, now)
    return c


def certificate_of(cfg: StackConfig, now: _dt.datetime) -> Certificate:
    from ksecrets.errors import KsecretsError
    from ksecrets.sealing.certs import load_certificate
    from ksecrets.usecases.seal_stack import certificate_path

    path, rel = certificate_path(cfg)
    cert = Certificate(rel)
    try:
        found = load_certificate(path, source=rel, now=now, allow_expired=True, regular=True, allow_not_yet_valid=True)
    except KsecretsError as exc:
        cert.problem = str(exc)
        return cert
    cert.fingerprint = found.fingerprint
    cert.not_after = found.not_after.isoformat()
    cert.days_left = int((found.not_after - now).total_seconds() // 86400)
    if found.not_before is not None:
        cert.not_before = found.not_before.isoformat()
        cert.age_days = int((now - found.not_before).total_seconds() // 86400)
    warn = cfg.monitoring.certificate_expiry_warning_days
    if cert.days_left < 0:
        cert.problem = f"{rel} expired on {found.not_after:%Y-%m-%d}"
    elif cert.days_left <= warn:
        cert.problem = f"{rel} expires on {found.not_after:%Y-%m-%d}, within {warn} days"
    return cert


def load_fleet(
    root: str | os.PathLike[str], selector: Selector = Selector(), now: _dt.datetime | None = None
) -> list[Cluster]:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    envs = fleet(root)
    chosen = select(root, selector) or list(envs)
    if not chosen:
        from ksecrets.errors import KsecretsError

        raise KsecretsError(f"{root}: no stack files (Pulumi.<stack>.yaml)")
    return [cluster_of(load_stack(s, root), envs[s], now) for s in chosen]


# --- comparing ----------------------------------------------------------------------------------------


def compare(clusters: Iterable[Cluster], now: _dt.datetime | None = None) -> Fleet:
    """Every finding between `clusters`, in a stable order (environment, secret, key)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    by_stack = {c.stack: c for c in clusters}
    result = Fleet(now.isoformat(), by_stack, [])
    envs = result.environments
    findings = result.findings
    for env, stacks in envs.items():
        members = [by_stack[s] for s in stacks]
        if len(members) < 2:
            continue
        slots = sorted(set().union(*(c.keys for c in members)))
        for slot in slots:
            ns, name, key = slot
            have = tuple(c.stack for c in members if slot in c.keys)
            lack = tuple(c.stack for c in members if slot not in c.keys)
            if lack:
                findings.append(Finding("missing-key", "environment", env, f"{ns}/{name}", key, have, lack))
            holders = [c for c in members if slot in c.keys]
            digests = {c.stack: c.digests[slot] for c in holders if slot in c.digests}
            if len(holders) >= 2 and len(digests) < len(holders):
                result.not_comparable += 1
            if len(set(digests.values())) > 1:
                groups: dict[str, list[str]] = {}
                for stack, d in sorted(digests.items()):
                    groups.setdefault(d, []).append(stack)
                ordered = tuple(sorted(tuple(g) for g in groups.values()))
                findings.append(
                    Finding(
                        "value-differs", "environment", env, f"{ns}/{name}", key, tuple(sorted(digests)), (), ordered
                    )
                )
        rotated = sorted(set().union(*(set(c.schedules) for c in members)))
        for slot in rotated:
            ns, name, key = slot
            seen = {
                c.stack: c.schedules.get(slot, "not rotated") for c in members if slot in c.keys or slot in c.schedules
            }
            if len(set(seen.values())) > 1:
                detail = "; ".join(f"{s}: {v}" for s, v in sorted(seen.items()))
                findings.append(
                    Finding(
                        "rotation-differs", "environment", env, f"{ns}/{name}", key, tuple(sorted(seen)), (), (), detail
                    )
                )
    if len(envs) >= 2:
        env_keys = {env: set().union(*(by_stack[s].keys for s in stacks)) for env, stacks in envs.items()}
        for slot in sorted(set().union(*env_keys.values())):
            ns, name, key = slot
            have = tuple(e for e in envs if slot in env_keys[e])
            lack = tuple(e for e in envs if slot not in env_keys[e])
            if lack:
                findings.append(
                    Finding("missing-key", "across-environments", "/".join(envs), f"{ns}/{name}", key, have, lack)
                )
    for stack, c in sorted(by_stack.items()):
        if c.certificate is not None and c.certificate.problem:
            findings.append(Finding("certificate", "cluster", stack, detail=c.certificate.problem))
    return result


def drift(root: str | os.PathLike[str], selector: Selector = Selector(), now: _dt.datetime | None = None) -> Fleet:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return compare(load_fleet(root, selector, now), now)

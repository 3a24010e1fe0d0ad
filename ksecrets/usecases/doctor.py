"""`doctor`: references across a stack (every Secret a workload reads is provided, key by key) and
the engine's config size, per stack."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ksecrets.config import stack_files
from ksecrets.config.names import PREFIX
from ksecrets.config.stackfile import stack_file_path
from ksecrets.errors import KsecretsError


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0
    warnings: int = 0

    def fail(self, text: str) -> None:
        self.problems += 1
        self.lines.append(f"FAIL: {text}")

    def warn(self, text: str) -> None:
        self.warnings += 1
        self.lines.append(f"warning: {text}")


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if obj["kind"] == "Deployment":
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _secret_refs(pod: Mapping[str, Any]) -> list[tuple[str, str | None, bool]]:
    """(Secret name, key or None, optional) a pod reads."""
    out: list[tuple[str, str | None, bool]] = []
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for src in c.get("envFrom") or []:
            if "secretRef" in src:
                out.append((src["secretRef"]["name"], None, bool(src["secretRef"].get("optional"))))
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                out.append((ref["name"], ref["key"], bool(ref.get("optional"))))
    for vol in pod.get("volumes") or []:
        if "secret" in vol:
            out.append((vol["secret"]["secretName"], None, bool(vol["secret"].get("optional"))))
    return out


def _provided(objects: Sequence[Mapping[str, Any]], cfg) -> dict[tuple[str, str], set[str] | None]:
    """(namespace, Secret name) → its keys (None: unknown) for every Secret some backend makes."""
    out: dict[tuple[str, str], set[str] | None] = {}
    for o in objects:
        ns = o["metadata"].get("namespace", "")
        if o["kind"] == "SealedSecret":
            name = ((o["spec"].get("template") or {}).get("metadata") or {}).get("name") or o["metadata"]["name"]
            out[(ns, name)] = set(o["spec"].get("encryptedData") or {})
        elif o["kind"] in ("VaultStaticSecret", "VaultDynamicSecret"):
            dest = o["spec"]["destination"]["name"]
            app = next((a for a in cfg.apps if a.namespace == ns and a.secret_name == dest), None)
            out[(ns, dest)] = set(app.keys) if (o["kind"] == "VaultStaticSecret" and app and app.keys) else None
        elif o["kind"] == "Secret":
            out[(ns, o["metadata"]["name"])] = set(o.get("data") or {}) | set(o.get("stringData") or {}) or None
    if cfg.spec.pulumi_values:
        for app in cfg.apps:
            keys = dict(cfg.manual_keys).get(app.secret_name)
            out.setdefault((app.namespace, app.secret_name), set(keys) if keys else None)
    return out


def doctor(cfg) -> Report:
    """Cross-references of one stack's objects: namespaces, service accounts, Secrets."""
    from ksecrets.usecases.stack_facts import plan_stack

    from ksecrets.usecases.export import render

    report = Report()
    try:
        render(cfg)  # whatever `ksecrets export` (make render) refuses, doctor fails on: the same code
    except KsecretsError as exc:
        report.fail(str(exc))
    planned = plan_stack(cfg)
    objects = [p.obj for p in planned]
    created_ns = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    external_ns = {"kube-system", cfg.flux.namespace, cfg.monitoring.namespace, cfg.sealed_secrets.controller_namespace}
    sas = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    provided = _provided(objects, cfg)
    # Secrets the README asks you to create outside the stack (cert-manager can issue them).
    external = {cfg.vault.tls.ca_secret_name} if cfg.vault is not None and cfg.vault.tls.enabled else set()
    src = cfg.source
    seen: set[tuple[str, str, str]] = set()
    for o in objects:
        ns = o["metadata"].get("namespace")
        what = f"{o['kind']} {ns}/{o['metadata']['name']}" if ns else f"{o['kind']} {o['metadata']['name']}"
        if ns and ns not in created_ns and ns not in external_ns:
            report.fail(
                f"{src}: {what}: namespace {ns} is not created by this stack (add it to k8s-secrets:namespaces)"
            )
        pod = _pod_spec(o)
        if pod is not None:
            sa = pod.get("serviceAccountName")
            if sa and (ns, sa) not in sas:
                report.fail(f"{src}: {what}: ServiceAccount {ns}/{sa} is not created by this stack")
            for secret, key, optional in _secret_refs(pod):
                keys = provided.get((ns, secret), ())
                if (what, secret, key or "") in seen:
                    continue
                seen.add((what, secret, key or ""))
                if keys == () and secret in external:
                    if (what, secret, "") not in seen or key is None:
                        report.warn(
                            f"{src}: {what} reads Secret {ns}/{secret}, which you create outside the stack "
                            "(vault.tls.caSecretName, key ca.crt); make sure it exists there"
                        )
                elif keys == ():
                    if (what, secret, "*") in seen:
                        continue
                    seen.add((what, secret, "*"))
                    if not optional:
                        hint = cfg.spec.values_hint(cfg.stack, secret)
                        report.fail(f"{src}: {what} reads Secret {ns}/{secret}, which no backend provides ({hint})")
                elif key is not None and keys is not None and key not in keys and not optional:
                    report.fail(
                        f"{src}: {what} reads key {key} of Secret {ns}/{secret}, which has no such key "
                        f"(keys: {', '.join(sorted(keys)) or 'none'})"
                    )
        if o["kind"] == "RoleBinding":
            for s in o.get("subjects") or []:
                if (
                    s.get("kind") == "ServiceAccount"
                    and (s.get("namespace"), s["name"]) not in sas
                    and s.get("namespace") not in external_ns
                ):
                    report.fail(
                        f"{src}: {what}: subject ServiceAccount {s.get('namespace')}/{s['name']} "
                        "is not created by this stack"
                    )
        if o["kind"] == "VaultAuth":
            sa = o["spec"]["kubernetes"]["serviceAccount"]
            if (ns, sa) not in sas:
                report.fail(f"{src}: {what}: ServiceAccount {ns}/{sa} is not created by this stack")
    used = {(a.namespace, a.secret_name) for a in cfg.apps}
    for i, e in enumerate(cfg.sealed):
        if (e.namespace, e.name) not in used:
            report.warn(f"{src}: {PREFIX}sealed[{i}] {e.namespace}/{e.name}: no app uses this Secret")
    if not report.problems:
        refs = sum(len(_secret_refs(p)) for p in filter(None, (_pod_spec(o) for o in objects)))
        report.lines.append(
            f"{cfg.stack}: ok: {len(objects)} objects, {refs} Secret reference(s)"
            + (f", {report.warnings} warning(s)" if report.warnings else ", every one provided")
        )
    return report


def doctor_stacks(root: str | os.PathLike[str], stack: str | None) -> Report:
    from ksecrets.config import load_stack_file

    paths = [stack_file_path(stack, root)] if stack else list(stack_files(root))
    if not paths:
        raise KsecretsError(f"{root}: no stack files (Pulumi.<stack>.yaml)")
    total = Report()
    for p in paths:
        r = doctor(load_stack_file(p))
        _engine_size(p, r)
        total.lines += r.lines
        total.problems += r.problems
        total.warnings += r.warnings
    return total


def _engine_size(path: Path, report: Report) -> None:
    """`pulumi preview`/`up` cannot start a program whose config is over the kernel's limit."""
    from ksecrets.config.includes import size_problem

    problem = size_problem(path)
    if problem:
        report.fail(problem)

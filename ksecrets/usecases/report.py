"""`ksecrets report`: the fleet on one self-contained HTML page, and the same data as JSON.

The page: clusters × secret keys as a matrix (drift highlighted: a key missing in a cluster, a
value that differs from the rest of its environment), certificate expiry and key age per cluster,
rotation schedules, and which workloads read each Secret (envFrom, secretKeyRef, volumes: read
from the objects the builders make, `ksecrets.manifests.build_stack`). The findings are drift's
(usecases/drift.py). No value, no digest, no network, no script: inline CSS only.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ksecrets.config import load_stack
from ksecrets.config.selection import Selector, fleet, select
from ksecrets.usecases.drift import Fleet, Slot, cluster_of, compare

_POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec")


def secret_readers(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(namespace, Secret name) → the workloads that read it, as `Kind/name (how)`, sorted."""
    out: dict[tuple[str, str], set[str]] = {}
    for obj in objects:
        if obj.get("kind") not in _POD_KINDS:
            continue
        meta = obj.get("metadata") or {}
        ns, who = meta.get("namespace", ""), f"{obj['kind']}/{meta.get('name', '')}"
        pod = _pod_spec(obj) or {}
        for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            for src in c.get("envFrom") or []:
                name = (src.get("secretRef") or {}).get("name")
                if name:
                    out.setdefault((ns, name), set()).add(f"{who} (envFrom)")
            for var in c.get("env") or []:
                ref = ((var.get("valueFrom") or {}).get("secretKeyRef")) or {}
                if ref.get("name"):
                    out.setdefault((ns, ref["name"]), set()).add(f"{who} (secretKeyRef {ref.get('key', '')})")
        for vol in pod.get("volumes") or []:
            name = (vol.get("secret") or {}).get("secretName")
            if name:
                out.setdefault((ns, name), set()).add(f"{who} (volume)")
    return {k: sorted(v) for k, v in sorted(out.items())}


@dataclass
class Report:
    fleet: Fleet
    readers: dict[str, dict[str, list[str]]]  # stack → "ns/name" → workloads

    def cells(self) -> dict[str, dict[str, str]]:
        """ "ns/name/key" → stack → state: ok, missing, differs, absent (not in this environment)."""
        state: dict[str, dict[str, str]] = {}
        f = self.fleet
        env_slots: dict[str, set[Slot]] = {}
        for c in f.clusters.values():
            env_slots.setdefault(c.environment, set()).update(c.keys)
        differs = {
            (fd.secret, fd.key, s) for fd in f.findings if fd.kind == "value-differs" for s in _minority(fd.groups)
        }
        for slot in f.slots():
            ns, name, key = slot
            row = state[f"{ns}/{name}/{key}"] = {}
            for stack, c in sorted(f.clusters.items()):
                if slot in c.keys:
                    row[stack] = "differs" if (f"{ns}/{name}", key, stack) in differs else "ok"
                elif slot in env_slots[c.environment]:
                    row[stack] = "missing"
                else:
                    row[stack] = "absent"  # the whole environment lacks it (drift across environments)
        return state

    def to_json(self) -> dict[str, Any]:
        doc = self.fleet.to_json()
        doc["matrix"] = self.cells()
        doc["readers"] = self.readers
        return doc


def _minority(groups: tuple[tuple[str, ...], ...]) -> set[str]:
    """The clusters whose value is not the one most clusters hold; all of them on a tie."""
    sizes = sorted((len(g) for g in groups), reverse=True)
    if len(sizes) < 2:
        return set()
    if sizes[0] == sizes[1]:
        return {s for g in groups for s in g}
    return {s for g in groups if len(g) != sizes[0] for s in g}


def build_report(
    root: str | os.PathLike[str], selector: Selector = Selector(), now: _dt.datetime | None = None
) -> Report:
    from ksecrets.usecases.stack_facts import plan_stack

    now = now or _dt.datetime.now(_dt.timezone.utc)
    envs = fleet(root)
    chosen = select(root, selector) or list(envs)
    clusters, readers = [], {}
    for stack in chosen:
        cfg = load_stack(stack, root)
        clusters.append(cluster_of(cfg, envs[stack], now))
        found = secret_readers(p.obj for p in plan_stack(cfg))
        readers[stack] = {f"{ns}/{name}": who for (ns, name), who in found.items()}
    return Report(compare(clusters, now), readers)


# --- the page ---------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;margin:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
th.env{text-align:center;background:#eaeef2}
td.cell{text-align:center;font-weight:600;min-width:72px}
.ok{background:#dafbe1;color:#116329}
.missing{background:#ffebe9;color:#a40e26}
.differs{background:#fff1c2;color:#7d4e00}
.absent{background:#f6f8fa;color:#8c959f}
.bad{color:#a40e26;font-weight:600}
.summary span{display:inline-block;margin-right:16px;padding:2px 8px;border-radius:4px}
code{font:12px ui-monospace,monospace}
ul{margin:4px 0;padding-left:20px}
"""

_LABEL = {"ok": "present", "missing": "MISSING", "differs": "DIFFERS", "absent": "—"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(report: Report) -> str:
    f = report.fleet
    envs = f.environments
    order = [s for ss in envs.values() for s in ss]
    cells = report.cells()
    counts: dict[str, int] = {}
    for fd in f.findings:
        counts[fd.kind] = counts.get(fd.kind, 0) + 1
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may load from outside the page: no script at all, inline styles only.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>ksecrets fleet report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Fleet report</h1>",
        f'<p class="sub">{len(f.clusters)} cluster(s) in {len(envs)} environment(s), generated {_e(f.now[:16])} UTC '
        "by <code>ksecrets report</code>. Names, dates and counts only: no value, no digest.</p>",
        '<p class="summary" id="summary">'
        + (
            "".join(f'<span class="missing">{_e(k)}: {n}</span>' for k, n in sorted(counts.items()))
            or '<span class="ok">no drift</span>'
        )
        + "</p>",
        "<h2>Secrets × clusters</h2>",
        '<table id="matrix"><thead><tr><th rowspan="2">Secret</th><th rowspan="2">Key</th>',
    ]
    out += [f'<th class="env" colspan="{len(ss)}">{_e(env)}</th>' for env, ss in envs.items()]
    out.append("</tr><tr>")
    out += [f'<th data-stack="{_e(s)}">{_e(s)}</th>' for s in order]
    out.append("</tr></thead><tbody>")
    for slot, row in cells.items():
        ns, name, key = slot.split("/", 2)
        out.append(f'<tr data-slot="{_e(slot)}"><td>{_e(ns)}/{_e(name)}</td><td><code>{_e(key)}</code></td>')
        for s in order:
            st = row[s]
            out.append(f'<td class="cell {st}" data-stack="{_e(s)}" data-state="{st}">{_LABEL[st]}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(
        '<p class="sub">MISSING: the other clusters of its environment have it; DIFFERS: its value differs '
        "from the rest of its environment (stored fleet digests); —: its environment has no such key.</p>"
    )

    out.append(
        '<h2>Certificates</h2><table id="certificates"><thead><tr><th>Cluster</th><th>Fingerprint</th>'
        "<th>Not after</th><th>Days left</th><th>Key age (days)</th><th>Problem</th></tr></thead><tbody>"
    )
    for s in order:
        c = f.clusters[s].certificate
        if c is None:
            out.append(
                f'<tr data-stack="{_e(s)}"><td>{_e(s)}</td><td colspan="5">no sealing ({_e(f.clusters[s].backend)})</td></tr>'
            )
            continue
        out.append(
            f'<tr data-stack="{_e(s)}"><td>{_e(s)}</td><td><code>{_e(c.fingerprint or "")}</code></td>'
            f"<td>{_e((c.not_after or '')[:10])}</td><td>{_e('' if c.days_left is None else c.days_left)}</td>"
            f"<td>{_e('' if c.age_days is None else c.age_days)}</td>"
            f'<td class="{"bad" if c.problem else ""}">{_e(c.problem or "")}</td></tr>'
        )
    out.append("</tbody></table>")

    rotated = sorted({slot for c in f.clusters.values() for slot in c.schedules})
    out.append('<h2>Rotation schedules</h2><table id="rotation"><thead><tr><th>Secret key</th>')
    out += [f"<th>{_e(s)}</th>" for s in order]
    out.append("</tr></thead><tbody>")
    differ = {(fd.secret, fd.key) for fd in f.findings if fd.kind == "rotation-differs"}
    for ns, name, key in rotated:
        cls = ' class="differs"' if (f"{ns}/{name}", key) in differ else ""
        out.append(f"<tr{cls}><td>{_e(ns)}/{_e(name)} <code>{_e(key)}</code></td>")
        out += [f"<td><code>{_e(f.clusters[s].schedules.get((ns, name, key), '—'))}</code></td>" for s in order]
        out.append("</tr>")
    out.append("</tbody></table>")

    out.append(
        '<h2>Who reads each Secret</h2><table id="readers"><thead><tr><th>Secret</th><th>Cluster</th>'
        "<th>Workloads</th></tr></thead><tbody>"
    )
    for s in order:
        for secret, who in report.readers.get(s, {}).items():
            items = "".join(f"<li>{_e(w)}</li>" for w in who)
            out.append(f"<tr><td>{_e(secret)}</td><td>{_e(s)}</td><td><ul>{items}</ul></td></tr>")
    out.append("</tbody></table>")

    out.append('<h2>Findings</h2><ul id="findings">')
    out += [f'<li class="{_e(fd.kind)}">{_e(fd.line())}</li>' for fd in f.findings] or ["<li>none</li>"]
    out.append("</ul></body></html>")
    return "\n".join(out) + "\n"

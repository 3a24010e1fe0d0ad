"""`pulumi preview` and `pulumi up` of one stack of 10, 100 and 1000 apps against a local API server,
with and without PULUMI_SKIP_CHECKPOINTS, beside `kubectl apply --server-side` of the same objects,
in the same run; CPU seconds per process from /proc.

The stack keeps `k8s-secrets:sealed` and `k8s-secrets:apps` in files beside the stack file
(README "Large stacks"): inline, the config the engine passes in PULUMI_CONFIG is over Linux's
128 KiB for one environment variable from about 50 apps on, and `pulumi` cannot start the program.

Everything real: the Pulumi CLI, Python host and Kubernetes provider of tools/ (`make e2e-tools`),
the file backend with the passphrase provider, etcd + kube-apiserver + kube-controller-manager of
the end-to-end harness on 127.0.0.1. The stack is the export benchmark's (sealed-secrets; per app
a namespace, ServiceAccount, Role, RoleBinding, Deployment, SealedSecret). helm-controller is
simulated as in the tests: the one HelmRelease is marked Ready through the status subresource
while `pulumi up` waits for it.

Per size and setting, a fresh cluster and state: `preview` (all creates), `up` (create), a
no-change `preview`, then a `preview` and an `up` that change every app's secret (its
encryptedData). kubectl gets a fresh cluster per size: one `apply --server-side` of the objects
Pulumi registers (what `ksecrets export` writes less the Flux applier's RBAC; create), then one of
the changed SealedSecrets (update). Per run: wall seconds
and CPU seconds of the CLI, the Python program, the language host, the provider, kubectl, and
kube-apiserver + etcd (the server's share; read before and after from /proc). The plugins' CPU is
sampled from /proc every 0.2 s while they run (a plugin's last 0.2 s may be missed); the CLI's is
exact (wait4 of the CLI, less its children's).

Setting `flux` is the same stack with `k8s-secrets:delivery: flux` (README "Delivery: Pulumi or
Flux"), with checkpoints as `up` runs: Pulumi registers the platform and the stack's two Flux
Kustomizations, and its preview compares the committed export (`ksecrets export`, run untimed
before each preview as a user commits it); the apps layer is Flux's, timed by bench/flux.py. Its
ms/obj column divides by the same stack's objects as the other rows, so the rows compare what it
costs to deliver one stack.

Setting `ksecrets` is skip's, with each `up` run as `ksecrets up --no-checkpoints` (the opt-in with
a run marker and its recovery, components/recovery.py; a clean run recovers nothing).

Setting `recover` times that recovery: `ksecrets up --no-checkpoints` SIGKILLed (the whole tree, by
PID) once half the apps' SealedSecrets are on the server, the stack's lock removed as a user does
(`pulumi cancel`, or the lock file its message names), then the same command again, which finds
the run marker, lists the cluster, adopts the orphans, imports, refreshes and runs `up`; then a
`preview --expect-no-changes` that fails unless it converged. The same for an `up` of every app's
secret killed when half of the SealedSecrets carry the new ciphertext. A killed run's CPU is what
was sampled before the kill (the tree is never reaped by its parents).

    .venv/bin/python bench/pulumi.py [--sizes 10,100,1000] [--settings skip,checkpoints,flux,ksecrets,recover]
                                     [--no-checkpoints-above 200] [--without-shim]

`--without-shim` runs the program without components/sdk_drain.py (the SDK's quadratic drain).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.export import stack_doc  # noqa: E402
from ksecrets import yamlio  # noqa: E402
from ksecrets.config import load_stack_file  # noqa: E402
from ksecrets.config.includes import ENGINE_CONFIG_LIMIT, engine_config_size, project_defaults  # noqa: E402
from ksecrets.usecases.export import render  # noqa: E402
from ksecrets.manifests.plan import object_id  # noqa: E402
from ksecrets.usecases.stack_facts import plan_stack  # noqa: E402
from tests.e2e.harness import binaries, missing_binaries  # noqa: E402
from tests.e2e.harness import procs  # noqa: E402
from tests.e2e.harness.gitops import bootstrap_flux, install_chart_crds  # noqa: E402
from tests.e2e.harness.kube import Cluster  # noqa: E402
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NEEDED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-kubernetes",
)
INCLUDED = ("sealed", "apps")
CRDS = sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml"))
TICK = os.sysconf("SC_CLK_TCK")
SETTINGS = {
    "skip": {"PULUMI_SKIP_CHECKPOINTS": "true"},
    "checkpoints": {"PULUMI_SKIP_CHECKPOINTS": "false"},
    # `delivery: flux` as a user runs it: `up` with checkpoints; Pulumi registers the platform and
    # the stack's Flux Kustomizations, Flux applies the apps layer from Git (bench/flux.py times that).
    "flux": {"PULUMI_SKIP_CHECKPOINTS": "false"},
    # The opt-in `ksecrets up --no-checkpoints` (components/recovery.py): its `up` rows are that
    # command (run marker, the Automation API, checkpoints skipped); its previews are skip's.
    "ksecrets": {"PULUMI_SKIP_CHECKPOINTS": "true"},
    # `ksecrets up --no-checkpoints` killed at half its work, then run again: what its recovery costs.
    "recover": {"PULUMI_SKIP_CHECKPOINTS": "true"},
}
SEALED = "/apis/bitnami.com/v1alpha1/sealedsecrets"
KSECRETS = ROOT / ".venv" / "bin" / "ksecrets"
COLUMNS = ("cli", "python", "host", "provider", "kubectl", "ksecrets", "server")


def _stat(pid: int) -> tuple[str, float, float] | None:
    """(comm, own CPU s, waited-for children's CPU s) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()
    return comm, (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def _role(pid: int, comm: str) -> str:
    if comm == "pulumi":  # the CLI below `ksecrets up` (a plain run's CLI is the one waited for)
        return "cli"
    if comm.startswith("pulumi-resource"):
        return "provider"
    if comm.startswith("pulumi-language"):
        return "host"
    if comm.startswith("python"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return "other"
        return "python" if b"pulumi-language-python-exec" in cmdline else "other"
    if comm == "sh":  # the harness's host wrapper execs the host; nothing else runs under sh
        return "host"
    return "other"


class Sampler:
    """CPU seconds per role of every process below `pid`, sampled while they run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, tuple[str, float]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for p in procs.descendants(self.pid):
                    st = _stat(p)
                    if st is not None:
                        role = _role(p, st[0])
                        self.seen[p] = (role, max(st[1], self.seen.get(p, (role, 0.0))[1]))
            except Exception as exc:  # a process gone mid-read must not end the sampling (1000-app rows lost python)
                self.errors.append(type(exc).__name__)
            self._stop.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        out: dict[str, float] = {}
        for role, cpu in self.seen.values():
            out[role] = out.get(role, 0.0) + cpu
        return out


def _server_cpu(cluster: Cluster) -> float:
    total = 0.0
    for proc in (cluster.apiserver, cluster.etcd):
        st = _stat(proc.pid) if proc is not None else None
        total += st[1] if st else 0.0
    return total


@dataclass
class Run:
    what: str
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    note: str = ""

    def cell(self, key: str) -> str:
        return f"{self.cpu[key]:.1f}" if key in self.cpu else "-"


def _ksecrets_up(project: PulumiProject, env: dict, out) -> subprocess.Popen:
    """`ksecrets up --no-checkpoints` of the project's stack, as a user runs it."""
    return subprocess.Popen(
        [str(KSECRETS), "up", "--stack", project.stack, "--no-checkpoints", "--parallel", "1"]
        + ["--root", str(project.project)],
        cwd=project.project,
        env=project.env(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def pulumi_run(
    project: PulumiProject, cluster: Cluster, args: tuple[str, ...], env: dict, timeout: float, via_ksecrets=False
) -> Run:
    """One run, timed. `via_ksecrets`: the `up` is `ksecrets up --no-checkpoints` (the Automation
    API's Python and the kubectl it runs count as `ksecrets`; the CLI is sampled)."""
    server0 = _server_cpu(cluster)
    log = project.workdir / "pulumi.log"
    with open(log, "a") as out:
        out.write(f"\n=== {'ksecrets up --no-checkpoints' if via_ksecrets else 'pulumi ' + ' '.join(args)} {env}\n")
        out.flush()
        started = time.monotonic()
        proc = _ksecrets_up(project, env, out) if via_ksecrets else project.start(*args, env=env, stdout=out)
        sampler = Sampler(proc.pid)
        code, tree = None, 0.0
        try:
            _, status, usage = _wait4(proc, timeout)
            code, tree = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        except TimeoutError:
            procs.kill_tree(proc.pid)
            os.waitpid(proc.pid, 0)
        finally:
            proc.returncode = code if code is not None else -9  # reaped here, not by Popen
        seconds = time.monotonic() - started
    cpu = sampler.stop()
    # The CLI reaps its plugins and the host reaps the program: wait4 of the CLI is the whole tree.
    # (Under `ksecrets up` the CLI is sampled too; the rest is ksecrets' own Python and its kubectl.)
    rest = max(tree - sum(cpu.values()), 0.0) if code is not None else 0.0
    if via_ksecrets:  # ksecrets' own Python, and what it runs besides the engine (kubectl)
        cpu["ksecrets"] = cpu.pop("other", 0.0) + rest
    else:
        cpu["cli"] = rest
    cpu["server"] = _server_cpu(cluster) - server0
    ok = code == 0
    tail = "" if ok else log.read_text()[-1500:]
    return Run(" ".join(args), seconds, cpu, ok, tail)


def killed_run(project: PulumiProject, cluster: Cluster, env: dict, reached, share: float, timeout: float) -> Run:
    """`ksecrets up --no-checkpoints` SIGKILLed (every process of its tree, by PID) once `reached()`
    (done, total) passes `share`. Its CPU is the sampler's: a killed tree is never reaped."""
    log = project.workdir / "pulumi.log"
    with open(log, "a") as out:
        out.write(f"\n=== ksecrets up --no-checkpoints, killed at {share:.0%} {env}\n")
        out.flush()
        started = time.monotonic()
        proc = _ksecrets_up(project, env, out)
        sampler = Sampler(proc.pid)
        note, ok = "", False
        try:
            while True:
                done, total = reached()
                if proc.poll() is not None:
                    note = f"finished before its kill point ({done} of {total})"
                    break
                if done >= max(1, round(share * total)):
                    root = _stat(proc.pid)  # ksecrets' own Python: the sampler sees only below it
                    cpu_now = sampler.stop()
                    cpu_now["ksecrets"] = cpu_now.pop("other", 0.0) + (root[1] + root[2] if root else 0.0)
                    procs.kill_tree(proc.pid)
                    proc.wait(30)
                    note, ok = f"killed at {done} of {total}", True
                    break
                if time.monotonic() - started > timeout:
                    note = f"did not reach {share:.0%} in {timeout:.0f} s"
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
                proc.wait(30)
        seconds = time.monotonic() - started
    cpu = cpu_now if ok else sampler.stop()
    return Run("up killed", seconds, cpu, ok, note)


def unlock(project: PulumiProject, env: dict) -> str:
    """What a user does after a killed run (README "Pulumi at a thousand apps"): `pulumi cancel`,
    or, where this engine refuses it on the file backend, the lock file it names removed."""
    if project.run("cancel", "--yes", env=env, check=False, timeout=600).ok:
        return "cancel"
    locks = sorted((project.state / ".pulumi" / "locks").rglob("*.json"))
    for lock in locks:
        lock.unlink()
    return "lock file removed" if locks else "not locked"


def sealed_count(c: Cluster) -> int:
    page = c.get(f"{SEALED}?limit=1") or {}
    return len(page.get("items") or []) + int((page.get("metadata") or {}).get("remainingItemCount") or 0)


def sealed_with(c: Cluster, wanted: dict[tuple[str, str], dict]) -> int:
    """How many SealedSecrets on the server carry the encryptedData of `wanted`."""
    items = (c.get(SEALED) or {}).get("items") or []
    return sum(
        1
        for o in items
        if wanted.get((o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        == o.get("spec", {}).get("encryptedData")
    )


def _wait4(proc, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return pid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"pulumi did not finish in {timeout:.0f} s")
        time.sleep(0.1)


def kubectl_run(cluster: Cluster, what: str, objects: list[dict]) -> Run:
    import resource

    server0 = _server_cpu(cluster)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=bench",
        "--force-conflicts",
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
        timeout=3600,
    )
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {
        "kubectl": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "server": _server_cpu(cluster) - server0,
    }
    return Run(what, seconds, cpu)


def cluster(work: Path, name: str) -> Cluster:
    c = Cluster(work / name, binaries())
    c.start()
    install_chart_crds(c, CRDS)
    bootstrap_flux(c)
    return c


def split(doc: dict, root: Path, stack: str) -> dict[str, str]:
    """Move the big keys into stacks/<stack>/<key>.yaml under `root`; returns file → text."""
    files = {}
    for key in INCLUDED:
        rel = f"stacks/{stack}/{key}.yaml"
        files[rel] = yamlio.dump(doc["config"][f"k8s-secrets:{key}"])
        doc["config"][f"k8s-secrets:{key}"] = rel
    return files


def changed_secrets(doc: dict) -> dict:
    """Every app's secret changed: another fake ciphertext of the same size and kubeseal's layout
    (the 2-byte session-key length kept, the bytes after it reversed; the model refuses anything
    that is not strict base64 of that layout)."""
    out = copy.deepcopy(doc)
    for entry in out["config"]["k8s-secrets:sealed"]:
        entry["encryptedData"] = {k: _other_ciphertext(v) for k, v in entry["encryptedData"].items()}
    return out


def _other_ciphertext(value: str) -> str:
    raw = base64.b64decode(value, validate=True)
    return base64.b64encode(raw[:2] + raw[2:][::-1]).decode()


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.2f} MiB"


def export(root: Path) -> None:
    """`ksecrets export` of the bench stack into root's k8s/ and clusters/ (not timed): a
    flux-delivered stack's preview compares the committed export."""
    done = subprocess.run(
        [str(KSECRETS), "export", "--stack", "bench", "--root", str(root)], capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"ksecrets export failed: {done.stderr.strip()}")


def objects_of(work: Path, doc: dict) -> list[dict]:
    (work / "export").mkdir(exist_ok=True)
    path = work / "export" / "Pulumi.bench.yaml"
    path.write_text(yamlio.dump(doc))
    cfg = load_stack_file(path)
    # The objects Pulumi registers: both layers less the Flux applier's own RBAC (Flux only).
    flux_only = {object_id(p.obj) for p in plan_stack(cfg) if not p.pulumi}
    rendered = render(cfg).objects
    return [o for layer in ("infrastructure", "apps") for o in rendered[layer] if object_id(o) not in flux_only]


def without_shim(project: PulumiProject) -> None:
    main = project.project / "__main__.py"
    text = main.read_text()
    main.write_text(re.sub(r"^let_the_sdk_see_every_registration\(\)$", "pass", text, flags=re.M))


def print_row(apps: int, objects: int, setting: str, run: Run) -> None:
    per = run.seconds / objects * 1000
    cpu = sum(run.cpu.get(k, 0.0) for k in COLUMNS if k != "server")
    cells = " ".join(f"{run.cell(k):>8}" for k in COLUMNS)
    flag = "" if run.ok else "  FAILED"
    print(
        f"{apps:>5} {objects:>7} {setting:>11} {run.what:<22} {run.seconds:>8.1f} {per:>7.1f} {cpu / objects * 1000:>9.1f} "
        f"{cells}{flag}",
        flush=True,
    )
    if not run.ok:
        print(run.note, file=sys.stderr, flush=True)


def recover_rows(
    project: PulumiProject,
    pc: Cluster,
    env: dict,
    apps: int,
    objects: int,
    files_after: dict[str, str],
    changed: list[dict],
    rows: list,
    timeout: float,
) -> None:
    """Setting `recover`: a create and an update of every secret, each killed at half its work and
    recovered by running `ksecrets up --no-checkpoints` again; a no-change preview after each."""
    wanted = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["spec"]["encryptedData"] for o in changed}
    phases = [
        (" (create)", lambda: (sealed_count(pc), apps)),
        (" (secrets)", lambda: (sealed_with(pc, wanted), apps)),
    ]
    for suffix, reached in phases:
        if suffix == " (secrets)":
            for rel, body in files_after.items():
                (project.project / rel).write_text(body)
        with HelmReleaseReady(pc):
            run = killed_run(project, pc, env, reached, 0.5, timeout)
        run.what += suffix
        rows.append(("recover", run))
        print_row(apps, objects, "recover", run)
        print(f"#   {run.note}; then: {unlock(project, env)}", flush=True)
        with HelmReleaseReady(pc):
            run = pulumi_run(project, pc, ("up",), env, timeout, via_ksecrets=True)
        run.what = "up again" + suffix
        rows.append(("recover", run))
        print_row(apps, objects, "recover", run)
        this_run = (project.workdir / "pulumi.log").read_text().rsplit("\n=== ", 1)[-1]
        found = [ln.split("recovery: ", 1)[1].strip() for ln in this_run.splitlines() if "recovery: " in ln]
        print(f"#   {'; '.join(found[-4:]) or 'no recovery line'}", flush=True)
        if not run.ok:
            return
        run = pulumi_run(project, pc, ("preview", "--expect-no-changes"), env, timeout)
        run.what = "preview (no change)"
        rows.append(("recover", run))
        print_row(apps, objects, "recover", run)
        if not run.ok:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument(
        "--settings",
        default="skip,checkpoints,flux",
        help="comma-separated: skip, checkpoints, flux (delivery: flux), ksecrets (up --no-checkpoints), "
        "recover (up --no-checkpoints killed at half, then its recovery)",
    )
    parser.add_argument(
        "--no-checkpoints-above",
        type=int,
        default=200,
        help="run 'checkpoints' only up to this many apps (at 1000 its up did not finish in 27 min)",
    )
    parser.add_argument("--without-shim", action="store_true", help="the program without components/sdk_drain.py")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, help="also write every run as JSON lines here")
    args = parser.parse_args()
    missing = missing_binaries(NEEDED)
    if missing:
        print(f"bench/pulumi.py: not built: {', '.join(missing)}; run `make e2e-tools`", file=sys.stderr)
        return 2
    header = " ".join(f"{k:>8}" for k in COLUMNS)
    print(
        f"{'apps':>5} {'objects':>7} {'setting':>11} {'run':<22} {'wall s':>8} {'ms/obj':>7} {'cpu ms/obj':>9} {header}"
    )
    print(f"{'':>5} {'':>7} {'':>11} {'':<22} {'':>8} {'':>7} {'(client)':>9} {'(CPU seconds per process)':>53}")
    log = open(args.json, "a") if args.json else None
    with tempfile.TemporaryDirectory(prefix="k8s-secrets-bench-pulumi-") as tmp:
        try:
            for apps in (int(s) for s in args.sizes.split(",")):
                work = Path(tmp) / str(apps)
                work.mkdir()
                inline = stack_doc(apps)
                inline["config"]["kubernetes:context"] = "e2e"
                updated = changed_secrets(inline)
                objects = objects_of(work, inline)
                changed = [o for o in objects_of(work, updated) if o["kind"] == "SealedSecret"]
                doc = copy.deepcopy(inline)
                files = split(doc, work, "bench")
                after = copy.deepcopy(updated)
                files_after = split(after, work, "bench")
                print(
                    f"# {apps} apps, {len(objects)} objects: PULUMI_CONFIG inline "
                    f"{kib(engine_config_size(inline['config'], project_defaults(ROOT)))}, with sealed and apps in "
                    f"files {kib(engine_config_size(doc['config'], project_defaults(ROOT)))} (limit {kib(ENGINE_CONFIG_LIMIT)})",
                    flush=True,
                )
                rows: list[tuple[str, Run]] = []
                kc = cluster(work, "kubectl")
                rows.append(("kubectl", kubectl_run(kc, "apply --server-side", objects)))
                print_row(apps, len(objects), "kubectl", rows[-1][1])
                rows.append(("kubectl", kubectl_run(kc, "apply (every secret)", changed)))
                print_row(apps, len(objects), "kubectl", rows[-1][1])
                kc.stop()
                for setting in args.settings.split(","):
                    if setting == "checkpoints" and apps > args.no_checkpoints_above:  # flux: always
                        print(
                            f"# {apps} apps, checkpoints: not run (--no-checkpoints-above {args.no_checkpoints_above})"
                        )
                        continue
                    env = SETTINGS[setting]
                    pc = cluster(work, f"pulumi-{setting}")
                    stack_doc_ = copy.deepcopy(doc)
                    if setting == "flux":
                        stack_doc_["config"]["k8s-secrets:delivery"] = "flux"
                    project = PulumiProject(
                        work / f"project-{setting}",
                        binaries(),
                        "bench",
                        kubeconfig=pc.kubeconfig,
                        stack_file=yamlio.dump(stack_doc_),
                        context=None,
                    )
                    if args.without_shim:
                        without_shim(project)
                    for rel, body in files.items():
                        (project.project / rel).parent.mkdir(parents=True, exist_ok=True)
                        (project.project / rel).write_text(body)
                    project.init()
                    if setting == "recover":
                        recover_rows(project, pc, env, apps, len(objects), files_after, changed, rows, args.timeout)
                        pc.stop()
                        continue
                    steps = [
                        ("preview", ("preview",)),
                        ("up", ("up", "--yes", "--skip-preview")),
                        ("preview (no change)", ("preview", "--expect-no-changes")),
                        ("preview (every secret)", ("preview",)),
                        ("up (every secret)", ("up", "--yes", "--skip-preview")),
                    ]
                    for label, argv in steps:
                        if label == "preview (every secret)":
                            for rel, body in files_after.items():
                                (project.project / rel).write_text(body)
                        if setting == "flux" and label in ("preview", "preview (every secret)"):
                            export(project.project)  # what the user commits with the change
                        with HelmReleaseReady(pc):
                            via = setting == "ksecrets" and argv[0] == "up"
                            run = pulumi_run(project, pc, argv, env, args.timeout, via_ksecrets=via)
                        run.what = label
                        rows.append((setting, run))
                        print_row(apps, len(objects), setting, run)
                        if not run.ok:
                            break
                    pc.stop()
                if log:
                    for setting, run in rows:
                        log.write(
                            json.dumps(
                                {
                                    "apps": apps,
                                    "objects": len(objects),
                                    "setting": setting,
                                    "run": run.what,
                                    "seconds": round(run.seconds, 2),
                                    "cpu": {k: round(v, 2) for k, v in run.cpu.items()},
                                    "ok": run.ok,
                                    "shim": not args.without_shim,
                                }
                            )
                            + "\n"
                        )
                    log.flush()
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

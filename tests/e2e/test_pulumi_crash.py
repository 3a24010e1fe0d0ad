"""Issue 22 item 3: what a crash of `pulumi up` does, with and without `PULUMI_SKIP_CHECKPOINTS`.

Real: the Pulumi CLI and engine with the file backend and the passphrase provider, the Python host
and the Kubernetes provider (4.25.0, tools/), kube-apiserver + kube-controller-manager. Simulated:
helm-controller (HelmReleases marked Ready, tests/e2e/harness/pulumi.py).

Each `up` is killed (SIGKILL of the CLI, the language host and the provider, each by PID, as a
runner that dies does) when a random share of its work is visible on the API server. Then the
recovery the README gives: `pulumi cancel` (the killed run's lock; or the lock file removed where
the file backend's cancel refuses), each pending create made a resource of the state
(.ci/pending_creates.py between `stack export` and `stack import`), `pulumi refresh`, and `up`
with the same program. After
it the stack must have converged: `preview --expect-no-changes` is green, the state holds every
object of the program exactly once and no pending operation, the server holds every object as
`ksecrets export` writes it (nothing lost), and no object written by Pulumi is left that the
program does not declare (no orphan). Phases: a first `up` (creates), an `up` that changes every
app's secret and Deployment (updates), and one that removes a third of the apps (deletes). A second
test kills an `up` and recovers with a different program (the added apps dropped again).
The third setting is the opt-in `ksecrets up --no-checkpoints` (components/recovery.py): every `up`
is that command (checkpoints skipped, under a run marker), killed the same way; its recovery is
the stack's lock released (`pulumi cancel`, as the README says) and `ksecrets up --no-checkpoints`
again, which finds the marker, adopts the killed run's objects that the program declares into the
state (or leaves those it no longer declares for `up` to delete), refreshes and runs `up`.
A run that finishes before its kill point is seen (a quick run between two looks at the server)
is reverted by a finished `up` of the phase's first program and tried again at half the share, at
most three tries; the tests assert that a run was killed. The seed is printed; KSECRETS_CRASH_SEED
replays it.
"""

from __future__ import annotations

import base64
import copy
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.export import stack_doc
from ksecrets import yamlio
from tests.e2e.conftest import require
from tests.e2e.harness import ROOT, procs
from tests.e2e.harness.gitops import bootstrap_flux
from tests.e2e.harness.pulumi import BACKEND_QUERY, SKIP_CHECKPOINTS, HelmReleaseReady, PulumiProject
from tests.e2e.test_pulumi import PULUMI, PULUMI_ONLY, _differences, _path
from tests.e2e.test_pulumi_large import _exported

APPS = 12  # 74 objects: a few seconds of work to kill at random points
SEED = int(os.environ.get("KSECRETS_CRASH_SEED") or time.time_ns() % 1_000_000)
# What the stack writes, listed cluster-wide to find orphans.
LISTS = (
    "/api/v1/namespaces",
    "/api/v1/serviceaccounts",
    "/apis/rbac.authorization.k8s.io/v1/roles",
    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "/apis/apps/v1/deployments",
    "/apis/bitnami.com/v1alpha1/sealedsecrets",
    "/apis/source.toolkit.fluxcd.io/v1/helmrepositories",
    "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
)
SETTINGS = {
    "skip-checkpoints": SKIP_CHECKPOINTS,
    "checkpoints": {"PULUMI_SKIP_CHECKPOINTS": "false"},
    # `ksecrets up --no-checkpoints`: it sets PULUMI_SKIP_CHECKPOINTS itself for its own commands.
    "ksecrets-no-checkpoints": {},
}
KSECRETS = "ksecrets-no-checkpoints"

# What the first runs on the real engine found (CLI 3.274.0, provider 4.25.0, file backend), and
# the remedies these tests hold the project to (README "Pulumi at a thousand apps"):
# - without checkpoints, a kill that landed while the CLI wrote the one final state left the
#   state's `.attrs` sidecar empty beside a `.tmp` ("failed to load checkpoint: EOF"): the file
#   backend rewrites the sidecar in place before it renames the state into place. The harness's
#   backend URL carries `?metadata=skip` (no sidecar: the rename is the write);
# - with checkpoints, after a killed update the next `up` failed on field-manager conflicts: a
#   create the state never recorded had applied the fields under its own random manager
#   (`pulumi-kubernetes-<id>`), which then co-owned them. Every object now carries one fixed manager
#   per stack (`pulumi.com/patchFieldManager`, components/kube.py);
# - a pending create cleared (`--clear-pending-creates`) is an orphan when the next program no
#   longer declares it, and `refresh --import-pending-creates` dropped them like clear on this CLI
#   (the next `up` created the objects again): the recovery makes each pending create a resource
#   of the state (.ci/pending_creates.py, `pulumi stack import`) and refreshes before `up`.
PENDING_CREATES = ROOT / ".ci" / "pending_creates.py"


def _key(obj: dict) -> tuple[str, str, str]:
    md = obj["metadata"]
    return (obj["kind"], md.get("namespace", ""), md["name"])


def _kind_of(path: str) -> str:
    """The kind a LIST path returns ("/apis/apps/v1/deployments" -> "Deployment")."""
    plural = path.rsplit("/", 1)[1]
    kinds = {
        "namespaces": "Namespace",
        "serviceaccounts": "ServiceAccount",
        "roles": "Role",
        "rolebindings": "RoleBinding",
        "deployments": "Deployment",
        "sealedsecrets": "SealedSecret",
        "helmrepositories": "HelmRepository",
        "helmreleases": "HelmRelease",
    }
    return kinds[plural]


def _written_by_pulumi(cluster, paths: tuple[str, ...] = LISTS) -> dict[tuple[str, str, str], dict]:
    """Every object of the stack's kinds whose fields a Pulumi field manager owns."""
    found = {}
    for path in paths:
        listing = _list(cluster, path)
        kind = listing["kind"].removesuffix("List")
        for item in listing["items"]:
            managers = {m.get("manager", "") for m in item["metadata"].get("managedFields") or []}
            if any(m.startswith("pulumi") for m in managers):
                found[_key({"kind": kind, **item})] = item
    return found


def _list(cluster, path: str) -> dict:
    """A LIST, retried while the busy server says 429 (Too Many Requests)."""
    for _ in range(50):
        r = cluster.raw("GET", path)
        if r.status_code != 429:
            r.raise_for_status()
            return r.json()
        time.sleep(0.2)
    r.raise_for_status()
    return {}


def _state_objects(project: PulumiProject) -> tuple[list[tuple[str, str, str]], list]:
    deployment = project.export()["deployment"]
    keys = []
    for r in deployment.get("resources", []):
        if r["type"].startswith("kubernetes:") and not r.get("external") and r["type"] != "pulumi:providers:kubernetes":
            keys.append(_key(r["outputs"]))
    return keys, deployment.get("pending_operations") or []


def _converged(project: PulumiProject, cluster, stack_file: Path) -> list[str]:
    """What is wrong with the stack after the recovering `up` (empty: converged)."""
    problems = []
    again = project.run("preview", "--expect-no-changes", check=False, timeout=900)
    if not again.ok:
        problems.append(f"preview --expect-no-changes failed:\n{again.out[-2000:]}")
    want = {_key(o): o for o in _exported(stack_file)}
    in_state, pending = _state_objects(project)
    if pending:
        problems.append(f"pending operations in the state: {[p['type'] for p in pending]}")
    dupes = sorted({k for k in in_state if in_state.count(k) > 1})
    if dupes:
        problems.append(f"in the state twice: {dupes}")
    if set(in_state) != set(want):
        problems.append(
            f"state != program: missing {sorted(set(want) - set(in_state))}, extra {sorted(set(in_state) - set(want))}"
        )
    for key, obj in want.items():
        live = cluster.get(_path(obj))
        if live is None:
            problems.append(f"lost: {key}")
            continue
        live = copy.deepcopy(live)
        for a in PULUMI_ONLY:
            (live["metadata"].get("annotations") or {}).pop(a, None)
        problems += [f"{_path(obj)}{d}" for d in _differences(obj, live)]
    orphans = sorted(set(_written_by_pulumi(cluster)) - set(want))
    terminating = [k for k in orphans if k[0] == "Namespace" and _terminating(cluster, k[2])]
    if set(orphans) - set(terminating):
        problems.append(f"orphans (written by Pulumi, not in the program): {sorted(set(orphans) - set(terminating))}")
    return problems


def _terminating(cluster, namespace: str) -> bool:
    ns = cluster.get(f"/api/v1/namespaces/{namespace}")
    return ns is None or ns.get("status", {}).get("phase") == "Terminating"


def _start_up(project: PulumiProject, env: dict, setting: str, out) -> subprocess.Popen:
    """The `up` of a setting, in a session of its own: `pulumi up`, or `ksecrets up --no-checkpoints`
    (the Automation API's Python, the CLI, the language host and the provider below it)."""
    if setting != KSECRETS:
        return project.start("up", "--yes", "--skip-preview", env=env, stdout=out)
    argv = [sys.executable, "-m", "ksecrets", "up", "--stack", project.stack, "--no-checkpoints"]
    return subprocess.Popen(
        [*argv, "--parallel", "1", "--root", str(project.project)],
        cwd=project.project,
        env=project.env(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _up(project: PulumiProject, cluster, env: dict, setting: str) -> str:
    """A finished `up` of the setting (a failure fails the test, with the log's end)."""
    log = project.workdir / "up.log"
    with open(log, "a") as out, HelmReleaseReady(cluster):
        start = out.tell()
        out.write(f"\n=== up ({setting})\n")
        out.flush()
        proc = _start_up(project, env, setting, out)
        try:
            code = proc.wait(900)
        finally:
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
                proc.wait(30)
    text = log.read_text()[start:]
    assert code == 0, f"{setting}: up failed ({code}); log {log}:\n{text[-4000:]}"
    return text


def _kill_midway(
    project: PulumiProject, cluster, env: dict, done, share: float, setting: str = "", timeout: float = 600
) -> dict:
    """Start `up`, SIGKILL it (and its plugins, by PID) once `done()` reaches `share` of its total."""
    log = project.workdir / "killed-up.log"
    with open(log, "a") as out, HelmReleaseReady(cluster):
        out.write(f"\n=== up, killed at {share:.0%}\n")
        out.flush()
        proc = _start_up(project, env, setting, out)
        started = time.monotonic()
        try:
            while True:
                reached, total = done()
                if proc.poll() is not None:
                    return {"killed": False, "reached": reached, "total": total, "code": proc.returncode}
                if reached >= max(1, round(share * total)):
                    below = procs.descendants(proc.pid)
                    procs.kill_tree(proc.pid)
                    proc.wait(30)
                    procs.wait_for("the killed up's plugins gone", lambda: all(_gone(p) for p in below), 30)
                    return {"killed": True, "reached": reached, "total": total, "after": time.monotonic() - started}
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"up did not reach {share:.0%} in {timeout} s; log: {log}")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
                proc.wait(30)


def _kill_at(project: PulumiProject, cluster, env: dict, progress, share: float, revert, setting: str = "") -> dict:
    """`_kill_midway`, tried again when the run finished before its kill point was seen (a fast run
    between two looks at the server: CI's run of 2026-12-07 saw a 36-object `up` without
    checkpoints end at 36 of 36). `revert()` puts the cluster and the state back where the phase
    started (a finished `up` of the phase's first program); `progress()` then measures the phase's
    work afresh and the next try aims at half the share. At most three tries; the tests assert
    that the last one was killed."""
    tries = 0
    while True:
        tries += 1
        killed = _kill_midway(project, cluster, env, progress(), share, setting)
        if killed["killed"] or tries == 3:
            return killed | {"tries": tries, "aimed at": f"{share:.0%}"}
        revert()
        share /= 2


def _up_to(project: PulumiProject, cluster, env: dict, stack_file: Path, doc: dict, setting: str = "") -> None:
    """A finished `up` of `doc`, with no namespace Terminating before it or after it (the run that
    was not killed may have removed some, and `doc` or the next try creates them again)."""

    def none_terminating() -> bool:
        return not [
            n
            for n in _list(cluster, "/api/v1/namespaces")["items"]
            if n.get("status", {}).get("phase") == "Terminating"
        ]

    procs.wait_for("no namespace Terminating", none_terminating, 120)
    stack_file.write_text(yamlio.dump(doc))
    _up(project, cluster, env, setting)
    procs.wait_for("no namespace Terminating", none_terminating, 120)


def _recover(project: PulumiProject, cluster, env: dict, setting: str = "") -> list[str]:
    """What a user does after a killed `up` (README "Pulumi at a thousand apps"), step by step:
    `pulumi cancel` (the killed run's lock; where this engine's cancel refuses on the file backend,
    the lock file is removed as its message says), each pending create made a resource of the
    state (`stack export` | .ci/pending_creates.py | `stack import`, which drops anything else
    pending), `pulumi refresh`, then `up`. Under `ksecrets up --no-checkpoints`: the lock, then
    the same command again (its recovery). Returns what was found."""
    found = _unlock(project, env)
    if setting == KSECRETS:
        marker = _marker(project)
        assert marker.is_file(), f"no run marker after a killed ksecrets up: {marker}"
        text = _up(project, cluster, env, setting)
        assert not marker.exists(), "the run marker outlived a finished up"
        found += [ln.split("recovery: ", 1)[1].strip() for ln in text.splitlines() if "recovery: " in ln]
        return found
    export = project.run("stack", "export", "--show-secrets=false", env=env).out
    resolved = subprocess.run(
        [sys.executable, str(PENDING_CREATES)], input=export, capture_output=True, text=True, check=True
    )
    found.append(resolved.stderr.strip().removeprefix("pending_creates: "))
    (project.workdir / "resolved.json").write_text(resolved.stdout)
    project.run("stack", "import", "--file", str(project.workdir / "resolved.json"), env=env)
    project.run("refresh", "--yes", "--skip-preview", env=env, timeout=900)
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", env=env, timeout=900)
    return found


def _marker(project: PulumiProject) -> Path:
    """Where `ksecrets up --no-checkpoints` keeps its run marker: beside the file backend's state."""
    return project.state / ".ksecrets-runs" / "k8s-secrets" / f"{project.stack}.json"


def _unlock(project: PulumiProject, env: dict) -> list[str]:
    found = []
    cancel = project.run("cancel", "--yes", env=env, check=False, timeout=300)
    locks = sorted((project.state / ".pulumi" / "locks").rglob("*.json"))
    if cancel.ok:
        found.append("cancel")
    elif locks:
        for lock in locks:
            lock.unlink()
        found.append("lock file removed")
    else:
        found.append("not locked")
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _progress(cluster, target: dict[tuple[str, str, str], dict], removed: set[tuple[str, str, str]]):
    """The phase's work: objects not yet as `target` wants them when it starts, and objects to
    remove. Returns done() -> (how many of those are done now, how many there are). Each call
    lists only the kinds of the phase's work (fewer requests between two looks: a fast run must
    not pass its kill point unseen)."""

    def state(paths=LISTS) -> set[tuple[str, str, str]]:
        live = _written_by_pulumi(cluster, paths)
        ok = {k for k, obj in target.items() if k in live and not _differences(_comparable(obj), live[k])}
        return ok | {k for k in removed if k not in live or (k[0] == "Namespace" and _terminating(cluster, k[2]))}

    work = (set(target) | removed) - state()
    kinds = {k[0] for k in work}
    paths = tuple(p for p in LISTS if _kind_of(p) in kinds) or LISTS

    def done() -> tuple[int, int]:
        return len(work & state(paths)), len(work)

    return done


def _comparable(obj: dict) -> dict:
    """The fields a changed object shows on the server (metadata less what Pulumi adds; a LIST's
    items of built-in kinds carry no apiVersion and kind)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")} | {
        "metadata": {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace")}
    }


def _phases(doc: dict, rng: random.Random) -> list[tuple[str, dict]]:
    created = copy.deepcopy(doc)
    updated = copy.deepcopy(doc)
    # Another well-formed sealed value (the model refuses anything that is not kubeseal's layout).
    other = base64.b64encode(b"\x02\x00" + bytes(range(256))[::-1] * 2 + b"y" * 40).decode()
    for entry in updated["config"]["k8s-secrets:sealed"]:
        entry["encryptedData"] = {k: other for k in entry["encryptedData"]}  # every app's secret
    for app in updated["config"]["k8s-secrets:apps"]:
        app["deployments"][0]["image"] = "ghcr.io/example/app:1.0.1"  # and every Deployment
    deleted = copy.deepcopy(updated)
    gone = set(rng.sample(range(APPS), APPS // 3))
    deleted["config"]["k8s-secrets:apps"] = [
        a for i, a in enumerate(deleted["config"]["k8s-secrets:apps"]) if i not in gone
    ]
    deleted["config"]["k8s-secrets:sealed"] = [
        s for i, s in enumerate(deleted["config"]["k8s-secrets:sealed"]) if i not in gone
    ]
    return [("create", created), ("update", updated), ("delete", deleted)]


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_up_killed_at_random_points_then_up_again_converges(setting, cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI, "kubectl")
    rng = random.Random(f"{SEED}-{setting}")
    cluster = cluster_factory(f"pulumi-crash-{setting}")
    bootstrap_flux(cluster)
    doc = stack_doc(APPS)
    doc["config"]["kubernetes:context"] = "e2e"
    project = PulumiProject(
        e2e_dir / f"pulumi-crash-{setting}",
        bins,
        "crash",
        kubeconfig=cluster.kubeconfig,
        stack_file=yamlio.dump(doc),
        context=None,
    ).init()
    _kubectl_on_path(project, bins)
    stack_file = project.project / "Pulumi.crash.yaml"
    env = SETTINGS[setting]
    report: list[str] = []
    adopted: dict[str, int] = {}
    pending_found: list[str] = []
    before: dict = {}
    previous = copy.deepcopy(doc)
    previous["config"]["k8s-secrets:apps"] = []  # before the first phase: the platform alone
    previous["config"]["k8s-secrets:sealed"] = []
    for phase, wanted in _phases(doc, rng):
        stack_file.write_text(yamlio.dump(wanted))
        target = {_key(o): o for o in _exported(stack_file)}
        removed = set(before) - set(target)
        share = rng.uniform(0.1, 0.9)

        def revert(previous=previous, wanted=wanted) -> None:
            _up_to(project, cluster, env, stack_file, previous, setting)
            stack_file.write_text(yamlio.dump(wanted))

        state_before = _state_objects(project)[0]
        killed = _kill_at(project, cluster, env, lambda: _progress(cluster, target, removed), share, revert, setting)
        report.append(f"{phase}: killed at {share:.0%} ({killed})")
        in_state, pending = _state_objects(project)
        if setting == KSECRETS:
            # The premise: the killed run wrote no state (its creates are on the server only).
            assert sorted(in_state) == sorted(state_before) and pending == [], f"{phase}: the killed run wrote state"
            left_behind = set(_written_by_pulumi(cluster)) - set(in_state)
            uncreated = _adopted(project)
        if any(p["type"] == "creating" for p in pending):
            # Creates the killed run had sent: with checkpoints the state says so (a pending
            # create); without, the state is the one before that run and records nothing.
            pending_found.append(f"{phase}: {sorted(p['type'] for p in pending)}")
        recovered = _recover(project, cluster, env, setting)
        report.append(f"{phase}: then {', '.join(recovered)}")
        if setting == KSECRETS:
            adopted[phase] = _count(recovered, "adopted")
            # The engine sets a resource's `created` only when it creates it: the objects that have
            # none since this recovery are the ones it adopted, and each is one the killed run
            # created (with provider 4.34.2 an `up` creating them again fails AlreadyExists).
            now_adopted = _adopted(project) - uncreated
            assert len(now_adopted) == adopted[phase] and now_adopted <= left_behind, (
                f"{phase}: adopted {sorted(now_adopted)}; left behind by the kill {sorted(left_behind)}"
            )
        problems = _converged(project, cluster, stack_file)
        assert problems == [], f"seed {SEED}, {setting}, {report}:\n" + "\n".join(problems)
        before = target
        previous = wanted
    print(
        f"\nseed {SEED}, {setting}: "
        + "; ".join(report)
        + f"; pending creates after the kill: {pending_found or 'none'}"
    )
    kills = [r for r in report if "killed at" in r]
    assert all("'killed': True" in r for r in kills), f"seed {SEED}: a run ended before its kill point: {report}"
    if setting in ("skip-checkpoints", KSECRETS):
        # The state is written once, at the end: a killed run leaves it as it was, never half.
        assert pending_found == [], pending_found
    if setting == KSECRETS:
        # The create killed midway left objects only the recovery could put in the state.
        assert adopted["create"] > 0, report


def _count(lines: list[str], what: str) -> int:
    """A figure of the recovery's summary line ("3 orphan(s) ...: 2 adopted, 1 to delete ...")."""
    for line in lines:
        m = re.search(rf"(\d+) {what}", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no '{what}' in the recovery's lines: {lines}")


def _adopted(project: PulumiProject) -> set[tuple[str, str, str]]:
    """Objects in the state that no `up` created (no `created` time): adopted by a recovery."""
    deployment = project.export()["deployment"]
    return {
        _key(r["outputs"])
        for r in deployment.get("resources", [])
        if r["type"].startswith("kubernetes:") and r.get("custom") and not r.get("external") and not r.get("created")
    }


def _kubectl_on_path(project: PulumiProject, bins: dict[str, Path]) -> None:
    """`ksecrets up --no-checkpoints` lists the cluster with kubectl (PATH), as on a workstation."""
    link = project.bin / "kubectl"
    if not link.exists():
        link.symlink_to(bins["kubectl"])


@pytest.mark.parametrize(
    "setting",
    ["skip-checkpoints", "checkpoints", KSECRETS],
)
def test_a_killed_up_followed_by_a_different_program(setting, cluster_factory, e2e_dir: Path):
    """The killed run created objects for apps that the next program no longer has (a runner died,
    the next commit dropped the apps). What the state never recorded, neither `up` nor `pulumi
    refresh` can find: without checkpoints they stay behind; with them the recovery leaves none;
    under `ksecrets up --no-checkpoints` its recovery finds them (the stack's field manager) and
    the next `up` deletes them."""
    bins = require(*PULUMI, "kubectl")
    rng = random.Random(f"{SEED}-different-{setting}")
    cluster = cluster_factory(f"pulumi-crash-diff-{setting}")
    bootstrap_flux(cluster)
    base = stack_doc(4)
    base["config"]["kubernetes:context"] = "e2e"
    more = stack_doc(10)
    more["config"]["kubernetes:context"] = "e2e"
    project = PulumiProject(
        e2e_dir / f"pulumi-crash-diff-{setting}",
        bins,
        "crash",
        kubeconfig=cluster.kubeconfig,
        stack_file=yamlio.dump(base),
        context=None,
    ).init()
    _kubectl_on_path(project, bins)
    stack_file = project.project / "Pulumi.crash.yaml"
    env = SETTINGS[setting]
    _up(project, cluster, env, setting)
    before = {_key(o): o for o in _exported(stack_file)}
    stack_file.write_text(yamlio.dump(more))
    target = {_key(o): o for o in _exported(stack_file)}
    share = rng.uniform(0.3, 0.8)

    def revert() -> None:
        _up_to(project, cluster, env, stack_file, base, setting)
        stack_file.write_text(yamlio.dump(more))

    killed = _kill_at(project, cluster, env, lambda: _progress(cluster, target, set()), share, revert, setting)
    assert killed["killed"], killed
    created = sorted(set(_written_by_pulumi(cluster)) - set(before))
    in_state, pending = _state_objects(project)
    if setting == KSECRETS:
        assert set(in_state) == set(before) and pending == [], "the killed run wrote state"
    in_flight = {
        _key(p["resource"]["inputs"])
        for p in pending
        if p["type"] == "creating" and p["resource"]["type"].startswith("kubernetes:")
    }
    stack_file.write_text(yamlio.dump(base))  # the next program: the added apps are gone again
    recovered = _recover(project, cluster, env, setting)
    orphans = sorted(set(_written_by_pulumi(cluster)) - set(before))
    orphans = [k for k in orphans if not (k[0] == "Namespace" and _terminating(cluster, k[2]))]
    print(
        f"\nseed {SEED}, {setting}: killed at {share:.0%} ({killed}); the killed run created {len(created)} "
        f"objects, {len(in_flight)} in flight; {', '.join(recovered)}; orphans after the recovery: "
        f"{len(orphans)} {orphans[:8]}"
    )
    assert created, killed
    if setting == "skip-checkpoints":
        # Nothing of the killed run reached the state: every object it created stays behind.
        # This is why `up` keeps its checkpoints.
        assert orphans and set(orphans) <= set(created), orphans
    elif setting == KSECRETS:
        # The recovery found every object of the killed run (none in the state) and the next
        # program declares none of them: each was left for `up` to delete.
        assert _count(recovered, "to delete") >= len(created) - _count(recovered, "adopted"), recovered
        assert orphans == [], f"seed {SEED}: orphans after ksecrets' recovery: {orphans}; {recovered}"
        assert _converged(project, cluster, stack_file) == []
    else:
        # Each step that finished is in the state and deleted by the next up; the creates in
        # flight were pending creates, imported by the recovery's refresh and so deleted too.
        assert orphans == [], f"seed {SEED}: orphans with checkpoints: {orphans}; in flight {in_flight}"
        assert _converged(project, cluster, stack_file) == []


def test_ksecrets_no_checkpoints_killed_while_creates_wait_then_recovered(cluster_factory, e2e_dir: Path):
    """A first `ksecrets up --no-checkpoints` killed with part of its creates done: the HelmRelease
    is never marked Ready during that run, so every object that depends on it (the SealedSecrets)
    waits while the rest is created; the kill comes once every Deployment is on the server. The
    recovery adopts exactly what is there (the state had nothing), and its `up` creates the rest."""
    bins = require(*PULUMI, "kubectl")
    cluster = cluster_factory("pulumi-crash-waiting")
    bootstrap_flux(cluster)
    doc = stack_doc(4)
    doc["config"]["kubernetes:context"] = "e2e"
    project = PulumiProject(
        e2e_dir / "pulumi-crash-waiting",
        bins,
        "crash",
        kubeconfig=cluster.kubeconfig,
        stack_file=yamlio.dump(doc),
        context=None,
    ).init()
    _kubectl_on_path(project, bins)
    stack_file = project.project / "Pulumi.crash.yaml"
    target = {_key(o): o for o in _exported(stack_file)}
    deployments = {k for k in target if k[0] == "Deployment"}
    waiting = {k for k in target if k[0] == "SealedSecret"}
    assert deployments and waiting
    with open(project.workdir / "killed-up.log", "a") as out:
        proc = _start_up(project, {}, KSECRETS, out)
        try:
            procs.wait_for("every Deployment created", lambda: deployments <= set(_written_by_pulumi(cluster)), 300)
            time.sleep(2)  # the run now waits for the HelmRelease, which nothing marks Ready
            below = procs.descendants(proc.pid)
            procs.kill_tree(proc.pid)
            proc.wait(30)
            procs.wait_for("the killed up's plugins gone", lambda: all(_gone(p) for p in below), 30)
        finally:
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
                proc.wait(30)
    on_server = set(_written_by_pulumi(cluster))
    in_state, pending = _state_objects(project)
    assert in_state == [] and pending == [], "the killed run wrote state"
    assert not (waiting & on_server), "a SealedSecret was created before its HelmRelease was Ready"
    left_behind = on_server & set(target)
    assert left_behind and left_behind < set(target), left_behind
    recovered = _recover(project, cluster, {}, KSECRETS)
    adopted = _adopted(project)
    print(
        f"\nksecrets-no-checkpoints, first up killed while creates wait: {len(left_behind)} of {len(target)} "
        f"objects on the server, none in the state; {', '.join(recovered)}; adopted {len(adopted)}"
    )
    assert adopted == left_behind, (sorted(adopted ^ left_behind), recovered)
    assert _count(recovered, "adopted") == len(left_behind)
    problems = _converged(project, cluster, stack_file)
    assert problems == [], "\n".join(problems)


def test_the_file_backend_writes_its_state_atomically_only_without_sidecars(e2e_dir: Path):
    """Why the harness's backend URL (and the README's `pulumi login`) carries `?metadata=skip`:
    by default each state write first rewrites `<state>.json.attrs` in place, and an empty sidecar
    (what a kill between its truncation and its write leaves, found by the kills above) makes the
    stack unreadable; with `metadata=skip` no sidecar is ever written."""
    bins = require(*PULUMI)
    seen = {}
    for query in ("", BACKEND_QUERY):
        name = f"pulumi-attrs{query.replace('?', '-').replace('=', '-')}"
        project = PulumiProject(e2e_dir / name, bins, "crash", stack_file="config: {}\n")
        env = {"PULUMI_BACKEND_URL": f"file://{project.state}{query}"}
        project.run("stack", "init", "crash", stack=False, env=env)
        project.run("config", "set", "kubernetes:context", "e2e", env=env)
        project.run("stack", "export", env=env)
        seen[query] = sorted(p.name for p in project.state.rglob("*.attrs"))
        if query == "":
            assert "crash.json.attrs" in seen[query], seen
            for sidecar in project.state.rglob("crash.json.attrs"):
                sidecar.write_text("")  # the kill's leftover: truncated, not yet written
            broken = project.run("stack", "export", env=env, check=False)
            assert not broken.ok and "EOF" in broken.out, broken.out[-2000:]
    assert seen[BACKEND_QUERY] == [], seen

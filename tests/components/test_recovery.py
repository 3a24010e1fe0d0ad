"""components/recovery.py without the engine: the run marker, which objects are a killed run's
orphans, and the state edit that adopts them (the engine runs it in tests/e2e/test_pulumi_crash.py)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from itertools import count
from pathlib import Path

import pytest

from components import recovery
from components.kube import field_manager
from components.recovery import (
    Marker,
    RecoveryError,
    adopt,
    key_of_resource,
    list_path,
    marker_dir,
    orphans,
    read_marker,
    state_keys,
    type_token,
    write_marker,
)
from tests.conftest import ROOT

S = "urn:pulumi:dev::k8s-secrets::"
STACK = S + "pulumi:pulumi:Stack::k8s-secrets-dev"
PROVIDER = S + "pulumi:providers:kubernetes::dev-cluster"
APPS = S + "pulumi:pulumi:Stack$k8s-secrets:index:Apps::apps"
MANAGER = field_manager("dev")
START = dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.timezone.utc)


def _urn(type_: str, name: str, parent_type: str = "k8s-secrets:index:Apps") -> str:
    return f"{S}pulumi:pulumi:Stack${parent_type}${type_}::{name}"


def _obj(api: str, kind: str, name: str, ns: str | None, manager: str = MANAGER, at: str = "2026-12-07T11:05:00Z"):
    md: dict = {"name": name, "managedFields": [{"manager": manager, "operation": "Apply", "time": at}]}
    if ns:
        md["namespace"] = ns
    return {"apiVersion": api, "kind": kind, "metadata": md}


def _create(urn: str, type_: str, inputs: dict, parent: str = APPS, provider: str = "", deps=()) -> dict:
    new = {"urn": urn, "custom": True, "type": type_, "inputs": inputs, "parent": parent}
    if provider:
        new["provider"] = provider
    if deps:
        new["dependencies"] = list(deps)
    return {"op": "create", "urn": urn, "provider": provider, "newState": new}


def _plan(provider_ref: str) -> list[dict]:
    """The preview of a program with a namespace, its Deployment and a manual Secret."""
    ns = _urn("kubernetes:core/v1:Namespace", "team1")
    return [
        {"op": "same", "urn": STACK, "newState": {"urn": STACK, "custom": False, "type": "pulumi:pulumi:Stack"}},
        _create(
            ns,
            "kubernetes:core/v1:Namespace",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team1"}},
            provider=provider_ref,
        ),
        _create(
            _urn("kubernetes:apps/v1:Deployment", "team1/app1"),
            "kubernetes:apps/v1:Deployment",
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app1", "namespace": "team1"}},
            provider=provider_ref,
            deps=[ns, _urn("kubernetes:core/v1:Secret", "team1/never-created")],
        ),
        _create(
            _urn("kubernetes:core/v1:Secret", "team1/app1-secrets"),
            "kubernetes:core/v1:Secret",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "app1-secrets", "namespace": "team1"},
                "stringData": "[secret]",
                "type": "Opaque",
            },
            provider=provider_ref,
        ),
    ]


def _state() -> dict:
    return {
        "manifest": {},
        "resources": [
            {"urn": STACK, "custom": False, "type": "pulumi:pulumi:Stack"},
            {
                "urn": PROVIDER,
                "custom": True,
                "id": "11111111-aaaa",
                "type": "pulumi:providers:kubernetes",
                "parent": STACK,
                "inputs": {"context": "dev"},
                "outputs": {"context": "dev"},
            },
            {"urn": APPS, "custom": False, "type": "k8s-secrets:index:Apps", "parent": STACK},
            {
                "urn": _urn("kubernetes:core/v1:Namespace", "team0"),
                "custom": True,
                "id": "team0",
                "type": "kubernetes:core/v1:Namespace",
                "parent": APPS,
                "provider": f"{PROVIDER}::11111111-aaaa",
            },
        ],
    }


def _check_order(resources: list[dict]) -> None:
    """What `pulumi stack import` checks: parent, provider and dependencies come first; URNs unique."""
    seen: set[str] = set()
    for r in resources:
        for ref in [r.get("parent"), (r.get("provider") or "").rsplit("::", 1)[0], *(r.get("dependencies") or [])]:
            assert not ref or ref in seen, f"{r['urn']} refers to {ref} before it"
        assert r["urn"] not in seen
        seen.add(r["urn"])


# ---- the marker -------------------------------------------------------------------------------
def test_the_marker_round_trips_and_holds_no_config(tmp_path):
    path = tmp_path / "runs" / "k8s-secrets" / "dev.json"
    marker = Marker.new("dev", "k8s-secrets", MANAGER, now=START)
    write_marker(path, marker)
    assert read_marker(path) == marker
    assert set(json.loads(path.read_text())) == {"stack", "project", "manager", "started", "host", "pid"}
    assert [p.name for p in path.parent.iterdir()] == ["dev.json"]  # no temp file left
    assert marker.since == START - recovery.CLOCK_SKEW
    assert read_marker(tmp_path / "none.json") is None


def test_a_damaged_marker_is_one_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text("{")
    with pytest.raises(RecoveryError, match="not a run marker"):
        read_marker(path)


def test_the_marker_lives_beside_a_file_backends_state_or_where_it_is_told(tmp_path):
    assert marker_dir(f"file://{tmp_path}?metadata=skip", {}) == tmp_path / ".ksecrets-runs"
    assert marker_dir("https://api.pulumi.com", {"KSECRETS_RUN_MARKERS": str(tmp_path)}) == tmp_path
    assert marker_dir("file://~/state", {}) == Path.home() / "state" / ".ksecrets-runs"
    with pytest.raises(RecoveryError, match="KSECRETS_RUN_MARKERS"):
        marker_dir("https://api.pulumi.com", {})
    with pytest.raises(RecoveryError):
        marker_dir("s3://bucket/state", {})


# ---- keys and paths ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "kind", "token", "path"),
    [
        ("v1", "Namespace", "kubernetes:core/v1:Namespace", "/api/v1/namespaces"),
        ("apps/v1", "Deployment", "kubernetes:apps/v1:Deployment", "/apis/apps/v1/deployments"),
        (
            "source.toolkit.fluxcd.io/v1",
            "HelmRepository",
            "kubernetes:source.toolkit.fluxcd.io/v1:HelmRepository",
            "/apis/source.toolkit.fluxcd.io/v1/helmrepositories",
        ),
        (
            "monitoring.coreos.com/v1",
            "PrometheusRule",
            "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
            "/apis/monitoring.coreos.com/v1/prometheusrules",
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            "kubernetes:networking.k8s.io/v1:Ingress",
            "/apis/networking.k8s.io/v1/ingresses",
        ),
    ],
)
def test_types_and_list_paths(api, kind, token, path):
    assert type_token(api, kind) == token
    assert recovery.api_of_type(token) == (api, kind)
    assert list_path(api, kind) == path


def test_a_resource_is_known_by_group_kind_namespace_and_name():
    assert key_of_resource({"type": "kubernetes:apps/v1:Deployment", "custom": True, "id": "team1/app1"}) == (
        "apps",
        "Deployment",
        "team1",
        "app1",
    )
    assert key_of_resource({"type": "kubernetes:core/v1:Namespace", "custom": True, "id": "team1"}) == (
        "",
        "Namespace",
        "",
        "team1",
    )
    planned = {"type": "kubernetes:core/v1:Secret", "custom": True, "id": recovery.UNKNOWN}
    planned["inputs"] = {"metadata": {"name": "s", "namespace": "n"}}
    assert key_of_resource(planned) == ("", "Secret", "n", "s")
    for other in ("pulumi:providers:kubernetes", "k8s-secrets:index:Apps", "kubernetes:helm.sh/v3:Chart"):
        assert key_of_resource({"type": other, "custom": True, "id": "x"}) is None


def test_every_kind_the_builders_make_is_listed():
    """A kind missing here would never be searched for orphans: this fails when a builder adds one."""
    import copy

    from bench.export import stack_doc
    from ksecrets.config import load_stack_file, stack_files
    from ksecrets.manifests.stack import pulumi_delivered
    from ksecrets.usecases.stack_facts import plan_stack
    from ksecrets import yamlio

    files = list(stack_files(ROOT))
    kinds = set()
    for path in files:
        cfg = load_stack_file(path)
        kinds |= {(p.obj["apiVersion"], p.obj["kind"]) for p in pulumi_delivered(cfg, plan_stack(cfg))}
    assert ("v1", "Namespace") in kinds and len(files) >= 2
    doc = copy.deepcopy(stack_doc(3))
    bench = ROOT / "Pulumi.bench-recovery-test.yaml"
    try:
        bench.write_text(yamlio.dump(doc))
        cfg = load_stack_file(bench)
        kinds |= {(p.obj["apiVersion"], p.obj["kind"]) for p in pulumi_delivered(cfg, plan_stack(cfg))}
    finally:
        bench.unlink(missing_ok=True)
    assert kinds <= set(recovery.REGISTRABLE), sorted(kinds - set(recovery.REGISTRABLE))


# ---- orphans ----------------------------------------------------------------------------------
def test_orphans_are_the_stacks_writes_since_the_run_that_no_state_holds():
    since = START - recovery.CLOCK_SKEW
    held = state_keys(_state())
    objects = [
        _obj("v1", "Namespace", "team1", None),  # the killed run's
        _obj("v1", "Namespace", "team0", None),  # in the state
        _obj("apps/v1", "Deployment", "app1", "team1", manager="kubectl-client-side-apply"),  # not ours
        _obj("apps/v1", "Deployment", "app2", "team1", manager=field_manager("prod")),  # another stack's
        _obj("v1", "Secret", "old", "team1", at="2026-12-01T09:00:00Z"),  # before the run: handed over
        _obj("v1", "ServiceAccount", "app1", "team1"),
    ]
    deleting = _obj("v1", "ServiceAccount", "gone", "team1")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-07T11:06:00Z"
    found = orphans([*objects, deleting], held, MANAGER, since)
    assert [recovery.key_of_object(o) for o in found] == [
        ("", "Namespace", "", "team1"),
        ("", "ServiceAccount", "team1", "app1"),
    ]
    # Another manager sharing the object (Flux, kubectl) does not hide ours.
    shared = _obj("v1", "Namespace", "team9", None)
    shared["metadata"]["managedFields"].insert(0, {"manager": "kustomize-controller", "time": "2026-12-07T11:07:00Z"})
    assert orphans([shared], held, MANAGER, since) == [shared]


# ---- the state edit ---------------------------------------------------------------------------
def test_declared_orphans_become_the_programs_resources_and_the_rest_are_left_to_up_to_delete():
    state = _state()
    before = json.dumps(state, sort_keys=True)
    steps = _plan(f"{PROVIDER}::11111111-aaaa")
    found = [
        _obj("v1", "Namespace", "team1", None),
        _obj("apps/v1", "Deployment", "app1", "team1"),
        _obj("v1", "Secret", "app1-secrets", "team1"),
        _obj("bitnami.com/v1alpha1", "SealedSecret", "dropped-secrets", "team7"),  # the program dropped it
    ]
    result = adopt(state, found, steps, MANAGER)
    assert json.dumps(state, sort_keys=True) == before, "the input state was changed"
    resources = result.deployment["resources"]
    _check_order(resources)
    assert resources[:4] == state["resources"]
    assert result.fabricated == []
    assert result.declared == [s["urn"] for s in steps[1:]]
    ns, deploy, secret, dropped = resources[4:]
    assert ns["id"] == "team1" and deploy["id"] == "team1/app1" and secret["id"] == "team1/app1-secrets"
    for r in (ns, deploy, secret):
        assert r["parent"] == APPS and r["provider"] == f"{PROVIDER}::11111111-aaaa" and r["outputs"] == {}
    assert deploy["dependencies"] == [ns["urn"]]  # the create that never happened is left out
    assert "stringData" not in secret["inputs"] and secret["inputs"]["type"] == "Opaque"
    assert "[secret]" not in json.dumps(result.deployment)
    assert result.undeclared == [f"{S}kubernetes:bitnami.com/v1alpha1:SealedSecret::team7/dropped-secrets"]
    assert dropped["parent"] == STACK and dropped["id"] == "team7/dropped-secrets"
    assert dropped["inputs"]["metadata"]["annotations"] == {"pulumi.com/patchFieldManager": MANAGER}
    assert dropped["provider"] == f"{PROVIDER}::11111111-aaaa"


def test_after_a_first_run_killed_the_stack_components_and_provider_come_from_the_plan():
    """The first `up` of a stack killed: the state holds nothing, the plan creates everything."""
    unknown = f"{PROVIDER}::{recovery.UNKNOWN}"
    steps = [
        _create(STACK, "pulumi:pulumi:Stack", {}, parent=""),
        _create(PROVIDER, "pulumi:providers:kubernetes", {"context": "dev", "version": "4.25.0"}, parent=STACK),
        _create(APPS, "k8s-secrets:index:Apps", {}, parent=STACK),
        *_plan(unknown)[1:],
    ]
    for s in (steps[0], steps[2]):
        s["newState"]["custom"] = False
    ids = (f"id-{i}" for i in count())
    found = [_obj("v1", "Namespace", "team1", None), _obj("v1", "Namespace", "team5", None)]
    result = adopt({"manifest": {}, "resources": []}, found, steps, MANAGER, new_id=lambda: next(ids))
    resources = result.deployment["resources"]
    _check_order(resources)
    assert result.fabricated == [STACK, APPS, PROVIDER]
    provider = resources[2]
    assert provider["id"] == "id-0" and provider["inputs"] == provider["outputs"] == {
        "context": "dev",
        "version": "4.25.0",
    }
    assert resources[3]["provider"] == f"{PROVIDER}::id-0"
    assert [r["id"] for r in resources[3:]] == ["team1", "team5"]
    assert result.undeclared == [f"{S}kubernetes:core/v1:Namespace::team5"]


def test_a_provider_with_a_secret_input_is_not_fabricated():
    steps = [
        _create(STACK, "pulumi:pulumi:Stack", {}, parent=""),
        _create(PROVIDER, "pulumi:providers:kubernetes", {"kubeconfig": "[secret]"}, parent=STACK),
        _create(APPS, "k8s-secrets:index:Apps", {}, parent=STACK),
        *_plan(f"{PROVIDER}::{recovery.UNKNOWN}")[1:],
    ]
    for s in (steps[0], steps[2]):
        s["newState"]["custom"] = False
    with pytest.raises(RecoveryError, match="secret or unknown input"):
        adopt({"resources": []}, [_obj("v1", "Namespace", "team1", None)], steps, MANAGER)


def test_nothing_found_changes_nothing():
    state = _state()
    result = adopt(state, [], _plan(f"{PROVIDER}::11111111-aaaa"), MANAGER)
    assert result.deployment == state and (result.declared, result.undeclared, result.fabricated) == ([], [], [])


def test_the_preview_document_is_found_after_warnings():
    doc = {"steps": [{"op": "same", "urn": STACK}], "changeSummary": {"same": 1}}
    text = "warning: A new version of Pulumi is available\n" + json.dumps(doc, indent=2)
    assert recovery.planned_steps(recovery.preview_document(text)) == doc["steps"]
    with pytest.raises(RecoveryError):
        recovery.preview_document("error: no stack\n")


# ---- listing through kubectl ----------------------------------------------------------------
def test_listing_pages_and_skips_kinds_the_server_does_not_serve(tmp_path):
    """A stand-in kubectl (the real one runs in tests/e2e/test_pulumi_crash.py): two pages of
    namespaces, deployments not served (a CRD not installed answers the same), a refusal is one line."""
    pages = {
        "/api/v1/namespaces?limit=500": {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "t1"}},
        "/api/v1/namespaces?limit=500&continue=t1": {"items": [{"metadata": {"name": "b"}}], "metadata": {}},
        "/api/v1/configmaps?limit=500": {"items": [{"metadata": {"name": "c"}, "data": {"k": "v"}}]},
        "/api/v1/secrets?limit=500": "Error from server (Forbidden): secrets is forbidden",
    }
    (tmp_path / "pages.json").write_text(json.dumps(pages))
    fake = tmp_path / "kubectl"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"pages = json.load(open({str(tmp_path / 'pages.json')!r}))\n"
        "assert sys.argv[1:4] == ['--context', 'dev', 'get'], sys.argv\n"
        "page = pages.get(sys.argv[-1])\n"
        "if page is None:\n"
        "    sys.exit(print('Error from server (NotFound): the server could not find the requested resource', file=sys.stderr) or 1)\n"
        "if isinstance(page, str):\n"
        "    sys.exit(print(page, file=sys.stderr) or 1)\n"
        "print(json.dumps(page))\n"
    )
    fake.chmod(0o755)
    env = {"KSECRETS_KUBECTL": str(fake)}
    argv = recovery.kubectl_argv("dev", None, env)
    listed = recovery.list_objects(argv, [("v1", "Namespace"), ("apps/v1", "Deployment")], env)
    assert [(o["kind"], o["metadata"]["name"]) for o in listed] == [("Namespace", "a"), ("Namespace", "b")]
    (kept,) = recovery.list_objects(argv, [("v1", "ConfigMap")], env)
    assert kept == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}  # data is not kept
    with pytest.raises(RecoveryError, match=r"^kubectl get --raw /api/v1/secrets: Error from server \(Forbidden\)"):
        recovery.list_objects(argv, [("v1", "Secret")], env)


def test_no_checkpoints_is_for_up_only():
    res = subprocess.run(
        [sys.executable, "-m", "components.automation", "preview", "--no-checkpoints", "dev"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2 and "--no-checkpoints is for up" in res.stderr


def test_the_command_line_passes_the_opt_in_on(tmp_path, monkeypatch):
    """`ksecrets up --no-checkpoints` starts the Automation layer with it (nothing under ksecrets/
    imports Pulumi)."""
    seen = {}

    def fake_run(argv, cwd):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 0)

    (tmp_path / "Pulumi.yaml").write_text("name: k8s-secrets\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    monkeypatch.setattr(subprocess, "run", fake_run)
    from ksecrets.cli import main

    assert main(["up", "--stack", "dev", "--no-checkpoints", "--root", str(tmp_path)]) == 0
    assert seen["argv"][2:] == [
        "components.automation",
        "up",
        "--parallel",
        "2",
        "--no-checkpoints",
        "--root",
        str(tmp_path),
        "dev",
    ]


def test_locks_of_a_file_backend_are_found(tmp_path: Path):
    lock = tmp_path / ".pulumi" / "locks" / "organization" / "k8s-secrets" / "dev" / "x.json"
    lock.parent.mkdir(parents=True)
    lock.write_text("{}")
    assert recovery._lock_files(f"file://{tmp_path}?metadata=skip", "k8s-secrets", "dev") == [lock]
    assert recovery._lock_files(f"file://{tmp_path}", "k8s-secrets", "prod") == []


def test_the_engines_export_and_import_keep_secrets_ciphertext(tmp_path, monkeypatch):
    """The Automation API's `export_stack` runs `stack export --show-secrets` and its `import_stack`
    writes that plaintext to a temp file: the recovery's export asks for no secret and its import
    reads stdin. A stand-in `pulumi` records every command it is given."""
    seen = tmp_path / "seen.jsonl"
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[1:]\n"
        "stdin = sys.stdin.read() if args[:2] == ['stack', 'import'] else ''\n"
        f"open({str(seen)!r}, 'a').write(json.dumps({{'args': args, 'stdin': stdin}}) + '\\n')\n"
        "if args[:1] == ['version']:\n    print('v3.274.0')\n"
        "elif args[:2] == ['stack', 'export']:\n"
        "    print(json.dumps({'version': 3, 'deployment': {'resources': [{'urn': 'u', 'outputs': "
        "{'data': {'4dabf18193072939515e22adb298388d': '1b47061264138c4ac30d75fd1eb44270', 'ciphertext': 'v1:abc'}}}]}}))\n"
    )
    fake.chmod(0o755)
    (tmp_path / "Pulumi.yaml").write_text("name: k8s-secrets\nruntime: python\n")
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    engine = recovery.Engine(tmp_path, "dev", {}, lambda line: None)
    doc = engine.export()
    engine.import_(doc)
    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    export, imported = [c for c in calls if c["args"][:1] == ["stack"] and c["args"][1] in ("export", "import")]
    assert export["args"] == ["stack", "export", "--stack", "dev", "--non-interactive"]
    assert imported["args"] == ["stack", "import", "--stack", "dev", "--non-interactive"]
    assert json.loads(imported["stdin"]) == doc and "v1:abc" in imported["stdin"]
    assert not [c for c in calls if "--show-secrets" in c["args"] or "--file" in c["args"]], calls


class _FakeEngine:
    """The engine's side of `run_up`, recorded: which commands ran, in which order."""

    calls: list[str] = []
    fail_up = False

    def __init__(self, root, stack, env, output):
        self.output = output

    project = "k8s-secrets"

    def backend_url(self) -> str:
        return f"file://{self.root}?metadata=skip"

    def up(self) -> dict[str, int]:
        marker = _FakeEngine.marker
        _FakeEngine.calls.append(f"up (marker {'there' if marker.is_file() else 'missing'})")
        if _FakeEngine.fail_up:
            raise RuntimeError("the engine failed")
        return {"same": 1}


def test_the_marker_is_written_before_the_up_and_removed_only_after_it_succeeds(tmp_path, monkeypatch):
    _FakeEngine.root = tmp_path
    _FakeEngine.marker = tmp_path / ".ksecrets-runs" / "k8s-secrets" / "dev.json"
    _FakeEngine.calls = []
    recovered = []
    monkeypatch.setattr(recovery, "Engine", _FakeEngine)
    monkeypatch.setattr(recovery, "recover", lambda engine, marker, env: recovered.append(marker) or ["recovery: x"])
    lines: list[str] = []
    # A clean run: the marker exists while the up runs, and is gone after it.
    assert recovery.run_up(tmp_path, "dev", {}, lines.append) == {"same": 1}
    assert _FakeEngine.calls == ["up (marker there)"] and not _FakeEngine.marker.exists() and recovered == []
    # A run that fails (or is killed) keeps it; the next run recovers first, then removes it.
    _FakeEngine.fail_up = True
    with pytest.raises(RuntimeError):
        recovery.run_up(tmp_path, "dev", {}, lines.append)
    started = read_marker(_FakeEngine.marker)
    assert started is not None and recovered == []
    _FakeEngine.fail_up = False
    recovery.run_up(tmp_path, "dev", {}, lines.append)
    assert recovered == [started] and not _FakeEngine.marker.exists()
    assert "recovery: x\n" in lines and any("did not finish" in line for line in lines)
    # A locked stack (a killed run's lock file) is refused before anything runs.
    lock = tmp_path / ".pulumi" / "locks" / "organization" / "k8s-secrets" / "dev" / "l.json"
    lock.parent.mkdir(parents=True)
    lock.write_text("{}")
    _FakeEngine.calls = []
    with pytest.raises(RecoveryError, match="is locked"):
        recovery.run_up(tmp_path, "dev", {}, lines.append)
    assert _FakeEngine.calls == [] and not _FakeEngine.marker.exists()

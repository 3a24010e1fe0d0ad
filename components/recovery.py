"""`ksecrets up --no-checkpoints`: a fast `pulumi up` that a crash cannot leave with orphans.

With `PULUMI_SKIP_CHECKPOINTS=true` the engine writes the state once, at the end: an `up` killed
on the way (a runner that dies) leaves the state as it was before the run, and the objects the run
created are on the cluster but in no state (README "Pulumi at a thousand apps"). Every object this
program registers is applied under one fixed field manager per stack
(`pulumi-k8s-secrets-<stack>`, components/kube.py), so those objects can be found on the cluster.

The protocol (`run_up`):
1. Before the run, a *run marker* is written for the stack (`Marker`: stack, project, field
   manager, start time, host and pid; no config and no value). It is removed only when an `up`
   of the stack ends with success.
2. When a marker is found (a run with skipped checkpoints did not finish), the next
   `ksecrets up --no-checkpoints` first recovers (`recover`):
   - it lists every object of the kinds the stack may hold (`kinds_to_list`: the state's, the
     program's and every kind the builders can make) through `kubectl get --raw`, and keeps those
     whose managedFields name the stack's manager, written since the marker's start (less a
     margin for clock skew), and that the state does not hold: the orphans (`orphans`);
   - it previews the current program (skipped checkpoints, `--json`) to learn the URN, type,
     parent, provider and inputs of each planned create (`planned_steps`);
   - it writes a new state (`adopt`): each orphan that the program still declares becomes the
     resource the program would have created (its URN, parent, provider; its inputs without any
     secret, which the preview shows as `[secret]`; the parent components, the stack and the
     Kubernetes provider fabricated first from their planned creates when the state has none);
     each orphan the program no longer declares becomes a resource under the stack, of the stack's
     provider, which the program does not register: the next `up` deletes it, as the killed run's
     next `up` would have;
   - `pulumi stack import` (the engine checks the state's integrity; ciphertext stays ciphertext),
     then `pulumi refresh` (skipped checkpoints): each adopted object gets its live state.
3. Then the `up`, with skipped checkpoints; the marker goes when it succeeds.

Each step is idempotent: a recovery or an `up` killed again leaves the marker, and the next run
recovers again (an object adopted by an import that finished is in the state, no orphan). The
stack's lock is not broken here: a killed run keeps the stack locked, and `pulumi cancel` (after
making sure no run is in progress) is the user's decision, as the README says.

Where the marker lives: beside the state of a file backend (`<dir>/.ksecrets-runs/<project>/`),
or in `KSECRETS_RUN_MARKERS` (a directory that outlives the runner); with any other backend and no
`KSECRETS_RUN_MARKERS`, `--no-checkpoints` is refused.

The pure parts (marker, orphan matching, the state edit) are tested without the engine
(tests/components/test_recovery.py); the protocol on the real engine in
tests/e2e/test_pulumi_crash.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import unquote, urlparse

# (group, kind, namespace, name): an object's identity, whatever its API version.
Key = tuple[str, str, str, str]

SECRET_SHOWN = "[secret]"  # what `pulumi preview --json` shows for a secret value
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown value / ID during a preview
STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_TYPE = "pulumi:providers:kubernetes"
CLOCK_SKEW = dt.timedelta(minutes=10)
MARKERS_ENV = "KSECRETS_RUN_MARKERS"
KUBECTL_ENV = "KSECRETS_KUBECTL"

# Every kind the builders can make (ksecrets/manifests; tests/components/test_recovery.py fails when
# a builder makes one that is missing). The state's and the program's kinds are listed too.
REGISTRABLE: tuple[tuple[str, str], ...] = (
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("bitnami.com/v1alpha1", "SealedSecret"),
    ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("secrets.hashicorp.com/v1beta1", "VaultAuth"),
    ("secrets.hashicorp.com/v1beta1", "VaultConnection"),
    ("secrets.hashicorp.com/v1beta1", "VaultStaticSecret"),
    ("secrets.hashicorp.com/v1beta1", "VaultDynamicSecret"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
)


class RecoveryError(Exception):
    """One line: why the recovery cannot go on (nothing was written to the state)."""


# ---- the marker ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    stack: str
    project: str
    manager: str
    started: str  # UTC, ISO 8601
    host: str
    pid: int

    @classmethod
    def new(cls, stack: str, project: str, manager: str, now: dt.datetime | None = None) -> "Marker":
        now = now or dt.datetime.now(dt.timezone.utc)
        return cls(stack, project, manager, now.isoformat(timespec="seconds"), socket.gethostname(), os.getpid())

    @property
    def since(self) -> dt.datetime:
        """Objects written from this time on may be the killed run's (less the clock skew margin)."""
        return dt.datetime.fromisoformat(self.started) - CLOCK_SKEW


def marker_dir(backend_url: str, env: Mapping[str, str]) -> Path:
    """Where the stacks' run markers live: `KSECRETS_RUN_MARKERS`, else beside a file backend's state."""
    if env.get(MARKERS_ENV):
        return Path(env[MARKERS_ENV]).expanduser()
    state = file_backend_dir(backend_url)
    if state is not None:
        return state / ".ksecrets-runs"
    raise RecoveryError(
        f"--no-checkpoints needs a place for its run marker that outlives this runner: the backend "
        f"{urlparse(backend_url).scheme or backend_url}:// has none here; set {MARKERS_ENV} to a durable directory"
    )


def file_backend_dir(backend_url: str) -> Path | None:
    """The folder of a file backend (`file://<dir>[?query]`, `file://~/<dir>`), None for any other."""
    parsed = urlparse(backend_url)
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.netloc + parsed.path) if parsed.netloc not in ("", "localhost") else unquote(parsed.path)
    return Path(path).expanduser()


def marker_path(directory: Path, project: str, stack: str) -> Path:
    return directory / project / f"{stack}.json"


def write_marker(path: Path, marker: Marker) -> None:
    """Atomically (temp file, rename): a kill leaves the old marker or the new, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(marker), indent=2) + "\n")
    os.replace(tmp, path)


def read_marker(path: Path) -> Marker | None:
    try:
        data = json.loads(path.read_text())
        return Marker(**{k: data[k] for k in Marker.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise RecoveryError(f"{path}: not a run marker ({exc}); remove it only if no run was killed") from None


# ---- keys, types and paths ------------------------------------------------------------------------
def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def type_token(api_version: str, kind: str) -> str:
    """The pulumi-kubernetes type of an object (`kubernetes:apps/v1:Deployment`, core: `core/v1`)."""
    group, version = split_api_version(api_version)
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


def api_of_type(token: str) -> tuple[str, str] | None:
    """(apiVersion, kind) of a pulumi-kubernetes custom resource type, None for anything else."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    group, version = parts[1].rsplit("/", 1)
    if group in ("helm.sh", "yaml", "kustomize") or not parts[2][:1].isupper():
        return None  # component resources of the provider (Chart, ConfigFile...), not objects
    return (version if group == "core" else f"{group}/{version}"), parts[2]


def key_of(api_version: str, kind: str, namespace: str | None, name: str) -> Key:
    return (split_api_version(api_version)[0], kind, namespace or "", name)


def key_of_object(obj: Mapping[str, Any]) -> Key:
    md = obj["metadata"]
    return key_of(obj["apiVersion"], obj["kind"], md.get("namespace"), md["name"])


def key_of_resource(resource: Mapping[str, Any]) -> Key | None:
    """The object a state resource (or a planned step's state) stands for, by type and ID (or, for
    a planned create that has none yet, its inputs' metadata)."""
    api = api_of_type(str(resource.get("type", "")))
    if api is None or not resource.get("custom"):
        return None
    rid = resource.get("id")
    if isinstance(rid, str) and rid and rid != UNKNOWN:
        namespace, _, name = rid.rpartition("/")
        return key_of(api[0], api[1], namespace, name)
    meta = (resource.get("inputs") or {}).get("metadata") or {}
    if isinstance(meta.get("name"), str) and meta["name"] and meta["name"] != UNKNOWN:
        return key_of(api[0], api[1], meta.get("namespace"), meta["name"])
    return None


def plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"


def list_path(api_version: str, kind: str) -> str:
    group, version = split_api_version(api_version)
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/{plural(kind)}"


def kinds_to_list(deployment: Mapping[str, Any], steps: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every (apiVersion, kind) the stack may have written: the builders', the state's, the program's."""
    kinds = dict.fromkeys(REGISTRABLE)
    states = [r for r in deployment.get("resources") or []]
    states += [s.get("newState") or {} for s in steps] + [s.get("oldState") or {} for s in steps]
    for r in states:
        api = api_of_type(str(r.get("type", "")))
        if api is not None and r.get("custom"):
            kinds.setdefault(api)
    return list(kinds)


# ---- orphans ------------------------------------------------------------------------------------
def state_keys(deployment: Mapping[str, Any]) -> set[Key]:
    keys = set()
    for r in deployment.get("resources") or []:
        if r.get("external"):
            continue
        key = key_of_resource(r)
        if key is not None:
            keys.add(key)
    return keys


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def written_by(obj: Mapping[str, Any], manager: str, since: dt.datetime) -> bool:
    """True when `manager` owns fields of `obj` and last wrote them at `since` or later."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager:
            at = _time(entry.get("time"))
            if at is None or at >= since:
                return True
    return False


def orphans(
    objects: Iterable[Mapping[str, Any]], held: set[Key], manager: str, since: dt.datetime
) -> list[dict[str, Any]]:
    """The objects the killed run left behind: written by the stack's manager since the run began,
    held by no resource of the state. Sorted by key; objects being deleted are left out."""
    found = {}
    for obj in objects:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        key = key_of_object(obj)
        if key not in held and written_by(obj, manager, since):
            found[key] = dict(obj)
    return [found[k] for k in sorted(found)]


# ---- the preview ------------------------------------------------------------------------------
def preview_document(stdout: str) -> dict[str, Any]:
    """The JSON document of `pulumi preview --json` (warnings may come before it)."""
    start = stdout.find("{")
    if start < 0:
        raise RecoveryError("the preview printed no JSON document")
    try:
        doc, _ = json.JSONDecoder().raw_decode(stdout[start:])
    except ValueError as exc:
        raise RecoveryError(f"the preview's JSON is not readable ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise RecoveryError("the preview's JSON is not an object")
    return doc


def planned_steps(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The preview's steps in order, each with op, urn, provider and newState."""
    steps = doc.get("steps")
    if not isinstance(steps, list):
        raise RecoveryError("the preview's JSON has no steps")
    return [s for s in steps if isinstance(s, dict) and s.get("urn")]


def without_secrets(value: Any) -> Any:
    """Inputs as a preview shows them, less every value it hides (`[secret]`) or does not know yet."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not _hidden(v)}
    if isinstance(value, list):
        return [without_secrets(v) for v in value if not _hidden(v)]
    return value


def _hidden(value: Any) -> bool:
    return value in (SECRET_SHOWN, UNKNOWN)


# ---- the state edit ---------------------------------------------------------------------------
@dataclass
class Adoption:
    deployment: dict[str, Any]
    declared: list[str]  # URNs of orphans the program declares, adopted as its resources
    undeclared: list[str]  # URNs of orphans it no longer declares: the next `up` deletes them
    fabricated: list[str]  # URNs of the stack, components and provider made from the preview


def _stack_and_project(urn: str) -> tuple[str, str]:
    parts = urn.split("::")
    return parts[0].removeprefix("urn:pulumi:"), parts[1]


def adopt(
    deployment: Mapping[str, Any],
    found: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    manager: str,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Adoption:
    """The state with each orphan a resource (see the module's docstring). Resources are appended
    after the existing ones, each after its parent, provider and dependencies (the order `pulumi
    stack import` checks)."""
    state = copy.deepcopy(dict(deployment))
    resources: list[dict[str, Any]] = list(state.get("resources") or [])
    present = {r["urn"]: r for r in resources if r.get("urn")}
    by_urn = {s["urn"]: s for s in steps}
    creates = {}
    for s in steps:
        new = s.get("newState") or {}
        key = key_of_resource(new) if s.get("op") == "create" else None
        if key is not None:
            creates[key] = s
    providers: dict[str, str] = {}  # provider URN -> reference `urn::id` in the new state
    for r in resources:
        if r.get("type", "").startswith("pulumi:providers:") and r.get("id"):
            providers[r["urn"]] = f"{r['urn']}::{r['id']}"
    fabricated: list[str] = []

    def ensure(urn: str) -> None:
        """A component, the stack or a provider the state lacks, from its planned create."""
        if not urn or urn in present:
            return
        step = by_urn.get(urn)
        new = (step or {}).get("newState") or {}
        if step is None or step.get("op") != "create":
            raise RecoveryError(f"{urn}: needed as a parent or provider, in neither the state nor the plan")
        parent = new.get("parent") or ""
        ensure(parent)
        resource: dict[str, Any] = {"urn": urn, "custom": bool(new.get("custom")), "type": new.get("type", "")}
        if parent:
            resource["parent"] = parent
        if resource["type"].startswith("pulumi:providers:"):
            inputs = new.get("inputs") or {}
            if without_secrets(inputs) != inputs:
                raise RecoveryError(
                    f"{urn}: the provider has a secret or unknown input; recover it with checkpoints "
                    "(`ksecrets up` without --no-checkpoints after the README's recovery)"
                )
            rid = new_id()
            resource.update({"id": rid, "inputs": inputs, "outputs": dict(inputs)})
            providers[urn] = f"{urn}::{rid}"
        elif resource["custom"]:
            raise RecoveryError(f"{urn}: a custom resource needed as a parent is not in the state")
        resources.append(resource)
        present[urn] = resource
        fabricated.append(urn)

    def provider_ref(ref: str) -> str:
        urn = ref.rsplit("::", 1)[0]  # a reference is `<provider urn>::<id>`
        ensure(urn)
        if urn not in providers:
            raise RecoveryError(f"{urn}: a provider without an ID in the state")
        return providers[urn]

    declared, undeclared = [], []
    stack_urn = next((s["urn"] for s in steps if (s.get("newState") or {}).get("type") == STACK_TYPE), "")
    stack_urn = stack_urn or next((r["urn"] for r in resources if r.get("type") == STACK_TYPE), "")
    k8s_provider = _program_provider(steps, resources)
    adopted: list[tuple[Key, dict[str, Any]]] = []
    for obj in found:
        key = key_of_object(obj)
        step = creates.get(key)
        if step is not None:
            adopted.append((key, step))
    order = {s["urn"]: i for i, s in enumerate(steps)}
    for _, step in sorted(adopted, key=lambda a: order[a[1]["urn"]]):
        new = step["newState"]
        ensure(new.get("parent") or "")
        inputs = without_secrets(new.get("inputs") or {})
        resource = {
            "urn": step["urn"],
            "custom": True,
            "id": _object_id(inputs),
            "type": new["type"],
            "inputs": inputs,
            "outputs": {},
            "parent": new.get("parent") or stack_urn,
            "provider": provider_ref(new.get("provider") or step.get("provider") or ""),
            "dependencies": [d for d in new.get("dependencies") or [] if d in present],
        }
        for opt in ("additionalSecretOutputs", "customTimeouts"):
            if new.get(opt):
                resource[opt] = new[opt]
        resources.append(resource)
        present[resource["urn"]] = resource
        declared.append(resource["urn"])
    declared_keys = {k for k, _ in adopted}
    for obj in found:
        key = key_of_object(obj)
        if key in declared_keys:
            continue
        if not k8s_provider or not stack_urn:
            raise RecoveryError("no Kubernetes provider or stack in the state or the plan to delete orphans with")
        ensure(stack_urn)
        stack, project = _stack_and_project(stack_urn)
        md = obj["metadata"]
        name = f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]
        token = type_token(obj["apiVersion"], obj["kind"])
        urn = f"urn:pulumi:{stack}::{project}::{token}::{name}"
        if urn in present:
            raise RecoveryError(f"{urn}: an orphan's URN is taken in the state")
        meta = {"name": md["name"], "annotations": {"pulumi.com/patchFieldManager": manager}}
        if md.get("namespace"):
            meta["namespace"] = md["namespace"]
        resource = {
            "urn": urn,
            "custom": True,
            "id": name,
            "type": token,
            "inputs": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta},
            "outputs": {},
            "parent": stack_urn,
            "provider": provider_ref(k8s_provider),
        }
        resources.append(resource)
        present[urn] = resource
        undeclared.append(urn)
    state["resources"] = resources
    return Adoption(state, declared, undeclared, fabricated)


def _object_id(inputs: Mapping[str, Any]) -> str:
    meta = inputs.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _program_provider(steps: list[dict[str, Any]], resources: list[dict[str, Any]]) -> str:
    """The Kubernetes provider the program's objects use (a reference `urn::id`, or a URN)."""
    for s in steps:
        new = s.get("newState") or {}
        if api_of_type(str(new.get("type", ""))) and new.get("custom") and new.get("provider"):
            return str(new["provider"])
    for r in resources:
        if api_of_type(str(r.get("type", ""))) and r.get("provider"):
            return str(r["provider"])
    return ""


# ---- the cluster --------------------------------------------------------------------------------
def kubectl_argv(context: str, kubeconfig: str | None, env: Mapping[str, str]) -> list[str]:
    kubectl = env.get(KUBECTL_ENV) or shutil.which("kubectl", path=env.get("PATH")) or ""
    if not kubectl:
        raise RecoveryError(f"kubectl not found on PATH (or {KUBECTL_ENV}): the recovery lists the cluster with it")
    argv = [kubectl, "--context", context]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    return argv


def list_objects(argv: list[str], kinds: Iterable[tuple[str, str]], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every object of `kinds` cluster-wide, as apiVersion, kind and metadata (managedFields
    included; nothing else is kept). A kind the server does not serve, a CRD not installed, is skipped."""
    out: list[dict[str, Any]] = []
    for api_version, kind in kinds:
        path, token = list_path(api_version, kind), ""
        while True:
            query = f"?limit=500&continue={token}" if token else "?limit=500"
            res = subprocess.run(
                [*argv, "get", "--raw", path + query], capture_output=True, text=True, env=dict(env), timeout=300
            )
            if res.returncode != 0:
                if "NotFound" in res.stderr or "could not find the requested resource" in res.stderr:
                    break
                line = (res.stderr.strip().splitlines() or ["no output"])[-1][:300]
                raise RecoveryError(f"kubectl get --raw {path}: {line}")
            page = json.loads(res.stdout)
            for item in page.get("items") or []:
                # Only the identity and managedFields are kept: a Secret's data is dropped here.
                out.append({"apiVersion": api_version, "kind": kind, "metadata": item.get("metadata") or {}})
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
    return out


# ---- the protocol on the engine -----------------------------------------------------------------
def _lock_files(backend_url: str, project: str, stack: str) -> list[Path]:
    """A file backend's lock files of the stack (a killed run's stays until `pulumi cancel`)."""
    state = file_backend_dir(backend_url)
    if state is None:
        return []
    root = state / ".pulumi" / "locks"
    return sorted(p for p in root.rglob("*.json") if p.parent.name == stack and p.parent.parent.name == project)


class Engine:
    """The few engine commands of the protocol, for one stack: the Automation API where it keeps
    secrets ciphertext, the CLI where it does not (its `export_stack` asks for `--show-secrets`, its
    `import_stack` writes that plaintext to a temp file: here the export stays ciphertext and the
    import reads stdin)."""

    def __init__(self, root: Path, stack: str, env: Mapping[str, str], output: Callable[[str], None]):
        from pulumi import automation as auto

        self.auto = auto
        self.env = {**env, "PULUMI_SKIP_CHECKPOINTS": "true"}
        self.workspace = auto.LocalWorkspace(work_dir=str(root), env_vars=self.env)
        self.stack = auto.Stack.select(stack, self.workspace)
        self.name = stack
        self.output = output

    @property
    def project(self) -> str:
        return self.workspace.project_settings().name

    def backend_url(self) -> str:
        return self.workspace.who_am_i().url or ""

    def _cli(self, *args: str, stdin: str | None = None) -> str:
        command = self.workspace.pulumi_command.command
        env = {**os.environ, **self.env}
        if self.workspace.pulumi_home:
            env["PULUMI_HOME"] = self.workspace.pulumi_home
        res = subprocess.run(
            [command, *args, "--stack", self.name, "--non-interactive"],
            cwd=self.workspace.work_dir,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
            raise RecoveryError(
                f"pulumi {args[0]} {args[1] if len(args) > 1 else ''}: {(lines or ['failed'])[-1][:300]}"
            )
        return res.stdout

    def export(self) -> dict[str, Any]:
        doc = json.loads(self._cli("stack", "export"))  # secrets stay ciphertext (no --show-secrets)
        if not isinstance(doc, dict) or not isinstance(doc.get("deployment"), dict):
            raise RecoveryError("`pulumi stack export` printed no deployment")
        return doc

    def import_(self, doc: Mapping[str, Any]) -> None:
        self._cli("stack", "import", stdin=json.dumps(doc))  # from stdin: no temp file

    def config(self, key: str) -> tuple[str, bool] | None:
        try:
            value = self.stack.get_config(key)
        except self.auto.CommandError:
            return None
        return value.value, bool(value.secret)

    def preview_json(self) -> dict[str, Any]:
        result = self.stack.preview(json=True, diff=False, color="never")
        return preview_document(result.stdout)

    def refresh(self) -> None:
        self.stack.refresh(on_output=self.output, color="never", show_secrets=False)

    def up(self) -> dict[str, int]:
        up = self.stack.up(on_output=self.output, color="never", show_secrets=False)
        return {str(k): int(v) for k, v in (up.summary.resource_changes or {}).items()}


def recover(engine: Engine, marker: Marker, env: Mapping[str, str]) -> list[str]:
    """Adopt the killed run's orphans into the state, then refresh (see the module's docstring).
    Returns what it did, one line each."""
    export = engine.export()
    deployment = export["deployment"]
    steps = planned_steps(engine.preview_json())
    context = engine.config("kubernetes:context")
    kubeconfig = engine.config("kubernetes:kubeconfig")
    if context is None:
        raise RecoveryError("the stack has no kubernetes:context: the recovery cannot tell which cluster to list")
    if kubeconfig is not None and (kubeconfig[1] or not Path(kubeconfig[0]).expanduser().is_file()):
        raise RecoveryError("kubernetes:kubeconfig is not a file path: the recovery lists the cluster with kubectl")
    argv = kubectl_argv(context[0], kubeconfig[0] if kubeconfig else None, {**os.environ, **env})
    objects = list_objects(argv, kinds_to_list(deployment, steps), {**os.environ, **env})
    found = orphans(objects, state_keys(deployment), marker.manager, marker.since)
    adoption = adopt(deployment, found, steps, marker.manager)
    done = [
        f"recovery: {len(found)} orphan(s) of the unfinished run since {marker.started}: "
        f"{len(adoption.declared)} adopted, {len(adoption.undeclared)} to delete (no longer declared), "
        f"{len(adoption.fabricated)} parent/provider resource(s) made from the plan"
    ]
    if adoption.declared or adoption.undeclared or adoption.fabricated:
        engine.import_({**export, "deployment": adoption.deployment})
        done.append("recovery: state imported")
    engine.refresh()
    done.append("recovery: refreshed")
    return done


def run_up(root: Path, stack: str, env: Mapping[str, str], output: Callable[[str], None]) -> dict[str, int]:
    """`pulumi up` with skipped checkpoints, under a run marker, after recovering an unfinished one."""
    from components.kube import field_manager

    engine = Engine(root, stack, env, output)
    url = engine.backend_url()
    project = engine.project
    path = marker_path(marker_dir(url, {**os.environ, **env}), project, stack)
    locks = _lock_files(url, project, stack)
    if locks:
        raise RecoveryError(
            f"stack {stack} is locked ({locks[0]}): a run is in progress, or was killed; once none is, "
            f"`pulumi cancel --stack {stack}` (or delete the lock file), then run again"
        )
    marker = read_marker(path)
    if marker is None:
        write_marker(path, Marker.new(stack, project, field_manager(stack)))
    else:
        if marker.stack != stack or marker.project != project:
            raise RecoveryError(f"{path}: a marker of {marker.project}/{marker.stack}, not of {project}/{stack}")
        output(f"a run of {stack} with --no-checkpoints started {marker.started} on {marker.host} did not finish\n")
        for line in recover(engine, marker, env):
            output(line + "\n")
    changes = engine.up()
    path.unlink(missing_ok=True)
    return changes

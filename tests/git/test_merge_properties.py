"""Property: a merge of two branches keeps every value of both sides, or git reports a conflict.

Hypothesis generates a stack (one to three sealed Secrets in any scope, inline or in an included
file (`ksecrets stack split`), block or flow style, LF or CRLF, with or without labels and keyed
digests), commits it, makes one to three random edits on each of two branches with the project's
own commands (`ksecrets seal --stack` of new keys, changed values and new Secrets, a scope change,
`stack split`, labels and replicas through the stack-file editor every command uses), and merges
with real git and the drivers `ksecrets git setup` installed. Then either git reports a conflict
(and no traceback), or the merged stack loads and every value of both sides is there and decrypts
with its entry's label (the known-answer vectors' key pair), labels and replicas included.

Examples: `KSECRETS_MERGE_EXAMPLES` in all, split over two shards (two test items, so pytest-xdist
runs them on two workers at once). Default 20 (a local `make test`); CI (.github/workflows/ci.yml,
.ci/run) sets 50, the count before the suite was made faster: about three minutes of one core.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ksecrets.config import load_stack_file, stackfile
from ksecrets.sealing import crypto
from tests.git.test_drivers import ROOT, VECTORS, env

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

EXAMPLES = int(os.environ.get("KSECRETS_MERGE_EXAMPLES", "20"))
SHARDS = 2  # test items sharing EXAMPLES: each draws its own random examples
# KSECRETS_MERGE_CENSUS=1: count the kinds of loss (Hypothesis events) instead of stopping at the
# first; used once on the code before issue 18's fixes to see which findings the property finds.
CENSUS = os.environ.get("KSECRETS_MERGE_CENSUS") == "1"
STACK = "Pulumi.qa.yaml"
NS = "my-app"
NAMES = ("my-app-secrets", "aux-secrets", "third-secrets")
KEYS = ("API_KEY", "DATABASE_URL", "TOKEN", "PASSWORD")
SCOPES = ("strict", "namespace-wide", "cluster-wide")
SEAL_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # 32 bytes of key material, as churn requires
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./:@", min_size=1, max_size=16)


@dataclass
class Model:
    """What a branch holds: per Secret its scope, values and labels; the replicas; split or not."""

    entries: dict[str, dict] = field(default_factory=dict)  # name -> {"scope", "values", "labels"}
    split: bool = False
    replicas: int = 2
    interval: str = "10m"

    def copy(self) -> "Model":
        return Model(json.loads(json.dumps(self.entries)), self.split, self.replicas, self.interval)


# --- the repository and the project's commands ----------------------------------------------------


def git(repo: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not Path(p, "ksecrets").exists()
    )
    res = subprocess.run(["git", *argv], cwd=repo, capture_output=True, text=True, env=env(PATH=path))
    if check and res.returncode != 0:
        raise AssertionError(f"git {argv}: {res.stdout}{res.stderr}")
    return res


@contextlib.contextmanager
def inside(repo: Path, digests: bool):
    old = os.getcwd()
    saved = os.environ.pop("KSECRETS_SEAL_KEY", None)
    if digests:
        os.environ["KSECRETS_SEAL_KEY"] = SEAL_KEY
    os.chdir(repo)
    try:
        yield
    finally:
        os.chdir(old)
        os.environ.pop("KSECRETS_SEAL_KEY", None)
        if saved is not None:
            os.environ["KSECRETS_SEAL_KEY"] = saved


def ksecrets(*argv: str) -> None:
    """The command line, in process (the drivers git runs are real processes)."""
    from ksecrets.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, f"ksecrets {argv[:5]}: {err.getvalue()}"


def seal(name: str, values: dict[str, str], scope: str | None = None) -> None:
    args = [a for k, v in sorted(values.items()) for a in ("--from-literal", f"{k}={v}")]
    ksecrets("seal", "--stack", "qa", "--name", name, "--namespace", NS, *(["--scope", scope] if scope else []), *args)


def edit(mutate) -> None:
    stackfile.update_stack_file(Path(STACK), mutate)


def set_labels(name: str, labels: dict[str, str]) -> None:
    def mutate(config):
        (e,) = [e for e in config["k8s-secrets:sealed"] if e["name"] == name]
        e["labels"] = labels

    edit(mutate)


def set_replicas(n: int) -> None:
    edit(lambda config: config["k8s-secrets:apps"][0]["deployments"][0].__setitem__("replicas", n))


def to_flow_style() -> None:
    text = Path(STACK).read_text()
    at = text.index("  k8s-secrets:sealed:")
    sealed = yaml.safe_load(text[at:])["k8s-secrets:sealed"]
    flow = yaml.safe_dump(sealed, default_flow_style=True, width=120).strip().replace("\n", "\n    ")
    Path(STACK).write_text(text[:at] + "  k8s-secrets:sealed: " + flow + "\n")


def to_crlf() -> None:
    for p in [Path(STACK), *Path(".").glob("stacks/qa/*.yaml")]:
        p.write_bytes(p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


# --- the generated histories ----------------------------------------------------------------------


def draw_base(data) -> tuple[Model, dict]:
    model = Model()
    for name in data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True), label="secrets"):
        keys = data.draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True), label="keys")
        model.entries[name] = {
            "scope": data.draw(st.sampled_from(SCOPES), label="scope"),
            "values": {k: data.draw(VALUE, label="value") for k in keys},
            "labels": data.draw(st.sampled_from([None, {"team": "a"}]), label="labels"),
        }
    shape = {
        "split": data.draw(st.sampled_from([None, "sealed", "both"]), label="split"),
        "flow": data.draw(st.booleans(), label="flow"),
        "crlf": data.draw(st.booleans(), label="crlf"),
        "digests": data.draw(st.booleans(), label="digests"),
    }
    return model, shape


def draw_edit(data, model: Model, label: str) -> tuple:
    # replicas (in apps) and interval (flux, in the stack file whatever was split): edits beside the values
    kinds = ["new_key", "change_value", "new_secret", "scope", "labels", "replicas", "interval"]
    if not model.split:
        kinds.append("split")
    kind = data.draw(st.sampled_from(kinds), label=f"{label} edit")
    names = sorted(model.entries)
    if kind == "new_key":
        name = data.draw(st.sampled_from(names))
        free = [k for k in KEYS if k not in model.entries[name]["values"]] or list(KEYS)
        return ("seal", name, {data.draw(st.sampled_from(free)): data.draw(VALUE)})
    if kind == "change_value":
        name = data.draw(st.sampled_from(names))
        return ("seal", name, {data.draw(st.sampled_from(sorted(model.entries[name]["values"]))): data.draw(VALUE)})
    if kind == "new_secret":
        free = [n for n in NAMES if n not in model.entries]
        if not free:
            return ("replicas", data.draw(st.integers(1, 5)))
        return (
            "new",
            free[0],
            data.draw(st.sampled_from(SCOPES)),
            {data.draw(st.sampled_from(KEYS)): data.draw(VALUE)},
        )
    if kind == "scope":
        name = data.draw(st.sampled_from(names))
        return ("scope", name, data.draw(st.sampled_from([s for s in SCOPES if s != model.entries[name]["scope"]])))
    if kind == "labels":
        return ("labels", data.draw(st.sampled_from(names)), {"team": data.draw(st.sampled_from(["a", "b", "c"]))})
    if kind == "replicas":
        return ("replicas", data.draw(st.integers(1, 5)))
    if kind == "interval":
        return ("interval", f"{data.draw(st.integers(1, 9))}m")
    return ("split", data.draw(st.sampled_from([("--key", "sealed"), ("--key", "sealed"), ()])))


def apply(op: tuple, model: Model) -> None:
    """Run one edit with the project's commands (cwd: the repository) and update the model."""
    kind = op[0]
    if kind == "seal":
        _, name, values = op
        seal(name, values)
        model.entries[name]["values"].update(values)
    elif kind == "new":
        _, name, scope, values = op
        seal(name, values, scope)
        model.entries[name] = {"scope": scope, "values": dict(values), "labels": None}
    elif kind == "scope":
        _, name, scope = op
        seal(name, model.entries[name]["values"], scope)
        model.entries[name]["scope"] = scope
    elif kind == "labels":
        _, name, labels = op
        set_labels(name, labels)
        model.entries[name]["labels"] = labels
    elif kind == "replicas":
        set_replicas(op[1])
        model.replicas = op[1]
    elif kind == "interval":
        edit(lambda config: config["k8s-secrets:flux"].__setitem__("interval", op[1]))
        model.interval = op[1]
    elif kind == "split":
        ksecrets("stack", "split", "--stack", "qa", *op[1])
        model.split = True


# --- what a clean merge must hold -----------------------------------------------------------------


def three_way(base, a, b):
    """(merged, ok): ok False when both sides changed the same thing differently."""
    if a == b:
        return a, True
    if a == base:
        return b, True
    if b == base:
        return a, True
    return None, False


def expected(base: Model, a: Model, b: Model) -> dict | None:
    """The merged model a clean merge must equal, or None when only a conflict is right."""
    out: dict = {}
    if (
        not three_way(base.replicas, a.replicas, b.replicas)[1]
        or not three_way(base.interval, a.interval, b.interval)[1]
    ):
        return None
    for name in dict.fromkeys([*a.entries, *b.entries]):
        be, ae, bbe = (m.entries.get(name) for m in (base, a, b))
        scope, ok = three_way(*(e and e["scope"] for e in (be, ae, bbe)))
        if not ok:
            return None
        labels, ok = three_way(*(e and e["labels"] for e in (be, ae, bbe)))
        if not ok:
            return None
        values = {}
        for key in dict.fromkeys([*(ae or {}).get("values", {}), *(bbe or {}).get("values", {})]):
            v, ok = three_way(*((e or {}).get("values", {}).get(key) for e in (be, ae, bbe)))
            if not ok:
                return None
            values[key] = v
        # A value sealed on a side under another scope than the merged entry's cannot decrypt.
        for e in (ae, bbe):
            changed = [k for k, v in (e or {}).get("values", {}).items() if ((be or {}).get("values", {}).get(k) != v)]
            if e is not None and changed and e["scope"] != scope:
                return None
        out[name] = {"scope": scope, "values": values, "labels": labels}
    return out


def merged_entries(repo: Path) -> list[dict]:
    cfg = yaml.safe_load((repo / STACK).read_text())["config"]
    sealed = cfg["k8s-secrets:sealed"]
    return yaml.safe_load((repo / sealed).read_text()) if isinstance(sealed, str) else sealed


@pytest.fixture(scope="module")
def vector_key():
    from ksecrets.sealing.keys import parse_private_key_pem

    return parse_private_key_pem(json.loads(VECTORS.read_text())["private_key_pem"].encode(), "vectors")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A repository with the drivers installed and a stack without sealed values (copied per example)."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    (repo / "certs").mkdir(parents=True)
    (repo / "certs" / "qa.pem").write_text(json.loads(VECTORS.read_text())["certificate_pem"])
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    text = text[: text.index("  k8s-secrets:sealed:")]
    (repo / STACK).write_text(
        text.replace("            DATABASE_URL: DATABASE_URL\n", "").replace("          env:\n", "")
    )
    git(repo, "init", "-q", "-b", "main")
    with inside(repo, False):
        ksecrets("git", "setup")
    return repo


@pytest.mark.parametrize("shard", range(SHARDS))
@settings(
    max_examples=-(-EXAMPLES // SHARDS),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_merge_keeps_every_value_or_conflicts(shard, data, template, vector_key):
    base, shape = draw_base(data)
    with tempfile.TemporaryDirectory(prefix="ksecrets-merge-prop-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(template, repo, symlinks=True)
        with inside(repo, shape["digests"]):
            for name, e in base.entries.items():
                seal(name, e["values"], e["scope"])
                if e["labels"]:
                    set_labels(name, e["labels"])
            set_replicas(base.replicas)
            if shape["split"]:
                ksecrets(
                    "stack", "split", "--stack", "qa", *(["--key", "sealed"] if shape["split"] == "sealed" else [])
                )
                base.split = True
            elif shape["flow"]:
                to_flow_style()
            if shape["crlf"]:
                to_crlf()
            load_stack_file(Path(STACK))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "base")
        sides = {}
        for branch in ("a", "b"):
            model = base.copy()
            git(repo, "checkout", "-q", "-b", branch, "main")
            for _ in range(data.draw(st.integers(1, 3), label=f"{branch} edits")):
                op = draw_edit(data, model, branch)
                with inside(repo, shape["digests"]):
                    apply(op, model)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", branch)
            sides[branch] = model
        ours, theirs = data.draw(st.sampled_from([("a", "b"), ("b", "a")]), label="direction")
        git(repo, "checkout", "-q", ours)
        res = git(repo, "merge", "--no-edit", theirs, check=False)
        problem = check_merge(
            repo, res, expected(base, sides[ours], sides[theirs]), base, sides, ours, theirs, shape, vector_key
        )
        if problem is not None:
            event(f"LOSS: {problem[0]}")
            if not CENSUS:
                raise AssertionError(problem[1])


def check_merge(repo, res, want, base, sides, ours, theirs, shape, vector_key) -> tuple[str, str] | None:
    """None when the merge kept everything (or git reported a conflict); else (kind, detail)."""
    out = res.stdout + res.stderr
    if "Traceback" in out:
        return "traceback", out
    if res.returncode != 0:
        if "CONFLICT" not in out:
            return "stopped without a conflict", out
        event("conflict" + (" (expected)" if want is None else " (clean possible)"))
        return None
    if want is None:
        return "clean merge where a conflict was due", out
    event("clean merge")
    try:
        cfg = load_stack_file(repo / STACK)  # valid, includes resolved
    except Exception as exc:  # noqa: BLE001
        return "merged stack invalid", str(exc)
    replicas = three_way(base.replicas, sides[ours].replicas, sides[theirs].replicas)[0]
    if cfg.apps[0].deployments[0].replicas != replicas:
        return "replicas lost", out
    if cfg.flux.interval != three_way(base.interval, sides[ours].interval, sides[theirs].interval)[0]:
        return "flux interval lost", out
    if shape["crlf"]:
        data = (repo / STACK).read_bytes()
        if data.count(b"\r\n") != data.count(b"\n"):
            return "CRLF turned into LF", out
    try:
        entries = {e["name"]: e for e in merged_entries(repo)}
    except (KeyError, TypeError, OSError):
        return "sealed entries lost (k8s-secrets:sealed gone)", out
    if sorted(entries) != sorted(want):
        return "sealed entries lost", f"{sorted(entries)} != {sorted(want)}"
    for name, w in want.items():
        e = entries[name]
        if (e.get("scope") or "strict") != w["scope"]:
            return "scope lost", name
        if e.get("labels") != w["labels"]:
            return "labels lost", name
        label = crypto.label_for(w["scope"], NS, name)
        try:
            got = {k: crypto.decrypt_value([vector_key], v, label).decode() for k, v in e["encryptedData"].items()}
        except crypto.DecryptError:
            return "a value does not decrypt under its entry's label", name
        if got != w["values"]:
            return "values lost or wrong", f"{name}: {sorted(got)} != {sorted(w['values'])}"
    return None

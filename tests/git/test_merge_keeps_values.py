"""A merge keeps every value of both sides or stops (issue 18), with real git and the drivers
`ksecrets git setup` installs, git running from a PATH without ksecrets.

Each example is one of the issue's findings; `tests/git/test_merge_properties.py` generates them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ksecrets.config import load_stack_file
from ksecrets.config import stackfile
from ksecrets.sealing import crypto
from tests.conftest import ksecrets_in_process
from tests.git.test_drivers import BIN, LABEL, git, run, seal
from tests.git.test_drivers import repo as repo  # noqa: F401 (fixture)
from tests.git.test_drivers import vector_key as vector_key  # noqa: F401 (fixture)

STACK = "Pulumi.qa.yaml"
SEALED = "stacks/qa/sealed.yaml"


def entry(repo: Path) -> dict:
    cfg = yaml.safe_load((repo / STACK).read_text())["config"]
    sealed = cfg["k8s-secrets:sealed"]
    if isinstance(sealed, str):
        sealed = yaml.safe_load((repo / sealed).read_text())
    (e,) = [e for e in sealed if e["name"] == "my-app-secrets"]
    return e


def values(repo: Path, key, label: bytes = LABEL) -> dict[str, bytes]:
    return {k: crypto.decrypt_value([key], v, label) for k, v in entry(repo)["encryptedData"].items()}


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def on_branch(repo: Path, name: str, start: str = "main") -> None:
    git(repo, "checkout", "-q", "-b", name, start)


def merge(repo: Path, ours: str, theirs: str) -> subprocess.CompletedProcess:
    git(repo, "checkout", "-q", ours)
    res = git(repo, "merge", "--no-edit", theirs, check=False)
    assert "Traceback" not in res.stdout + res.stderr
    return res


def edit(repo: Path, mutate) -> None:
    """An edit through the project's one stack-file editor (comments, style, line endings kept)."""
    stackfile.update_stack_file(repo / STACK, mutate)


def sealed_entry(config) -> dict:
    sealed = config["k8s-secrets:sealed"]
    return next(e for e in sealed if e["name"] == "my-app-secrets")


def seal_scope(repo: Path, scope: str, *literals: str) -> None:
    args = [a for lit in literals for a in ("--from-literal", lit)]
    run(repo, "ksecrets", "seal", "--stack", "qa", "--name", "my-app-secrets", "--scope", scope, *args)


BASE = {"API_KEY": b"base-api-key-0001", "DATABASE_URL": b"postgres://base"}


def test_stack_split_on_one_branch_and_an_unrelated_edit_on_the_other_keep_the_file(repo, vector_key):
    on_branch(repo, "a")
    run(repo, "ksecrets", "stack", "split", "--stack", "qa")
    commit_all(repo, "split")
    on_branch(repo, "b")
    (repo / STACK).write_text((repo / STACK).read_text().replace("interval: 10m", "interval: 5m"))
    commit_all(repo, "flux interval")
    assert merge(repo, "a", "b").returncode == 0
    assert yaml.safe_load((repo / STACK).read_text())["config"]["k8s-secrets:sealed"] == SEALED
    assert values(repo, vector_key) == BASE
    assert load_stack_file(repo / STACK).flux.interval == "5m"
    # and the other way round
    assert merge(repo, "b", "a").returncode == 0
    assert values(repo, vector_key) == BASE


def test_stack_split_on_one_branch_and_a_key_sealed_inline_on_the_other_conflict(repo, vector_key):
    on_branch(repo, "a")
    run(repo, "ksecrets", "stack", "split", "--stack", "qa")
    commit_all(repo, "split")
    on_branch(repo, "b")
    seal(repo, "KEY_B=value-from-b-456")
    commit_all(repo, "seal b")
    res = merge(repo, "a", "b")
    assert res.returncode != 0
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("ksecrets:")]
    assert len(lines) == 1 and "ksecrets stack split" in lines[0] and "Ag" not in lines[0], lines
    assert git(repo, "status", "--porcelain", STACK).stdout.startswith("UU")


def test_labels_annotations_and_immutable_changed_on_one_branch_are_kept(repo, vector_key):
    on_branch(repo, "a")

    def mark(config):
        e = sealed_entry(config)
        e["labels"] = {"team": "payments"}
        e["annotations"] = {"example.com/owner": "alice"}
        e["immutable"] = True
        e["futureField"] = {"some": "thing"}  # a field the model may gain one day: merged all the same

    edit(repo, mark)
    commit_all(repo, "labels")
    on_branch(repo, "b")
    seal(repo, "KEY_B=value-from-b-456")
    commit_all(repo, "seal b")
    for ours, theirs in (("a", "b"), ("b", "a")):
        assert merge(repo, ours, theirs).returncode == 0
        e = entry(repo)
        assert e["labels"] == {"team": "payments"}
        assert e["annotations"] == {"example.com/owner": "alice"}
        assert e["immutable"] is True and e["futureField"] == {"some": "thing"}
        assert values(repo, vector_key) == {**BASE, "KEY_B": b"value-from-b-456"}
        git(repo, "reset", "-q", "--hard", "HEAD~1")


def test_labels_changed_differently_on_both_branches_conflict(repo):
    for name, team in (("a", "payments"), ("b", "billing")):
        on_branch(repo, name)
        edit(repo, lambda config, team=team: sealed_entry(config).__setitem__("labels", {"team": team}))
        commit_all(repo, name)
    res = merge(repo, "a", "b")
    assert res.returncode != 0 and "labels: team changed on both branches" in res.stderr


def test_a_crlf_stack_file_stays_crlf(repo, vector_key):
    text = (repo / STACK).read_bytes()
    (repo / STACK).write_bytes(text.replace(b"\n", b"\r\n"))
    commit_all(repo, "crlf")
    on_branch(repo, "a")
    seal(repo, "KEY_A=value-from-a-123")
    commit_all(repo, "a")
    on_branch(repo, "b")
    seal(repo, "KEY_B=value-from-b-456")
    (repo / STACK).write_bytes((repo / STACK).read_bytes().replace(b"replicas: 2", b"replicas: 3"))
    commit_all(repo, "b")
    assert merge(repo, "a", "b").returncode == 0
    data = (repo / STACK).read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 10
    assert values(repo, vector_key) == {**BASE, "KEY_A": b"value-from-a-123", "KEY_B": b"value-from-b-456"}


def to_flow_style(repo: Path) -> None:
    """The sealed block written in YAML flow style (a valid stack file: the loader accepts it)."""
    text = (repo / STACK).read_text()
    head, block = text[: text.index("  k8s-secrets:sealed:")], text[text.index("  k8s-secrets:sealed:") :]
    sealed = yaml.safe_load(block)["k8s-secrets:sealed"]
    flow = yaml.safe_dump(sealed, default_flow_style=True, width=100)
    (repo / STACK).write_text(head + "  k8s-secrets:sealed: " + flow.replace("\n", "\n    ").rstrip() + "\n")
    load_stack_file(repo / STACK)


def test_a_sealed_block_in_flow_style_merges(repo, vector_key):
    to_flow_style(repo)
    commit_all(repo, "flow")
    assert "{" in (repo / STACK).read_text().split("k8s-secrets:sealed:", 1)[1]
    on_branch(repo, "a")
    seal(repo, "KEY_A=value-from-a-123")
    commit_all(repo, "a")
    on_branch(repo, "b")
    seal(repo, "KEY_B=value-from-b-456")
    commit_all(repo, "b")
    res = merge(repo, "a", "b")
    assert res.returncode == 0, res.stderr
    load_stack_file(repo / STACK)
    assert values(repo, vector_key) == {**BASE, "KEY_A": b"value-from-a-123", "KEY_B": b"value-from-b-456"}


def test_a_sealed_block_in_flow_style_over_several_lines_merges_with_other_edits(repo, vector_key):
    to_flow_style(repo)
    commit_all(repo, "flow")
    block = (repo / STACK).read_text().split("k8s-secrets:sealed:", 1)[1]
    assert block.lstrip().startswith("[{") and block.count("\n") >= 2  # several lines of one flow node
    for name, old, new in (("a", "interval: 10m", "interval: 5m"), ("b", "replicas: 2", "replicas: 3")):
        on_branch(repo, name)
        (repo / STACK).write_text((repo / STACK).read_text().replace(old, new))
        commit_all(repo, name)
    res = merge(repo, "a", "b")
    assert res.returncode == 0, res.stderr
    cfg = load_stack_file(repo / STACK)
    assert (cfg.flux.interval, cfg.apps[0].deployments[0].replicas) == ("5m", 3)
    assert values(repo, vector_key) == BASE


def test_flow_style_sealed_blocks_merge_as_data():
    """Without git: every flow shape of the block, three sides each adding a key."""
    from ksecrets.gitdriver import merge_texts

    c = {k: f"Ag{k}" + k * 400 for k in "ABC"}
    head, tail = "config:\n  k8s-secrets:backend: sealed-secrets\n", "  k8s-secrets:monitoring:\n    enabled: false\n"

    def shapes(data: dict) -> dict[str, str]:
        entries = [{"name": "s", "namespace": "ns", "scope": "strict", "encryptedData": data}]
        flow = lambda v, w: yaml.safe_dump(v, default_flow_style=True, width=w).strip()  # noqa: E731
        return {
            "one line": f"{head}  k8s-secrets:sealed: {flow(entries, 1 << 16)}\n{tail}",
            "several lines": f"{head}  k8s-secrets:sealed: " + flow(entries, 60).replace("\n", "\n    ") + f"\n{tail}",
            "lines at column 0": f"{head}  k8s-secrets:sealed: {flow(entries, 60)}\n{tail}",
            "block of flow maps": f"{head}  k8s-secrets:sealed:\n"
            + "".join(f"    - {flow(e, 1 << 16)}\n" for e in entries)
            + tail,
        }

    b, o, t = shapes({"A": c["A"]}), shapes({"A": c["A"], "B": c["B"]}), shapes({"A": c["A"], "C": c["C"]})
    for shape in b:
        text, conflicts = merge_texts(b[shape], o[shape], t[shape], "Pulumi.qa.yaml")
        assert conflicts == [], shape
        (e,) = yaml.safe_load(text)["config"]["k8s-secrets:sealed"]
        assert e["encryptedData"] == c, shape
        assert yaml.safe_load(text)["config"]["k8s-secrets:monitoring"] == {"enabled": False}


def test_a_file_the_driver_cannot_read_is_a_one_line_conflict_not_a_traceback(repo):
    on_branch(repo, "a")
    (repo / STACK).write_bytes((repo / STACK).read_bytes() + b"# \xff\xfe not utf-8\n")
    commit_all(repo, "a")
    on_branch(repo, "b")
    seal(repo, "KEY_B=value-from-b-456")
    commit_all(repo, "b")
    res = merge(repo, "a", "b")
    assert res.returncode != 0
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("ksecrets:")]
    assert "merge conflict" in line


def test_a_scope_change_and_a_key_sealed_on_the_other_branch_conflict(repo, vector_key):
    on_branch(repo, "a")
    seal_scope(repo, "namespace-wide", "DATABASE_URL=postgres://base", "API_KEY=base-api-key-0001")
    commit_all(repo, "a: namespace-wide")
    assert entry(repo)["scope"] == "namespace-wide"
    on_branch(repo, "b")
    seal(repo, "NEW_KEY=sealed-strict-on-b")
    commit_all(repo, "b: new key")
    res = merge(repo, "a", "b")
    assert res.returncode != 0
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("ksecrets:")]
    assert "key NEW_KEY: sealed with scope strict on one branch, but the entry's scope is namespace-wide" in line
    assert "ksecrets seal --stack qa --name my-app-secrets --namespace my-app --scope namespace-wide" in line
    # What the line says settles it: NEW_KEY sealed again under the entry's scope.
    seal_scope(repo, "namespace-wide", "NEW_KEY=sealed-strict-on-b")
    git(repo, "add", STACK)
    git(repo, "commit", "-q", "--no-edit")
    assert values(repo, vector_key, b"my-app") == {**BASE, "NEW_KEY": b"sealed-strict-on-b"}


def test_a_scope_change_and_an_unrelated_edit_merge(repo, vector_key):
    on_branch(repo, "a")
    seal_scope(repo, "cluster-wide", "DATABASE_URL=postgres://base", "API_KEY=base-api-key-0001")
    commit_all(repo, "a")
    on_branch(repo, "b")
    (repo / STACK).write_text((repo / STACK).read_text().replace("replicas: 2", "replicas: 4"))
    commit_all(repo, "b")
    assert merge(repo, "b", "a").returncode == 0
    assert values(repo, vector_key, b"") == BASE


def test_textconv_shows_a_changed_include_path_and_values_that_are_not_ciphertext(repo):
    run(repo, "ksecrets", "stack", "split", "--stack", "qa")
    commit_all(repo, "split")
    (repo / STACK).write_text((repo / STACK).read_text().replace(SEALED, "stacks/qa/other.yaml"))
    shutil.copy(repo / SEALED, repo / "stacks/qa/other.yaml")
    diff = git(repo, "diff", STACK).stdout
    assert (
        "-  k8s-secrets:sealed: stacks/qa/sealed.yaml" in diff and "+  k8s-secrets:sealed: stacks/qa/other.yaml" in diff
    )
    git(repo, "checkout", "-q", "--", STACK)
    (repo / "stacks/qa/other.yaml").unlink()
    lines = (repo / SEALED).read_text().splitlines(keepends=True)
    (i,) = [i for i, line in enumerate(lines) if line.lstrip().startswith("API_KEY: Ag")]
    lines.insert(i, lines[i].split("API_KEY")[0] + "PASTED: hunter2-plain-text\n")
    (repo / SEALED).write_text("".join(lines))
    diff = git(repo, "diff", SEALED).stdout
    assert "PASTED: NOT CIPHERTEXT: hunter2-plain-text" in [
        line[1:].strip() for line in diff.splitlines() if line[:1] == "+"
    ]
    assert not any(line.startswith(("+", "-")) and "Ag" in line and len(line) > 100 for line in diff.splitlines())


def test_textconv_shows_labels_and_other_fields(repo):
    edit(repo, lambda config: sealed_entry(config).__setitem__("labels", {"team": "payments"}))
    diff = git(repo, "diff", STACK).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 2 and any('labels={"team": "payments"}' in line for line in changed), diff


def test_setup_works_for_git_without_ksecrets_on_path_and_quotes_paths_with_spaces(tmp_path, vector_key):
    """A venv at a path with blanks, a project in a folder with blanks inside the repository:
    the driver command and the `.gitattributes` line both work for git run from a bare PATH."""
    import json

    from tests.git.test_drivers import VECTORS, env

    venv = tmp_path / "tool venv"
    (venv / "bin").mkdir(parents=True)
    base = Path(os.path.realpath(sys.executable))
    os.symlink(base, venv / "bin" / "python")
    os.symlink(BIN.parent / "lib", venv / "lib")
    shutil.copy(BIN.parent / "pyvenv.cfg", venv / "pyvenv.cfg")
    python = str(venv / "bin" / "python")
    top = tmp_path / "the repo"
    project = top / "my project"
    (project / "certs").mkdir(parents=True)
    (project / "certs" / "qa.pem").write_text(json.loads(VECTORS.read_text())["certificate_pem"])
    text = (Path(__file__).parents[2] / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    (project / STACK).write_text(text[: text.index("  k8s-secrets:sealed:")])
    bare = {"PATH": "/usr/bin:/bin"}
    assert shutil.which("ksecrets", path=bare["PATH"]) is None

    def ks(*argv: str) -> subprocess.CompletedProcess:
        """`git setup` runs from the blank-named venv (its interpreter is what it writes into git's
        config); the edits before and after the merge run in-process (git starts the drivers and
        hooks as processes either way)."""
        if argv[:2] == ("git", "setup"):
            res = subprocess.run(
                [python, "-m", "ksecrets", *argv], cwd=project, capture_output=True, text=True, env=env()
            )
        else:
            res = ksecrets_in_process(*argv, cwd=project, env=env())
        assert res.returncode == 0, res.stderr
        return res

    def g(*argv: str, check: bool = True, cwd: Path = project) -> subprocess.CompletedProcess:
        res = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, env=env(**bare))
        assert not check or res.returncode == 0, res.stderr
        return res

    g("init", "-q", "-b", "main", cwd=top)
    ks("git", "setup")
    assert g("config", "merge.ksecrets.driver").stdout.startswith(f"'{python}' -m ksecrets git merge")
    ks(
        "seal",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "API_KEY=base-api-key-0001",
        "--from-literal",
        "DATABASE_URL=postgres://base",
    )
    out = ks("stack", "split", "--stack", "qa").stdout
    assert '"/my project/stacks/qa/sealed.yaml" merge=ksecrets diff=ksecrets' in (top / ".gitattributes").read_text(), (
        out
    )
    assert g("check-attr", "merge", "stacks/qa/sealed.yaml").stdout.strip().endswith("merge: ksecrets")
    assert '"/my project/k8s/**" merge=ksecrets-render' in (top / ".gitattributes").read_text()
    assert '"/my project/secrets/*/*.sops.yaml" merge=ksecrets diff=ksecrets' in (top / ".gitattributes").read_text()
    assert g("check-attr", "merge", "secrets/qa/a.sops.yaml").stdout.strip().endswith("merge: ksecrets")
    assert g("check-attr", "merge", "k8s/qa/apps/x.yaml").stdout.strip().endswith("merge: ksecrets-render")
    ks("export")
    g("add", "-A")
    g("commit", "-q", "-m", "base")
    for name, lit in (("a", "KEY_A=value-from-a-123"), ("b", "KEY_B=value-from-b-456")):
        g("checkout", "-q", "-b", name, "main")
        ks("seal", "--stack", "qa", "--name", "my-app-secrets", "--from-literal", lit)
        ks("export")
        g("add", "-A")
        g("commit", "-q", "-m", name)
    g("checkout", "-q", "a")
    res = g("merge", "--no-edit", "b", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    (e,) = yaml.safe_load((project / SEALED).read_text())
    assert {k: crypto.decrypt_value([vector_key], v, LABEL) for k, v in e["encryptedData"].items()} == {
        **BASE,
        "KEY_A": b"value-from-a-123",
        "KEY_B": b"value-from-b-456",
    }
    assert "KEY_B: sealed:" in g("show", "HEAD", "--", "stacks/qa/sealed.yaml").stdout  # textconv ran
    assert "k8s/: rendered again from the merged stack files" in res.stderr  # the hooks ran
    assert g("status", "--porcelain").stdout == ""
    ks("export", "--check")


def _stack(entries: list[dict]) -> str:
    return yaml.safe_dump({"config": {"k8s-secrets:backend": "sealed-secrets", "k8s-secrets:sealed": entries}})


def _entry(name: str, cert: str, scope: str = "strict", **data: str) -> dict:
    values = {k: f"Ag{v}" + v * 300 for k, v in data.items()}
    return {"name": name, "namespace": "ns", "scope": scope, "certificateFingerprint": cert, "encryptedData": values}


def test_a_certificate_changed_on_one_branch_and_values_sealed_for_the_old_one_on_the_other_conflict():
    """As data (no git): `reseal --set-certificate` on one branch; on the other, a key sealed into
    the same Secret, and a new Secret, both for the old certificate."""
    from ksecrets.gitdriver import merge_texts

    base = _stack([_entry("one", "SHA256:old", A="a"), _entry("two", "SHA256:old", B="b")])
    ours = _stack([_entry("one", "SHA256:new", A="A"), _entry("two", "SHA256:new", B="B")])
    theirs = _stack([_entry("one", "SHA256:old", A="a", C="c"), _entry("two", "SHA256:old", B="b")])
    _, conflicts = merge_texts(base, ours, theirs)
    assert len(conflicts) == 1 and "ns/one key C: sealed for certificate SHA256:old on one branch" in conflicts[0]
    theirs = _stack([*yaml.safe_load(base)["config"]["k8s-secrets:sealed"], _entry("three", "SHA256:old", D="d")])
    _, conflicts = merge_texts(base, ours, theirs)
    assert (
        len(conflicts) == 1
        and "ns/three: sealed on theirs for certificate SHA256:old, which ours replaced" in conflicts[0]
    )
    # A certificate change alone, against an unrelated change of another field: clean.
    theirs = _stack([{**_entry("one", "SHA256:old", A="a"), "labels": {"x": "y"}}, _entry("two", "SHA256:old", B="b")])
    text, conflicts = merge_texts(base, ours, theirs)
    assert conflicts == []
    one = yaml.safe_load(text)["config"]["k8s-secrets:sealed"][0]
    assert one["certificateFingerprint"] == "SHA256:new" and one["labels"] == {"x": "y"}


def test_fleet_digests_travel_with_their_ciphertexts():
    """Without git: each branch seals its own key, and one key sealed twice with the same value on
    both: every fleet digest (ksecrets drift) stays beside the ciphertext it was made with."""
    from ksecrets.gitdriver import merge_texts

    def text(enc: dict, dig: dict, fleet: dict) -> str:
        entry = {
            "name": "s",
            "namespace": "ns",
            "scope": "strict",
            "encryptedData": enc,
            "digests": dig,
            "fleetDigests": fleet,
        }
        return yaml.safe_dump({"config": {"k8s-secrets:backend": "sealed-secrets", "k8s-secrets:sealed": [entry]}})

    c = {k: f"Ag{k}" + k * 400 for k in ("A", "B", "C", "D", "E")}
    base = text({"A": c["A"]}, {"A": "hmac-sha256:dA"}, {"A": "hmac-sha256:fA"})
    ours = text(
        {"A": c["A"], "B": c["B"]},
        {"A": "hmac-sha256:dA", "B": "hmac-sha256:dB"},
        {"A": "hmac-sha256:fA", "B": "hmac-sha256:fB"},
    )
    theirs = text(
        {"A": c["D"], "C": c["C"]},
        {"A": "hmac-sha256:dA2", "C": "hmac-sha256:dC"},
        {"A": "hmac-sha256:fA2", "C": "hmac-sha256:fC"},
    )
    merged, conflicts = merge_texts(base, ours, theirs, "Pulumi.qa.yaml")
    assert conflicts == []
    (e,) = yaml.safe_load(merged)["config"]["k8s-secrets:sealed"]
    assert e["encryptedData"] == {"A": c["D"], "B": c["B"], "C": c["C"]}
    assert e["fleetDigests"] == {"A": "hmac-sha256:fA2", "B": "hmac-sha256:fB", "C": "hmac-sha256:fC"}
    assert e["digests"] == {"A": "hmac-sha256:dA2", "B": "hmac-sha256:dB", "C": "hmac-sha256:dC"}
    # `git diff` (textconv) drops fleet digests as it drops digests: a re-seal of one value shows nothing.
    from ksecrets.gitdriver import textconv

    assert "fleetDigests" not in textconv(merged) and "hmac-sha256:f" not in textconv(merged)

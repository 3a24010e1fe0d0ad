"""The merge and diff drivers with real git in temporary repositories.

Two branches seal into the same stack; `git merge` runs our driver (installed by `ksecrets git
setup`, called by git through PATH). A stack `qa` uses the known-answer vectors' certificate so
the merged values can be decrypted here and compared with what each branch sealed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.sealing import crypto
from tests.conftest import ksecrets_in_process

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "fixtures" / "vectors" / "sealed-secrets-v1.json"  # vendored (tests/fixtures/README.md)
BIN = Path(sys.executable).parent
LABEL = b"my-app/my-app-secrets"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_", "GIT_"))}
    e.update(
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_TERMINAL_PROMPT="0",
    )
    e.update(extra)
    return e


def run(repo: Path, *argv: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """argv in `repo`. `ksecrets` commands that prepare a repository (seal, stack split, export) run
    in-process (`ksecrets_in_process`: same arguments, directory and environment); `ksecrets git
    ...` and everything git starts (the drivers, the hooks) are real processes: they are the subject."""
    if argv[0] == "ksecrets" and argv[1] != "git":
        res = ksecrets_in_process(*argv[1:], cwd=repo, env=env(**extra))
    else:
        res = subprocess.run(list(argv), cwd=repo, capture_output=True, text=True, env=env(**extra))
    if check and res.returncode != 0:
        raise AssertionError(f"{argv}: {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def git(repo: Path, *argv: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """git, from a PATH without ksecrets: the drivers `ksecrets git setup` wrote must run anyway."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN)
    assert shutil.which("ksecrets", path=path) is None
    return run(repo, "git", *argv, check=check, **{"PATH": path, **extra})


def seal(repo: Path, *literals: str, **extra: str) -> None:
    args = []
    for lit in literals:
        args += ["--from-literal", lit]
    run(repo, "ksecrets", "seal", "--stack", "qa", "--name", "my-app-secrets", *args, **extra)


@pytest.fixture(scope="module")
def vector_key():
    from ksecrets.sealing.keys import parse_private_key_pem

    return parse_private_key_pem(json.loads(VECTORS.read_text())["private_key_pem"].encode(), "vectors")


@pytest.fixture
def repo(tmp_path) -> Path:
    vectors = json.loads(VECTORS.read_text())
    repo = tmp_path / "repo"
    (repo / "certs").mkdir(parents=True)
    (repo / "certs" / "qa.pem").write_text(vectors["certificate_pem"])
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    (repo / "Pulumi.qa.yaml").write_text(text[: text.index("  k8s-secrets:sealed:")])
    git(repo, "init", "-q", "-b", "main")
    out = run(repo, "ksecrets", "git", "setup")
    assert "merge.ksecrets.driver" in out.stdout and ".gitattributes: added" in out.stdout
    assert (repo / ".gitattributes").read_text() == (
        "Pulumi.*.yaml merge=ksecrets diff=ksecrets\n"
        "/secrets/*/*.sops.yaml merge=ksecrets diff=ksecrets\n"  # sops: tests/git/test_sops_merge.py
        "/k8s/** merge=ksecrets-render\n"  # k8s/: tests/git/test_k8s_merge.py
    )
    # This venv's interpreter, by absolute path: git needs no ksecrets on its PATH.
    driver = shlex.split(git(repo, "config", "merge.ksecrets.driver").stdout.strip())
    assert Path(driver[0]).is_absolute() and Path(driver[0]).parent == BIN, driver
    assert driver[1:] == ["-m", "ksecrets", "git", "merge", "%O", "%A", "%B", "%P"]
    textconv = shlex.split(git(repo, "config", "diff.ksecrets.textconv").stdout.strip())
    assert textconv == [driver[0], "-m", "ksecrets", "git", "textconv"]
    assert "merge: ksecrets" in git(repo, "check-attr", "merge", "Pulumi.qa.yaml").stdout
    seal(repo, "DATABASE_URL=postgres://base", "API_KEY=base-api-key-0001")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def values(repo: Path, vector_key) -> dict[str, bytes]:
    cfg = yaml.safe_load((repo / "Pulumi.qa.yaml").read_text())["config"]
    (entry,) = [e for e in cfg["k8s-secrets:sealed"] if e["name"] == "my-app-secrets"]
    return {k: crypto.decrypt_value([vector_key], v, LABEL) for k, v in entry["encryptedData"].items()}


def branch(repo: Path, name: str, *literals: str, **extra: str) -> None:
    git(repo, "checkout", "-q", "-b", name, "main")
    seal(repo, *literals, **extra)
    git(repo, "commit", "-q", "-am", name)


def test_different_keys_on_two_branches_merge_cleanly(repo, vector_key):
    branch(repo, "a", "KEY_A=value-from-a-123")
    branch(repo, "b", "KEY_B=value-from-b-456")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "-q", "--no-edit", "b")
    assert res.returncode == 0
    assert git(repo, "status", "--porcelain").stdout == ""
    assert values(repo, vector_key) == {
        "API_KEY": b"base-api-key-0001",
        "DATABASE_URL": b"postgres://base",
        "KEY_A": b"value-from-a-123",
        "KEY_B": b"value-from-b-456",
    }
    load_stack_file(repo / "Pulumi.qa.yaml")  # the merged file is a valid stack
    # Byte for byte: a's file plus b's one new line, comments and layout kept.
    assert git(repo, "diff", "--no-textconv", "--numstat", "HEAD~1", "HEAD").stdout.split()[:2] == ["1", "0"]
    # Without the driver, git's own line merge conflicts on the very same histories.
    git(repo, "checkout", "-q", "-b", "plain", "a~1")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("Pulumi.*.yaml -merge -diff\n")
    assert git(repo, "merge", "-q", "--no-edit", "b", check=False).returncode != 0


def test_same_key_changed_on_both_branches_is_one_line_naming_it(repo, vector_key):
    branch(repo, "a", "API_KEY=changed-on-a-111", "KEY_A=only-a-1234567")
    branch(repo, "b", "API_KEY=changed-on-b-222")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    conflict_lines = [l for l in out.splitlines() if "ksecrets:" in l]
    assert len(conflict_lines) == 1, out
    assert conflict_lines[0].strip() == (
        "ksecrets: Pulumi.qa.yaml: merge conflict: k8s-secrets:sealed my-app/my-app-secrets key API_KEY: changed on "
        "both branches; kept ours; re-seal it (ksecrets seal --stack qa --name my-app-secrets --namespace my-app ...), "
        "then git add Pulumi.qa.yaml"
    )
    assert "Ag" not in conflict_lines[0]  # no ciphertext in the message
    assert git(repo, "status", "--porcelain").stdout.startswith("UU Pulumi.qa.yaml")
    # The file stays a valid stack (ours kept), so `ksecrets seal` can settle the conflict.
    assert values(repo, vector_key) == {
        "API_KEY": b"changed-on-a-111",
        "DATABASE_URL": b"postgres://base",
        "KEY_A": b"only-a-1234567",
    }
    seal(repo, "API_KEY=settled-value-333")
    git(repo, "add", "Pulumi.qa.yaml")
    git(repo, "commit", "-q", "--no-edit")
    assert values(repo, vector_key)["API_KEY"] == b"settled-value-333"


def test_same_value_sealed_on_both_branches_with_the_seal_key_is_no_conflict(repo, vector_key):
    key = {"KSECRETS_SEAL_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    git(repo, "checkout", "-q", "main")
    seal(repo, "DATABASE_URL=postgres://base", "API_KEY=base-api-key-0001", **key)  # digests on main
    git(repo, "commit", "-q", "-am", "digests")
    branch(repo, "a", "NEW=same-value-on-both", **key)
    branch(repo, "b", "NEW=same-value-on-both", **key)
    git(repo, "checkout", "-q", "a")
    assert git(repo, "merge", "-q", "--no-edit", "b").returncode == 0
    assert values(repo, vector_key)["NEW"] == b"same-value-on-both"


def test_other_config_changes_merge_with_sealed_changes(repo, vector_key):
    git(repo, "checkout", "-q", "-b", "a", "main")
    text = (repo / "Pulumi.qa.yaml").read_text().replace("replicas: 2", "replicas: 4")
    (repo / "Pulumi.qa.yaml").write_text(text)
    git(repo, "commit", "-q", "-am", "a: replicas")
    branch(repo, "b", "KEY_B=value-from-b-456")
    git(repo, "checkout", "-q", "a")
    assert git(repo, "merge", "-q", "--no-edit", "b").returncode == 0
    cfg = load_stack_file(repo / "Pulumi.qa.yaml")
    assert cfg.apps[0].deployments[0].replicas == 4
    assert values(repo, vector_key)["KEY_B"] == b"value-from-b-456"


def test_git_diff_shows_keys_not_ciphertext(repo):
    # NEW_KEY added, DATABASE_URL changed, API_KEY removed (--prune keeps only the given keys).
    run(
        repo,
        "ksecrets",
        "seal",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--prune",
        "--from-literal",
        "NEW_KEY=brand-new-value",
        "--from-literal",
        "DATABASE_URL=postgres://changed",
    )
    diff = git(repo, "diff").stdout
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert changed and not any(len(l) > 200 for l in changed), diff  # no ciphertext
    by_key: dict[str, set[str]] = {}
    for l in changed:
        by_key.setdefault(l[1:].strip().split(":")[0], set()).add(l[0])
    assert by_key == {"NEW_KEY": {"+"}, "DATABASE_URL": {"+", "-"}, "API_KEY": {"-"}}, diff
    # Without the driver the same diff is ciphertext.
    raw = git(repo, "diff", "--no-textconv").stdout
    assert any(len(l) > 500 for l in raw.splitlines())


def test_textconv_of_a_reencrypted_same_value_shows_no_change(repo):
    """With KSECRETS_SEAL_KEY the id is the keyed digest: same value, new ciphertext, no diff line."""
    key = {"KSECRETS_SEAL_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    seal(repo, "DATABASE_URL=postgres://base", "API_KEY=base-api-key-0001", **key)
    git(repo, "commit", "-q", "-am", "digests")
    seal(repo, "API_KEY=base-api-key-0001")  # without the key: re-encrypted, digests dropped
    seal(repo, "API_KEY=base-api-key-0001", "DATABASE_URL=postgres://base", **key)  # digests back
    assert git(repo, "diff", "--stat", "--no-textconv").stdout  # the ciphertexts did change
    assert git(repo, "diff").stdout == ""  # but no sealed key's value did


def test_setup_is_idempotent_and_keeps_other_attributes(repo):
    lines = (
        "*.png binary\nPulumi.*.yaml merge=ksecrets diff=ksecrets\n"
        "/secrets/*/*.sops.yaml merge=ksecrets diff=ksecrets\n/k8s/** merge=ksecrets-render\n"
    )
    (repo / ".gitattributes").write_text(lines)
    out = run(repo, "ksecrets", "git", "setup").stdout
    assert "already has the line" in out
    assert (repo / ".gitattributes").read_text() == lines


def test_setup_outside_a_repository_is_one_line(tmp_path):
    res = run(tmp_path, "ksecrets", "git", "setup", check=False)
    assert res.returncode == 2 and res.stderr.strip().endswith("not inside a git work tree")

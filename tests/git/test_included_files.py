"""The git drivers on a stack whose sealed values live in a file of their own
(`k8s-secrets:sealed: stacks/qa/sealed.yaml`, README "Large stacks"), with real git."""

from __future__ import annotations

import yaml

from ksecrets.config import load_stack_file
from ksecrets.sealing import crypto
from tests.git.test_drivers import LABEL, git, run, seal
from tests.git.test_drivers import repo as repo  # noqa: F401 (fixture)
from tests.git.test_drivers import vector_key as vector_key  # noqa: F401 (fixture)

SEALED = "stacks/qa/sealed.yaml"


def split(repo):
    out = run(repo, "ksecrets", "stack", "split", "--stack", "qa")
    assert f"{SEALED}: written" in out.stdout
    assert f".gitattributes: added '/{SEALED} merge=ksecrets diff=ksecrets' (commit it)" in out.stdout
    assert "merge: ksecrets" in git(repo, "check-attr", "merge", SEALED).stdout
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "split")


def values(repo, vector_key) -> dict[str, bytes]:
    (entry,) = [e for e in yaml.safe_load((repo / SEALED).read_text()) if e["name"] == "my-app-secrets"]
    return {k: crypto.decrypt_value([vector_key], v, LABEL) for k, v in entry["encryptedData"].items()}


def branch(repo, name: str, *literals: str) -> None:
    git(repo, "checkout", "-q", "-b", name, "main")
    seal(repo, *literals)
    git(repo, "commit", "-q", "-am", name)


def test_different_keys_sealed_on_two_branches_merge_cleanly_in_the_file(repo, vector_key):
    split(repo)
    branch(repo, "a", "KEY_A=value-from-a-123")
    branch(repo, "b", "KEY_B=value-from-b-456")
    git(repo, "checkout", "-q", "a")
    assert git(repo, "merge", "-q", "--no-edit", "b").returncode == 0
    assert git(repo, "status", "--porcelain").stdout == ""
    assert values(repo, vector_key) == {
        "API_KEY": b"base-api-key-0001",
        "DATABASE_URL": b"postgres://base",
        "KEY_A": b"value-from-a-123",
        "KEY_B": b"value-from-b-456",
    }
    load_stack_file(repo / "Pulumi.qa.yaml")
    # a's file plus b's one new line, the layout kept.
    assert git(repo, "diff", "--no-textconv", "--numstat", "HEAD~1", "HEAD", "--", SEALED).stdout.split()[:2] == [
        "1",
        "0",
    ]
    # Without the driver, git's own line merge conflicts on the very same histories.
    git(repo, "checkout", "-q", "-b", "plain", "a~1")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text(f"/{SEALED} -merge -diff\n")
    assert git(repo, "merge", "-q", "--no-edit", "b", check=False).returncode != 0


def test_a_key_changed_on_both_branches_is_one_line_naming_the_file(repo, vector_key):
    split(repo)
    branch(repo, "a", "API_KEY=changed-on-a-111")
    branch(repo, "b", "API_KEY=changed-on-b-222")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    assert res.returncode != 0
    (line,) = [line for line in (res.stdout + res.stderr).splitlines() if "ksecrets:" in line]
    assert line.strip() == (
        f"ksecrets: {SEALED}: merge conflict: k8s-secrets:sealed my-app/my-app-secrets key API_KEY: changed on "
        "both branches; kept ours; re-seal it (ksecrets seal --stack qa --name my-app-secrets --namespace my-app ...), "
        f"then git add {SEALED}"
    )
    assert values(repo, vector_key)["API_KEY"] == b"changed-on-a-111"  # ours kept, the file still valid


def test_git_diff_of_the_file_shows_keys_not_ciphertext(repo):
    split(repo)
    seal(repo, "NEW_KEY=brand-new-value")
    diff = git(repo, "diff").stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 1 and changed[0].startswith("+") and "NEW_KEY: sealed:" in changed[0], diff
    raw = git(repo, "diff", "--no-textconv").stdout
    assert any(len(line) > 500 for line in raw.splitlines())

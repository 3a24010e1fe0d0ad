"""`k8s/` through merges, with real git: two branches that each seal a key and commit their
rendered `k8s/` (README: `make render && git commit`) merge with no conflict, and the merge
commit's `k8s/` is exactly what `ksecrets export` writes from the merged stack files."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tests.git.test_drivers import git, run, seal
from tests.git.test_drivers import repo as repo  # noqa: F401 (fixture)

SEALED_SECRET = "k8s/qa/apps/sealedsecret-my-app-secrets.yaml"
DEPLOYMENT = "k8s/qa/apps/deployment-my-app.yaml"


def render_and_commit(repo: Path, message: str) -> None:
    run(repo, "ksecrets", "export")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def branch(repo: Path, name: str, *literals: str) -> None:
    git(repo, "checkout", "-q", "-b", name, "main")
    seal(repo, *literals)
    render_and_commit(repo, name)


def rendered_matches(repo: Path) -> None:
    """Nothing left to stage, and export would change nothing."""
    assert git(repo, "status", "--porcelain").stdout == ""
    check = run(repo, "ksecrets", "export", "--check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def keys_in_k8s(repo: Path) -> set[str]:
    doc = yaml.safe_load((repo / SEALED_SECRET).read_text())
    return set(doc["spec"]["encryptedData"])


def test_two_branches_that_seal_and_render_merge_with_k8s_rendered_again(repo):
    render_and_commit(repo, "render")
    assert ".gitattributes" in git(repo, "ls-files").stdout
    assert "/k8s/** merge=ksecrets-render" in (repo / ".gitattributes").read_text()
    branch(repo, "a", "KEY_A=value-from-a-123")
    branch(repo, "b", "KEY_B=value-from-b-456")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "k8s/: rendered again from the merged stack files" in res.stderr, res.stderr
    assert git(repo, "status", "--porcelain").stdout == "", res.stderr
    rendered_matches(repo)
    assert keys_in_k8s(repo) == {"API_KEY", "DATABASE_URL", "KEY_A", "KEY_B"}
    # The merge commit holds it (not only the work tree), and its checksum differs from both parents'.
    for parent in ("HEAD^1", "HEAD^2"):
        assert git(repo, "diff", "--quiet", parent, "HEAD", "--", DEPLOYMENT, check=False).returncode == 1
    # Without the driver and the hook, the same histories conflict in k8s/ (the finding).
    git(repo, "checkout", "-q", "-b", "plain", "a~1")
    (repo / ".git" / "info" / "attributes").write_text("/k8s/** -merge\n")
    res = git(repo, "merge", "--no-edit", "--no-verify", "b", check=False)
    assert res.returncode != 0 and f"CONFLICT (content): Merge conflict in {SEALED_SECRET}" in res.stdout


def test_a_conflict_in_the_stack_file_resolved_then_committed_renders_k8s(repo):
    render_and_commit(repo, "render")
    branch(repo, "a", "API_KEY=changed-on-a-111")
    branch(repo, "b", "API_KEY=changed-on-b-222")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    assert res.returncode != 0
    unmerged = git(repo, "diff", "--name-only", "--diff-filter=U").stdout.split()
    assert unmerged == ["Pulumi.qa.yaml"]  # k8s/ did not conflict
    seal(repo, "API_KEY=settled-value-333")
    git(repo, "add", "Pulumi.qa.yaml")
    git(repo, "commit", "-q", "--no-edit")  # the pre-commit hook renders k8s/ of the merge
    rendered_matches(repo)


def test_unstaged_stack_edits_do_not_leak_into_the_merge(repo):
    """The hook renders from the index: a stack file edited but not staged stays out of k8s/."""
    render_and_commit(repo, "render")
    branch(repo, "a", "KEY_A=value-from-a-123")
    branch(repo, "b", "KEY_B=value-from-b-456")
    git(repo, "checkout", "-q", "a")
    (repo / "Pulumi.other.yaml").write_text((repo / "Pulumi.qa.yaml").read_text())
    assert git(repo, "merge", "--no-edit", "b").returncode == 0
    assert not (repo / "k8s" / "other").exists()
    assert git(repo, "status", "--porcelain").stdout == "?? Pulumi.other.yaml\n"


def test_a_merged_stack_that_does_not_render_is_one_line(repo):
    """Each branch renders; merged, the Deployment reads a key the other branch removed. git made
    the merge commit (post-merge cannot stop it); the line says that k8s/ is not a render."""
    render_and_commit(repo, "render")
    git(repo, "checkout", "-q", "-b", "a", "main")
    text = (repo / "Pulumi.qa.yaml").read_text()
    line = "            DATABASE_URL: DATABASE_URL\n"
    (repo / "Pulumi.qa.yaml").write_text(text.replace(line, line + "            API: API_KEY\n"))
    render_and_commit(repo, "a: env API from API_KEY")
    git(repo, "checkout", "-q", "-b", "b", "main")
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
        "DATABASE_URL=postgres://base",
    )
    render_and_commit(repo, "b: API_KEY removed")
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("ksecrets:")]
    assert line.startswith("ksecrets: k8s/ cannot be rendered from the merged stack files: ") and "API_KEY" in line
    assert "make render" in line


def test_files_under_k8s_that_export_did_not_write_merge_as_text(repo):
    (repo / "k8s").mkdir()
    (repo / "k8s" / "notes.txt").write_text("one\ntwo\nthree\n")
    render_and_commit(repo, "render")
    for name, old, new in (("a", "one", "ONE-a"), ("b", "one", "ONE-b")):
        git(repo, "checkout", "-q", "-b", name, "main")
        (repo / "k8s" / "notes.txt").write_text((repo / "k8s" / "notes.txt").read_text().replace(old, new))
        git(repo, "commit", "-q", "-am", name)
    git(repo, "checkout", "-q", "a")
    res = git(repo, "merge", "--no-edit", "b", check=False)
    assert res.returncode != 0 and "k8s/notes.txt: merge conflict: not written by ksecrets export" in res.stderr


def test_setup_leaves_a_hook_of_your_own_alone_and_says_what_to_add(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nexec make lint\n")
    out = run(repo, "ksecrets", "git", "setup").stdout
    assert hook.read_text() == "#!/bin/sh\nexec make lint\n"
    assert "a hook of your own is there, left as it is; add to it: " in out
    assert "git render-merge --root . --hook pre-commit" in out
    post = (repo / ".git" / "hooks" / "post-merge").read_text()
    assert post.endswith(" git render-merge --root . --hook post-merge\n") and os.access(
        repo / ".git" / "hooks" / "post-merge", os.X_OK
    )

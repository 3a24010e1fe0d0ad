"""`k8s/` through git merges: the generated files are rendered again from the merged stack files.

Every file `ksecrets export` writes is a function of the stack files (and what they include and
name), so a line merge of two branches' `k8s/` is either a conflict (a SealedSecret both branches
sealed into, a Deployment's checksum of it) or, worse, a clean merge that no render gives. Here:

- the merge driver `ksecrets-render` (`.gitattributes`: `/k8s/** merge=ksecrets-render`) never
  conflicts on a file that carries the exporter's header: it leaves git's clean line merge or,
  when there is none, our side, as a placeholder. Any other file under `k8s/` merges as text.
- the hooks run `ksecrets git render-merge`: it renders `k8s/` from the stack inputs *in the
  index* (a temporary checkout, so nothing unstaged leaks into the merge), stages the result and
  brings the work tree in line. `post-merge` amends the merge commit `git merge` just made with it
  (git 2.39 builds the merge commit's tree before `pre-merge-commit` runs, so that hook cannot);
  `pre-commit` does it before the commit that concludes a merge (after conflicts in the stack
  files were resolved, or `--no-commit`). The merge commit's `k8s/` is then exactly what
  `make render` writes from its stack files. A merged stack that does not render is one line,
  and the merge commit stays as git made it (the `k8s/` of git's line merge): `make render`.

Review stays meaningful: each branch's commits still carry their own rendered `k8s/` diff, and
the merge commit's `k8s/` differs from either parent only by what the other parent brought.
Rebases and cherry-picks run no hook: run `make render` there (CI's `ksecrets export --check`
fails on a stale `k8s/` in any case).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ksecrets.errors import KsecretsError
from ksecrets.gitattributes import attributes_pattern

DRIVER = "ksecrets-render"
HOOKS = {"post-merge": "--hook post-merge", "pre-commit": "--hook pre-commit"}
HOOK_MARK = "# ksecrets: render k8s/ of a merge from the merged stack files (ksecrets git setup)"


def _git(top: Path, *argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(["git", *argv], cwd=top, capture_output=True, **kw)
    if check and res.returncode != 0:
        err = res.stderr.decode(errors="replace") if isinstance(res.stderr, bytes) else res.stderr
        raise KsecretsError(f"git {argv[0]} failed: {err.strip().splitlines()[-1] if err.strip() else res.returncode}")
    return res


# --- the merge driver for generated files ---------------------------------------------------------


def merge_generated(base_path: str, ours_path: str, theirs_path: str, pathname: str) -> tuple[int, list[str]]:
    """git's `%O %A %B %P` for a file under k8s/. Exporter's files: exit 0 (a placeholder the hook
    renders again); anything else: git's own line merge."""
    from ksecrets.usecases.export import MARKER
    from ksecrets.fileio import atomic_write_bytes

    sides = []
    for p in (base_path, ours_path, theirs_path):
        try:
            sides.append(Path(p).read_bytes())
        except FileNotFoundError:
            sides.append(b"")
    res = subprocess.run(
        [
            "git",
            "merge-file",
            "-p",
            "-L",
            f"ours:{pathname}",
            "-L",
            f"base:{pathname}",
            "-L",
            f"theirs:{pathname}",
            ours_path,
            base_path,
            theirs_path,
        ],
        capture_output=True,
    )
    clean = res.returncode == 0
    generated = all(s.startswith(MARKER) for s in sides if s)
    if generated:
        data = res.stdout if clean else sides[1]
        mode = Path(ours_path).stat().st_mode & 0o777
        atomic_write_bytes(ours_path, data, mode)
        return 0, []
    if res.returncode < 0 or res.returncode > 127:
        return 1, [f"{pathname}: merge conflict: git merge-file failed"]
    atomic_write_bytes(ours_path, res.stdout, Path(ours_path).stat().st_mode & 0o777)
    return (
        (0, []) if clean else (1, [f"{pathname}: merge conflict: not written by ksecrets export; resolve the markers"])
    )


# --- render k8s/ of a merge from the index ------------------------------------------------------------


def _in_merge(top: Path) -> bool:
    return _git(top, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0


def _made_by_this_merge(top: Path) -> bool:
    """HEAD is the merge commit `git merge` just made (first parent: where HEAD was before)."""
    parents = _git(top, "rev-list", "--parents", "-n", "1", "HEAD", check=False, text=True).stdout.split()
    orig = _git(top, "rev-parse", "-q", "--verify", "ORIG_HEAD", check=False, text=True).stdout.strip()
    return len(parents) >= 3 and bool(orig) and parents[1] == orig


def render_merge(root: str | os.PathLike[str] = ".", *, hook: str | None = None) -> list[str]:
    """Render the project's k8s/ from the stack files in the index and stage it; the lines to print.

    `root`: the project folder (where the stack files are), inside the work tree. `hook`:
    - "pre-commit": only while a merge is being concluded (`git commit` after conflicts);
    - "post-merge": `git merge` made its commit from a line merge of k8s/: render, stage and
      amend that merge commit (never a fast-forward, never a commit that is not this merge's).
    By hand (no hook): render and stage, e.g. to settle conflicts that are only in k8s/."""
    res = _git(Path(root), "rev-parse", "--show-toplevel", check=False, text=True)
    if res.returncode != 0:
        raise KsecretsError(f"{root}: not inside a git work tree")
    top = Path(res.stdout.strip())
    amend = False
    if hook == "pre-commit" and not _in_merge(top):
        return []
    if hook == "post-merge":
        # git may still hold MERGE_HEAD while post-merge runs: the commit decides.
        amend = _made_by_this_merge(top)
        if not amend and not _in_merge(top):
            return []
    lines = _render_into_index(top, Path(root))
    if amend and _git(top, "diff", "--cached", "--quiet", check=False).returncode == 1:
        _amend_head(top)
        lines = [line.replace("staged", "in the merge commit") for line in lines]
    return lines


def _amend_head(top: Path) -> None:
    """Replace the merge commit HEAD by one with the index's tree: same parents, message and
    author (git refuses `commit --amend` while post-merge runs, MERGE_HEAD being still there)."""
    old = _git(top, "rev-parse", "HEAD", text=True).stdout.strip()
    parents = _git(top, "rev-list", "--parents", "-n", "1", old, text=True).stdout.split()[1:]
    tree = _git(top, "write-tree", text=True).stdout.strip()
    raw = _git(top, "cat-file", "commit", old).stdout
    message = raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""
    name, email, date = (
        _git(top, "log", "-1", "--format=%an%x00%ae%x00%ad", "--date=raw", old, text=True)
        .stdout.rstrip("\n")
        .split("\0")
    )
    env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    argv = ["commit-tree", tree, *(a for p in parents for a in ("-p", p))]
    new = _git(top, *argv, input=message, env=env).stdout.decode().strip()
    _git(
        top,
        "update-ref",
        "-m",
        "ksecrets git render-merge: k8s/ rendered from the merged stack files",
        "HEAD",
        new,
        old,
    )


def _render_into_index(top: Path, root: Path) -> list[str]:
    from ksecrets.usecases import export

    rel = os.path.relpath(Path(root).resolve(), top.resolve())
    rel = "" if rel == "." else rel
    out_rel = f"{rel}/{export.OUTPUT_DIR}" if rel else export.OUTPUT_DIR
    unmerged = _git(top, "diff", "--name-only", "--diff-filter=U", "-z", text=True).stdout.split("\0")
    blocking = [p for p in unmerged if p and not (p == out_rel or p.startswith(out_rel + "/"))]
    if blocking:
        raise KsecretsError(f"{blocking[0]}: still conflicted; resolve the stack files first, then git add them")
    before = _index(top, out_rel)
    if not before:
        return []  # this repository does not commit k8s/: nothing to keep in line
    with tempfile.TemporaryDirectory(prefix="ksecrets-render-") as tmp:
        # Every staged file but k8s/ (the inputs may be anywhere in the project), as the index has it.
        _git(top, "checkout-index", "-a", "-q", f"--prefix={tmp}/", check=False)
        shutil.rmtree(Path(tmp, out_rel), ignore_errors=True)
        _copy_index(top, out_rel, Path(tmp))
        try:
            plan = export.export(Path(tmp, rel) if rel else Path(tmp))
        except KsecretsError as exc:
            raise KsecretsError(
                f"k8s/ cannot be rendered from the merged stack files: {exc}; k8s/ is git's line merge: "
                "fix the stack files, then make render and commit k8s/"
            ) from None
        # The index the hook was given (a relative GIT_INDEX_FILE would be read from the temp tree).
        index = (
            os.environ.get("GIT_INDEX_FILE") or _git(top, "rev-parse", "--git-path", "index", text=True).stdout.strip()
        )
        git_dir = _git(top, "rev-parse", "--absolute-git-dir", text=True).stdout.strip()
        env = {**os.environ, "GIT_INDEX_FILE": str(top / index), "GIT_DIR": git_dir}
        _git(top, f"--work-tree={tmp}", "add", "-A", "--", out_rel, env=env)
        after = _index(top, out_rel)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    for p in changed:
        target = top / p
        if p in after:
            _git(top, "checkout-index", "-f", "--", p)
        elif target.is_file():
            target.unlink()
    if not changed:
        return [f"k8s/: as the merged stack files render it ({plan.unchanged} files)"]
    return [f"k8s/: rendered again from the merged stack files: {len(changed)} file(s) staged"]


def _index(top: Path, prefix: str) -> dict[str, str]:
    """{path: 'mode sha stage'} of the index entries under `prefix`."""
    out = _git(top, "ls-files", "-s", "-z", "--", prefix, text=True).stdout
    entries: dict[str, str] = {}
    for rec in filter(None, out.split("\0")):
        meta, path = rec.split("\t", 1)
        entries[path] = entries.get(path, "") + meta + ";"
    return entries


def _copy_index(top: Path, prefix: str, dest: Path) -> None:
    """The merged (stage 0) files under `prefix` into `dest`: export decides what is stale by them."""
    out = _git(top, "ls-files", "-s", "-z", "--", prefix, text=True).stdout
    for rec in filter(None, out.split("\0")):
        meta, path = rec.split("\t", 1)
        mode, sha, stage = meta.split()
        if stage != "0" or mode == "160000":
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git(top, "cat-file", "blob", sha).stdout)


# --- setup ------------------------------------------------------------------------------------------


def setup(top: Path, root: Path, command: str) -> list[str]:
    """The driver, its `.gitattributes` line and the hooks (a hook that is not ours is left alone)."""
    import shlex

    from ksecrets.usecases import export
    from ksecrets.fileio import atomic_write_text

    done = []
    settings = {
        f"merge.{DRIVER}.name": "ksecrets: generated k8s/ files, rendered again after the merge",
        f"merge.{DRIVER}.driver": f"{command} git merge-generated %O %A %B %P",
    }
    for key, value in settings.items():
        _git(top, "config", key, value)
        done.append(f"git config {key} {shlex.quote(value)}")
    rel = os.path.relpath(Path(root).resolve() / export.OUTPUT_DIR, top.resolve())
    line = f"{attributes_pattern(rel)}/** merge={DRIVER}"
    if line.startswith('"'):
        line = f'{attributes_pattern(rel)[:-1]}/**" merge={DRIVER}'
    attrs = top / ".gitattributes"
    old = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    if line not in old.splitlines():
        new = old + ("" if not old or old.endswith("\n") else "\n") + line + "\n"
        atomic_write_text(attrs, new, attrs.stat().st_mode & 0o777 if attrs.exists() else 0o644)
        done.append(f".gitattributes: added '{line}' (commit it)")
    # Hooks run at the work tree's top: the project folder relative to it survives a moved clone.
    root_arg = shlex.quote(os.path.relpath(Path(root).resolve(), top.resolve()))
    for hook, flag in HOOKS.items():
        flag = " " + flag
        path = Path(_git(top, "rev-parse", "--git-path", f"hooks/{hook}", text=True).stdout.strip())
        path = path if path.is_absolute() else top / path
        body = (
            f"#!/bin/sh\n{HOOK_MARK}\n# A moved or rebuilt venv: run `ksecrets git setup` again.\n"
            f"exec {command} git render-merge --root {root_arg}{flag}\n"
        )
        if path.exists() and HOOK_MARK not in path.read_text(encoding="utf-8", errors="replace"):
            done.append(
                f"{path}: a hook of your own is there, left as it is; add to it: {command} git render-merge "
                f"--root {root_arg}{flag}"
            )
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, body, 0o755)
        done.append(f"{os.path.relpath(path, top)}: renders k8s/ of a merge from the merged stack files")
    return done

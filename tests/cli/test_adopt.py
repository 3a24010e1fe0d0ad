"""`ksecrets adopt`: plaintext Secret manifests and env files into a stack, the files removed, and
the printed `git filter-repo` command run for real on the repository's history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets.sealing import crypto

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "fixtures" / "vectors" / "sealed-secrets-v1.json"  # vendored (tests/fixtures/README.md)
BIN = Path(sys.executable).parent
LABEL = b"my-app/my-app-secrets"
SECRET = (
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: my-app-secrets\n  namespace: my-app\n"
    "stringData:\n  DATABASE_URL: postgres://app:leaked-pass@db/app\n  API_KEY: leaked-api-key-123\n"
)


def env(**extra) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_", "GIT_"))}
    e.update(
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    e.update(extra)
    return e


def run(repo: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), cwd=repo, capture_output=True, text=True, env=env())
    if check and res.returncode != 0:
        raise AssertionError(f"{argv}: {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def vector_key():
    from ksecrets.sealing.keys import parse_private_key_pem

    return parse_private_key_pem(json.loads(VECTORS.read_text())["private_key_pem"].encode(), "vectors")


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with a sealed stack `qa` (the vectors' certificate) and a leaked Secret."""
    repo = tmp_path / "repo"
    (repo / "certs").mkdir(parents=True)
    (repo / "certs" / "qa.pem").write_text(json.loads(VECTORS.read_text())["certificate_pem"])
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    (repo / "Pulumi.qa.yaml").write_text(text[: text.index("  k8s-secrets:sealed:")])
    (repo / "deploy").mkdir()
    (repo / "deploy" / "secret.yaml").write_text(SECRET)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "leaky")
    return repo


def sealed_values(repo: Path, vector_key) -> dict[str, bytes]:
    cfg = yaml.safe_load((repo / "Pulumi.qa.yaml").read_text())["config"]
    (entry,) = cfg["k8s-secrets:sealed"]
    return {k: crypto.decrypt_value([vector_key], v, LABEL) for k, v in entry["encryptedData"].items()}


def test_adopt_seals_removes_and_the_printed_purge_works(repo, vector_key):
    res = run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa")
    assert sealed_values(repo, vector_key) == {
        "DATABASE_URL": b"postgres://app:leaked-pass@db/app",
        "API_KEY": b"leaked-api-key-123",
    }
    assert not (repo / "deploy" / "secret.yaml").exists()
    assert "leaked" not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "removed from the working tree: deploy/secret.yaml"
    assert "still in Git history: deploy/secret.yaml" in lines[1]
    purge = next(l.strip() for l in lines if l.strip().startswith("git filter-repo"))
    assert purge == "git filter-repo --invert-paths --path deploy/secret.yaml"
    # The stack is valid and complete.
    assert run(repo, "ksecrets", "doctor", "--stack", "qa").returncode == 0
    # Commit, then run the printed command: the leaked value is gone from every commit.
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "adopted")
    assert "leaked-pass" in run(repo, "git", "log", "--all", "-p").stdout
    run(repo, *purge.split(), "--force")
    history = run(repo, "git", "log", "--all", "-p").stdout
    assert "leaked-pass" not in history and "Pulumi.qa.yaml" in history


def test_adopt_an_env_file_needs_a_name_and_says_when_history_is_clean(repo, vector_key):
    (repo / ".env.qa").write_text("DATABASE_URL=postgres://from-env\nAPI_KEY=env-api-key-456\n")
    no_name = run(repo, "ksecrets", "adopt", ".env.qa", "--stack", "qa", check=False)
    assert no_name.returncode == 2 and "pass --name" in no_name.stderr
    assert (repo / ".env.qa").exists()
    res = run(repo, "ksecrets", "adopt", ".env.qa", "--stack", "qa", "--name", "my-app-secrets")
    assert sealed_values(repo, vector_key)["API_KEY"] == b"env-api-key-456"
    assert "never committed: nothing to purge from Git history" in res.stdout
    assert not (repo / ".env.qa").exists()


def test_nothing_half_done_on_failure(repo):
    before = (repo / "Pulumi.qa.yaml").read_bytes()
    # A second Secret no app uses and without a namespace: cannot be placed.
    (repo / "deploy" / "other.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: orphan\nstringData:\n  K: v-1234567890\n"
    )
    res = run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa", check=False)
    assert res.returncode == 2 and "no app has secretName orphan" in res.stderr
    assert (repo / "Pulumi.qa.yaml").read_bytes() == before
    assert (repo / "deploy" / "secret.yaml").exists() and (repo / "deploy" / "other.yaml").exists()
    # A value the stack refuses after the first Secret went in: the stack file is restored.
    (repo / "deploy" / "other.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: zzz\n  namespace: my-app\ndata:\n  K: '%%%'\n"
    )
    res = run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa", check=False)
    assert res.returncode == 2
    assert (repo / "Pulumi.qa.yaml").read_bytes() == before
    assert (repo / "deploy" / "secret.yaml").exists()
    mixed = repo / "mixed.yaml"
    mixed.write_text(SECRET + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    res = run(repo, "ksecrets", "adopt", "mixed.yaml", "--stack", "qa", check=False)
    assert res.returncode == 2 and "holds other objects" in res.stderr and mixed.exists()


def test_adopt_failing_mid_way_restores_the_stack_file(repo, monkeypatch, tmp_path):
    """In-process: the second seal raises; the first one's write is undone."""
    from ksecrets.usecases import adopt as adopt_mod
    from ksecrets.errors import KsecretsError
    from ksecrets.usecases import seal_stack as stack_mod

    (repo / "deploy" / "second.yaml").write_text(
        SECRET.replace("my-app-secrets", "second").replace("namespace: my-app", "namespace: my-app")
    )
    text = (repo / "Pulumi.qa.yaml").read_text()
    before = (repo / "Pulumi.qa.yaml").read_bytes()
    calls = []
    real = stack_mod.seal_into_stack

    def flaky(*a, **kw):
        calls.append(a[2].name)  # the SealRequest
        if len(calls) == 2:
            raise KsecretsError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(stack_mod, "seal_into_stack", flaky)
    with pytest.raises(KsecretsError):
        adopt_mod.adopt(repo / "deploy", repo, "qa", namespace="my-app")
    assert calls and (repo / "Pulumi.qa.yaml").read_bytes() == before and text
    assert (repo / "deploy" / "secret.yaml").exists() and (repo / "deploy" / "second.yaml").exists()


def test_adopt_pushes_into_a_vault_stack(vault_env_for_adopt, tmp_path):
    """Against the fake Vault of the vault tests (no real Vault here): values go to the app's path."""
    vault, root = vault_env_for_adopt
    (tmp_path / "leak").mkdir()
    (tmp_path / "leak" / "s.yaml").write_text(SECRET)
    from ksecrets.usecases.adopt import adopt
    from ksecrets.vault.client import make_client

    report = adopt(
        tmp_path / "leak",
        root,
        "production",
        vault_client=make_client(env={"VAULT_ADDR": vault.addr, "VAULT_TOKEN": "test-token"}),
    )
    assert vault.kv_latest("secret", "my-app") == {
        "DATABASE_URL": "postgres://app:leaked-pass@db/app",
        "API_KEY": "leaked-api-key-123",
    }
    assert report.removed == [str(tmp_path / "leak" / "s.yaml")] and not (tmp_path / "leak" / "s.yaml").exists()


@pytest.fixture
def vault_env_for_adopt(tmp_path):
    import responses

    from tests.vault.fakevault import FakeVault

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(ROOT / "tests" / "vault" / "fixtures" / "production" / "Pulumi.production.yaml", root)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        vault = FakeVault(rsps)
        vault.enable_kv2()
        yield vault, root


# --- issue 18: templates, metadata, transactions, file names ---------------------------------------


def sealed_entry(repo: Path, name: str = "my-app-secrets") -> dict:
    cfg = yaml.safe_load((repo / "Pulumi.qa.yaml").read_text())["config"]
    sealed = cfg.get("k8s-secrets:sealed") or []
    if isinstance(sealed, str):
        sealed = yaml.safe_load((repo / sealed).read_text())
    return next(e for e in sealed if e["name"] == name)


@pytest.mark.parametrize("template", [".env.example", ".env.sample", "secret.yaml.template", ".env.qa.dist"])
def test_adopt_skips_templates_as_scan_does(repo, vector_key, template):
    """A template's placeholders never overwrite real values, and the template is not removed."""
    from ksecrets import scan

    (repo / "deploy" / template).write_text(
        "DATABASE_URL=changeme\nAPI_KEY=changeme\n" if template.startswith(".env") else SECRET.replace("leaked", "x")
    )
    before = (repo / "deploy" / template).read_bytes()
    res = run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa", "--name", "my-app-secrets")
    assert sealed_values(repo, vector_key)["API_KEY"] == b"leaked-api-key-123"
    assert (repo / "deploy" / template).read_bytes() == before
    assert f"skipped template (placeholders, not values; left as is): deploy/{template}" in res.stdout
    assert scan.is_template(template)  # the one list
    # Given alone, a template is refused with a line that says why; nothing changes.
    state = (repo / "Pulumi.qa.yaml").read_bytes()
    alone = run(repo, "ksecrets", "adopt", f"deploy/{template}", "--stack", "qa", "--name", "x", check=False)
    assert alone.returncode == 2 and "templates skipped" in alone.stderr
    assert (repo / "Pulumi.qa.yaml").read_bytes() == state and (repo / "deploy" / template).exists()


def test_adopt_keeps_labels_annotations_and_immutable(repo, vector_key):
    """The manifest's metadata goes into the entry, then into the exported SealedSecret's template."""
    (repo / "deploy" / "secret.yaml").write_text(
        SECRET.replace(
            "  namespace: my-app\n",
            "  namespace: my-app\n  labels:\n    team: payments\n    app.kubernetes.io/part-of: shop\n"
            "  annotations:\n    example.com/owner: ops\n    sealedsecrets.bitnami.com/namespace-wide: 'true'\n",
        )
        + "immutable: true\n"
    )
    run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa")
    entry = sealed_entry(repo)
    assert entry["labels"] == {"team": "payments", "app.kubernetes.io/part-of": "shop"}
    assert entry["annotations"] == {"example.com/owner": "ops"}  # the scope annotation became the scope
    assert entry["immutable"] is True and entry["scope"] == "namespace-wide"
    from ksecrets.config import load_stack
    from ksecrets.usecases.stack_facts import plan_stack

    objs = [p.obj for p in plan_stack(load_stack("qa", repo))]
    (ss,) = [o for o in objs if o["kind"] == "SealedSecret" and o["metadata"]["name"] == "my-app-secrets"]
    tmpl = ss["spec"]["template"]
    assert tmpl["metadata"]["labels"]["team"] == "payments"
    assert tmpl["metadata"]["annotations"]["example.com/owner"] == "ops"
    assert tmpl["immutable"] is True
    assert crypto.decrypt_value([vector_key], entry["encryptedData"]["API_KEY"], b"my-app") == b"leaked-api-key-123"


def _tree(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file under root (not .git): its type ('link' with its target, or 'file') and bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if ".git" in p.relative_to(root).parts:
            continue
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p).encode())
        elif p.is_file():
            out[str(p.relative_to(root))] = ("file", p.read_bytes())
    return out


@pytest.fixture
def split_repo(repo) -> Path:
    """The qa stack with its sealed values in an included file, and the stack file a symlink."""
    real = repo / "config" / "Pulumi.qa.yaml"
    real.parent.mkdir()
    text = (repo / "Pulumi.qa.yaml").read_text()
    (repo / "Pulumi.qa.yaml").unlink()
    real.write_text(text + "  k8s-secrets:sealed: stacks/qa/sealed.yaml\n")
    (repo / "Pulumi.qa.yaml").symlink_to("config/Pulumi.qa.yaml")
    (repo / "stacks" / "qa").mkdir(parents=True)
    (repo / "stacks" / "qa" / "sealed.yaml").write_text("[]\n")
    # The certificate path is relative to the link's folder (the project folder).
    (repo / "deploy" / "second.yaml").write_text(SECRET.replace("my-app-secrets", "second"))
    return repo


@pytest.mark.parametrize("fail", ["second-seal", "stack-write", "included-write", "remove"])
def test_adopt_rolls_back_every_file_it_wrote(split_repo, monkeypatch, fail):
    """A failure mid-way: every file (stack file, included file, plaintext) has its bytes and its
    type back; the symlinked stack file is still a symlink."""
    from ksecrets.usecases import adopt as adopt_mod
    from ksecrets import fileio
    from ksecrets.config import stackfile
    from ksecrets.errors import KsecretsError
    from ksecrets.usecases import seal_stack as stack_mod

    repo = split_repo
    before = _tree(repo)
    calls: list[str] = []
    if fail == "second-seal":
        real = stack_mod.seal_into_stack

        def flaky(*a, **kw):
            calls.append(a[2].name)  # the SealRequest
            if len(calls) == 2:
                raise KsecretsError("disk full")
            return real(*a, **kw)

        monkeypatch.setattr(stack_mod, "seal_into_stack", flaky)
    elif fail in ("stack-write", "included-write"):
        real_write = fileio.atomic_write_bytes
        target = "Pulumi.qa.yaml" if fail == "stack-write" else "sealed.yaml"
        writes = []

        def failing(path, data, mode=0o644, **kw):
            if Path(path).name == target:
                writes.append(path)
                if len(writes) == 2:  # the second Secret's write
                    raise OSError(28, "No space left on device")
            return real_write(path, data, mode, **kw)

        monkeypatch.setattr(stackfile, "atomic_write_bytes", failing)
        if fail == "stack-write":
            # Make each seal change the stack file too (another project's key, which ksecrets ignores),
            # so the second seal writes the included file and then fails on the stack file.
            real_prepare = stackfile.prepare_stack_update

            def touching(path, mutate, *, check=None):
                def both(config):
                    mutate(config)
                    config["other:counter"] = len(writes)

                return real_prepare(path, both, check=check)

            monkeypatch.setattr(stack_mod, "prepare_stack_update", touching)
    else:
        real_rename = os.rename

        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                raise OSError(13, "Permission denied")
            return real_rename(src, dst)

        monkeypatch.setattr(adopt_mod.os, "rename", rename)
    with pytest.raises((KsecretsError, OSError)):
        adopt_mod.adopt(repo / "deploy", repo, "qa", namespace="my-app")
    after = _tree(repo)
    assert after == before
    assert (repo / "Pulumi.qa.yaml").is_symlink()


def test_adopt_escapes_control_characters_in_file_names(repo):
    """A crafted file name cannot forge lines of the report (or of the purge command)."""
    evil = "x\nremoved from the working tree: nothing\x1b[2J.yaml"
    (repo / "deploy" / evil).write_text(SECRET.replace("my-app-secrets", "evil"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "evil")
    res = run(repo, "ksecrets", "adopt", "deploy", "--stack", "qa", "--namespace", "my-app")
    out = res.stdout + res.stderr
    assert "\x1b" not in out
    shown = "deploy/x\\nremoved from the working tree: nothing\\x1b[2J.yaml"
    assert [l for l in res.stdout.splitlines() if l.startswith("removed from the working tree")] == [
        f"removed from the working tree: deploy/secret.yaml, {shown}"
        if "deploy/secret.yaml" < f"deploy/{evil}"
        else f"removed from the working tree: {shown}, deploy/secret.yaml"
    ]
    assert any(l.startswith(shown + ": ") for l in res.stderr.splitlines())
    purge = next(l.strip() for l in res.stdout.splitlines() if l.strip().startswith("git filter-repo"))
    # The printed command, run by bash, names the file itself.
    argv = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {purge[len('git filter-repo --invert-paths ') :]}"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    assert f"deploy/{evil}".encode() in argv


def test_a_failed_write_is_one_line_and_changes_nothing(split_repo, monkeypatch, capsys):
    """ENOSPC on the included file's write, through the command: exit 2, one line, no traceback."""
    from ksecrets import fileio
    from ksecrets.cli import main
    from ksecrets.config import stackfile

    before = _tree(split_repo)
    real = fileio.atomic_write_bytes

    def full(path, data, mode=0o644, **kw):
        if Path(path).name == "sealed.yaml":
            raise OSError(28, "No space left on device")
        return real(path, data, mode, **kw)

    monkeypatch.setattr(stackfile, "atomic_write_bytes", full)
    monkeypatch.chdir(split_repo)
    code = main(["adopt", "deploy", "--stack", "qa", "--namespace", "my-app"])
    err = capsys.readouterr().err
    assert code == 2 and err == "ksecrets: sealed.yaml: cannot write it (No space left on device); nothing changed\n"
    assert _tree(split_repo) == before

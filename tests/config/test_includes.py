"""Big keys in files (`k8s-secrets:sealed: stacks/staging/sealed.yaml`), the writers that edit
them, and the guard for the kernel's limit on the one environment variable the Pulumi engine
passes the whole config in (README "Large stacks")."""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ksecrets import yamlio
from ksecrets.config import includes, load_stack_file
from ksecrets.config.includes import ENGINE_CONFIG_LIMIT, engine_config_size, size_problem

from tests.conftest import ksecrets_in_process

ROOT = Path(__file__).resolve().parents[2]


def ks(*args: str, cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    """The command in-process (its behaviour is the subject; `_ks_timed` runs the real process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    env.update(env_extra)
    return ksecrets_in_process(*args, cwd=cwd, env=env)


@pytest.fixture
def split_repo(repo_copy: Path) -> Path:
    res = ks("stack", "split", "--stack", "staging", cwd=repo_copy)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "stacks/staging/sealed.yaml: written; Pulumi.staging.yaml now names it (commit both)",
        "stacks/staging/apps.yaml: written; Pulumi.staging.yaml now names it (commit both)",
    ]
    return repo_copy


# --- the loader -----------------------------------------------------------------------------------


def test_split_stack_gives_the_same_model_and_the_same_export(split_repo):
    cfg = yaml.safe_load((split_repo / "Pulumi.staging.yaml").read_text())["config"]
    assert cfg["k8s-secrets:sealed"] == "stacks/staging/sealed.yaml"
    assert cfg["k8s-secrets:apps"] == "stacks/staging/apps.yaml"
    assert load_stack_file(split_repo / "Pulumi.staging.yaml") == dataclasses.replace(
        load_stack_file(ROOT / "Pulumi.staging.yaml"), root=str(split_repo)
    )
    # The committed k8s/ (rendered from the inline stack) is what the split stack exports.
    res = ks("export", "--check", cwd=split_repo)
    assert res.returncode == 0, res.stdout + res.stderr
    # The comment above the first app travelled with it.
    assert "# The guide's demo app" in (split_repo / "stacks/staging/apps.yaml").read_text()


def test_error_in_an_included_file_names_that_file_its_line_and_the_key_path(split_repo):
    path = split_repo / "stacks/staging/sealed.yaml"
    lines = path.read_text().splitlines(keepends=True)
    (i,) = [n for n, line in enumerate(lines) if line.strip() == "scope: strict"]
    lines[i] = lines[i].replace("strict", "everywhere")
    path.write_text("".join(lines))
    res = ks("export", "--check", cwd=split_repo)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"ksecrets: stacks/staging/sealed.yaml: line {i + 1}: sealed[0].scope: "
        '"everywhere" is not one of strict, namespace-wide, cluster-wide'
    )
    # A cross-check (an app's env names a key its Secret lacks) names the apps file and line too.
    apps = split_repo / "stacks/staging/apps.yaml"
    text = apps.read_text()
    apps.write_text(text.replace("DATABASE_URL: DATABASE_URL", "DATABASE_URL: NO_SUCH_KEY"))
    res = ks("doctor", cwd=split_repo)
    line = next(n for n, t in enumerate(apps.read_text().splitlines(), 1) if "NO_SUCH_KEY" in t)
    assert res.returncode == 2
    assert res.stderr.startswith(f"ksecrets: stacks/staging/sealed.yaml: line {i + 1}: ")  # still the first error
    path.write_text(path.read_text().replace("everywhere", "strict"))
    res = ks("doctor", cwd=split_repo)
    assert res.stderr.strip().startswith(
        f"ksecrets: stacks/staging/apps.yaml: line {line}: apps[0].deployments[0].env.DATABASE_URL: "
        'key "NO_SUCH_KEY" is not in Secret'
    ), res.stderr
    # Never a value: no ciphertext in any message.
    assert "Ag" not in res.stderr


@pytest.mark.parametrize(
    "ref, problem",
    [
        ("/etc/passwd.yaml", "must be relative to the project folder (the folder of Pulumi.yaml)"),
        ("../outside.yaml", "leaves the project folder"),
        ("link/sealed.yaml", "leaves the project folder"),
        ("stacks/staging/sealed.json", "must name a .yaml file that is not a Pulumi stack or project file"),
        ("Pulumi.production.yaml", "must name a .yaml file that is not a Pulumi stack or project file"),
        ("stacks/staging/missing.yaml", "no such file"),
        ("stacks/staging", "must name a .yaml file that is not a Pulumi stack or project file"),
    ],
)
def test_bad_references_are_one_line_naming_the_stack_file_and_key(split_repo, tmp_path, ref, problem):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sealed.yaml").write_text("[]\n")
    (split_repo / "link").symlink_to(tmp_path / "outside")
    path = split_repo / "Pulumi.staging.yaml"
    path.write_text(
        path.read_text().replace("k8s-secrets:sealed: stacks/staging/sealed.yaml", f"k8s-secrets:sealed: {ref}")
    )
    before = sorted(p.relative_to(split_repo) for p in split_repo.rglob("*"))
    res = ks("export", cwd=split_repo)
    assert res.returncode == 2
    assert res.stderr.strip() == f"ksecrets: Pulumi.staging.yaml: sealed: {ref!r}: {problem}"
    assert sorted(p.relative_to(split_repo) for p in split_repo.rglob("*")) == before


def test_the_program_reads_the_file_under_pulumi(split_repo, monkeypatch):
    """The Pulumi adapter (what `pulumi up` runs) resolves the file from the project folder."""
    from components.pulumi_source import load_from_pulumi
    from tests.pulumi_harness import run_program

    monkeypatch.chdir(split_repo)
    config = yaml.safe_load((split_repo / "Pulumi.staging.yaml").read_text())["config"]
    holder = {}
    run_program(lambda: holder.setdefault("cfg", load_from_pulumi()[0]), stack="staging", config=config)
    assert holder["cfg"] == load_stack_file(split_repo / "Pulumi.staging.yaml")
    assert holder["cfg"].sealed and holder["cfg"].apps


# --- writers --------------------------------------------------------------------------------------


def test_seal_writes_into_the_included_file_keeping_comments(split_repo):
    sealed = split_repo / "stacks/staging/sealed.yaml"
    sealed.write_text("# sealed values of staging (ksecrets stack split)\n" + sealed.read_text())
    stack_before = (split_repo / "Pulumi.staging.yaml").read_bytes()
    res = ks(
        "seal",
        "--stack",
        "staging",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "NEW_KEY=a-value-0001",
        cwd=split_repo,
    )
    assert res.returncode == 0, res.stderr
    assert (split_repo / "Pulumi.staging.yaml").read_bytes() == stack_before
    text = sealed.read_text()
    assert text.startswith("# sealed values of staging (ksecrets stack split)\n- name: my-app-secrets\n")
    entry = yaml.safe_load(text)[0]
    assert sorted(entry["encryptedData"]) == ["API_KEY", "DATABASE_URL", "NEW_KEY"]
    assert "a-value-0001" not in text
    # A second Secret in a namespace nobody declares is refused by the loader: nothing changes.
    res = ks(
        "seal",
        "--stack",
        "staging",
        "--name",
        "other",
        "--namespace",
        "Bad_NS",
        "--from-literal",
        "K=v",
        cwd=split_repo,
    )
    assert res.returncode == 2 and sealed.read_text() == text
    assert not [p for p in sealed.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_write_that_fails_validation_leaves_both_files(split_repo):
    """`app add` of an app whose env names a key the stack's Secret lacks: refused, nothing written."""
    apps = split_repo / "stacks/staging/apps.yaml"
    before = apps.read_bytes(), (split_repo / "Pulumi.staging.yaml").read_bytes()
    res = ks(
        "app",
        "add",
        "--stack",
        "staging",
        "--name",
        "billing",
        "--namespace",
        "my-app",
        "--image",
        "ghcr.io/stefanprodan/podinfo:6.7.1",
        "--secret-name",
        "my-app-secrets",
        cwd=split_repo,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert (apps.read_bytes(), (split_repo / "Pulumi.staging.yaml").read_bytes()) == before
    res = ks(
        "app",
        "add",
        "--stack",
        "staging",
        "--name",
        "billing",
        "--image",
        "ghcr.io/stefanprodan/podinfo:6.7.1",
        cwd=split_repo,
    )
    assert res.returncode == 0, res.stderr
    assert (split_repo / "Pulumi.staging.yaml").read_bytes() == before[1]
    assert [a["name"] for a in yaml.safe_load(apps.read_text())] == ["my-app", "billing"]
    assert [a.name for a in load_stack_file(split_repo / "Pulumi.staging.yaml").apps] == ["my-app", "billing"]


def test_stack_new_from_a_split_stack_copies_apps_never_values(split_repo):
    res = ks("stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging", cwd=split_repo)
    assert res.returncode == 0, res.stderr
    qa = load_stack_file(split_repo / "Pulumi.qa.yaml")
    staging = load_stack_file(split_repo / "Pulumi.staging.yaml")
    assert qa.sealed == () and [a.name for a in qa.apps] == [a.name for a in staging.apps]
    assert qa.apps[0].keys == ("API_KEY", "DATABASE_URL")  # the key names travel, never the values
    assert "Ag" not in (split_repo / "Pulumi.qa.yaml").read_text()


def test_reseal_and_verify_read_the_included_file(split_repo, tmp_path):
    """keygen, seal, split, then a new key: `reseal` moves every value in the file, `verify` and
    `unseal` read it there."""
    pw = {"KSECRETS_BACKUP_PASSPHRASE": "a-long-enough-test-passphrase"}
    assert ks("stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging", cwd=split_repo).returncode == 0
    res = ks("keygen", "--stack", "qa", "--backup-file", str(tmp_path / "old.ksbackup"), cwd=split_repo, **pw)
    assert res.returncode == 0, res.stderr
    res = ks(
        "seal",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--from-literal",
        "API_KEY=first-value-01",
        "--from-literal",
        "DATABASE_URL=postgres://qa",
        cwd=split_repo,
    )
    assert res.returncode == 0, res.stderr
    assert ks("stack", "split", "--stack", "qa", "--key", "sealed", cwd=split_repo).returncode == 0
    sealed = split_repo / "stacks/qa/sealed.yaml"
    first = yaml.safe_load(sealed.read_text())[0]["certificateFingerprint"]
    res = ks(
        "keygen", "--stack", "qa", "--force", "--backup-file", str(tmp_path / "new.ksbackup"), cwd=split_repo, **pw
    )
    assert res.returncode == 0, res.stderr
    res = ks("verify", "--stack", "qa", cwd=split_repo)
    assert res.returncode == 1 and "qa" in res.stdout + res.stderr
    stack_before = (split_repo / "Pulumi.qa.yaml").read_bytes()
    res = ks(
        "reseal",
        "--stack",
        "qa",
        "--backup",
        str(tmp_path / "old.ksbackup"),
        "--cert",
        "certs/qa.pem",
        cwd=split_repo,
        **pw,
    )
    assert res.returncode == 0, res.stderr
    assert (split_repo / "Pulumi.qa.yaml").read_bytes() == stack_before
    assert yaml.safe_load(sealed.read_text())[0]["certificateFingerprint"] != first
    res = ks("verify", "--stack", "qa", cwd=split_repo)
    assert res.returncode == 0, res.stdout + res.stderr
    res = ks(
        "unseal",
        "--stack",
        "qa",
        "--name",
        "my-app-secrets",
        "--namespace",
        "my-app",
        "--backup",
        str(tmp_path / "new.ksbackup"),
        cwd=split_repo,
        **pw,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["data"]["API_KEY"] == base64.b64encode(b"first-value-01").decode()


# --- the engine's limit ---------------------------------------------------------------------------


def _exec_with_config(value: str) -> int | None:
    """Start a real process with PULUMI_CONFIG=value as the engine starts the program: None when
    the kernel accepts it, else the errno."""
    try:
        subprocess.run(["/bin/true"], env={"PULUMI_CONFIG": value}, check=True)
    except OSError as exc:
        return exc.errno
    return None


def test_the_limit_is_the_kernels():
    assert _exec_with_config("x" * ENGINE_CONFIG_LIMIT) is None
    assert _exec_with_config("x" * (ENGINE_CONFIG_LIMIT + 1)) == errno.E2BIG


def test_the_measure_is_the_engines_format():
    """JSON of every key, sorted; structured values as compact JSON strings (Go's encoding/json,
    which escapes <, > and &); a secure value decrypted (the passphrase ciphertext is 16 bytes
    longer than the plaintext). tests/e2e/test_pulumi_large.py compares with the real engine."""
    config = {
        "k8s-secrets:apps": [{"name": "a", "namespace": "b", "note": "<&>é"}],
        "kubernetes:context": "x",
        "k8s-secrets:pw": {"secure": "v1:AAAA:" + base64.b64encode(b"p" * 12 + b"t" * 16).decode()},
        "backend": "manual",
    }
    # What the engine sets, written out (the e2e test reads the real one from a running program).
    engine = (
        r'{"k8s-secrets:apps":"[{\"name\":\"a\",\"namespace\":\"b\",\"note\":\"\\u003c\\u0026\\u003eé\"}]",'
        r'"k8s-secrets:backend":"manual","k8s-secrets:namespaces":"[]","k8s-secrets:pw":"pppppppppppp",'
        r'"kubernetes:context":"x"}'
    )
    assert json.loads(json.loads(engine)["k8s-secrets:apps"])[0]["note"] == "<&>é"
    assert engine_config_size(config, {"namespaces": []}) == len(engine.encode())


def _stack_of_size(root: Path, size: int) -> Path:
    """A stack file whose config, as the engine passes it, is exactly `size` bytes."""
    base = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())
    base["config"]["other:padding"] = ""
    defaults = includes.project_defaults(ROOT)
    pad = size - engine_config_size(base["config"], defaults)
    base["config"]["other:padding"] = "p" * pad
    path = root / "Pulumi.staging.yaml"
    path.write_text(yamlio.dump(base))
    assert engine_config_size(yaml.safe_load(path.read_text())["config"], defaults) == size
    return path


def test_doctor_fails_one_line_just_over_the_limit_and_passes_just_under(repo_copy):
    _stack_of_size(repo_copy, ENGINE_CONFIG_LIMIT)
    res = ks("doctor", "--stack", "staging", cwd=repo_copy)
    assert res.returncode == 0, res.stdout + res.stderr
    assert size_problem(repo_copy / "Pulumi.staging.yaml") is None
    _stack_of_size(repo_copy, ENGINE_CONFIG_LIMIT + 1)
    res = ks("doctor", "--stack", "staging", cwd=repo_copy)
    assert res.returncode == 1
    (line,) = [line for line in res.stdout.splitlines() if "PULUMI_CONFIG" in line]
    assert line.startswith(
        "FAIL: Pulumi.staging.yaml: the config the Pulumi engine passes in PULUMI_CONFIG is "
        "128.0 KiB (131,058 bytes), over Linux's 128.0 KiB for one environment variable "
        '(pulumi preview/up fail with "argument list too long"); biggest keys: other:padding '
    )
    assert line.endswith(
        "; move k8s-secrets:sealed and k8s-secrets:apps into a file "
        '(`ksecrets stack split --stack staging`; README "Large stacks")'
    ), line


def test_a_large_sealed_stack_fails_doctor_until_split(repo_copy):
    """100 apps: inline, over the limit (the engine could not start the program); split, far under."""
    sys.path.insert(0, str(ROOT))
    from bench.export import stack_doc

    doc = stack_doc(100)
    doc["config"]["k8s-secrets:sealedSecrets"]["certificate"] = "certs/staging.pem"
    (repo_copy / "Pulumi.staging.yaml").write_text(yamlio.dump(doc))
    (repo_copy / "Pulumi.production.yaml").unlink()
    res = ks("doctor", cwd=repo_copy)
    assert res.returncode == 1
    problem = [line for line in res.stdout.splitlines() if "PULUMI_CONFIG" in line]
    assert len(problem) == 1 and "biggest keys: k8s-secrets:sealed 2" in problem[0], res.stdout
    assert "move k8s-secrets:sealed and k8s-secrets:apps into a file" in problem[0]
    assert ks("stack", "split", "--stack", "staging", cwd=repo_copy).returncode == 0
    res = ks("doctor", cwd=repo_copy)
    assert "PULUMI_CONFIG" not in res.stdout
    size = engine_config_size(
        yaml.safe_load((repo_copy / "Pulumi.staging.yaml").read_text())["config"], includes.project_defaults(ROOT)
    )
    assert size < 4096


def test_migrate_prepare_writes_the_apps_file(split_repo):
    stack_before = (split_repo / "Pulumi.staging.yaml").read_text()
    res = ks("migrate", "--stack", "staging", "--to", "vault", "--prepare", cwd=split_repo)
    assert res.returncode == 0, res.stderr
    apps = yaml.safe_load((split_repo / "stacks/staging/apps.yaml").read_text())
    assert apps[0]["vault"] == {"path": "my-app"}
    after = (split_repo / "Pulumi.staging.yaml").read_text()
    # The stack file gets the phase and an empty vault section; the apps stay in their file.
    assert (
        after.replace("  k8s-secrets:vaultMigration: install\n", "").replace("  k8s-secrets:vault: {}\n", "")
        == stack_before
    )
    assert load_stack_file(split_repo / "Pulumi.staging.yaml").vault_migration == "install"


def test_adopt_seals_into_the_included_file(split_repo):
    env_file = split_repo / ".env.staging"
    env_file.write_text("API_KEY=adopted-value-0001\nEXTRA=adopted-extra-0002\n")
    stack_before = (split_repo / "Pulumi.staging.yaml").read_bytes()
    res = ks("adopt", ".env.staging", "--stack", "staging", "--name", "my-app-secrets", cwd=split_repo)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not env_file.exists()
    assert (split_repo / "Pulumi.staging.yaml").read_bytes() == stack_before
    text = (split_repo / "stacks/staging/sealed.yaml").read_text()
    assert "EXTRA" in yaml.safe_load(text)[0]["encryptedData"] and "adopted-" not in text


# --- issue 18: hostile included paths, and one file shared by two stacks --------------------------


def _ks_timed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    return subprocess.run(
        [sys.executable, "-m", "ksecrets", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=30
    )


_COMMANDS = {
    "export": ("export", "--check"),
    "doctor": ("doctor", "--stack", "staging"),
    "verify": ("verify", "--stack", "staging"),
    "seal": ("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "K=v12345678"),
    "stack new": ("stack", "new", "qa", "--backend", "sealed-secrets", "--from", "staging"),
}
_CASES = [("fifo", c) for c in _COMMANDS] + [("directory", "export"), ("fifo stack file", "export")]
_CASES += [("fifo stack file", "seal"), ("device", "export"), ("device", "seal")]


@pytest.mark.parametrize(("kind", "command"), _CASES)
def test_an_included_path_that_is_no_regular_file_is_refused_without_blocking(split_repo, kind, command):
    """A FIFO with no writer would block the read forever: refused (one line, exit 2) in time."""
    sealed = split_repo / "stacks" / "staging" / "sealed.yaml"
    if kind == "fifo stack file":
        target = split_repo / "Pulumi.staging.yaml"
        target.unlink()
        os.mkfifo(target)
        shown = "Pulumi.staging.yaml: is a FIFO, not a regular file"
    elif kind == "device":
        import stat

        sealed.unlink()
        try:  # /dev/zero's numbers: read whole, it would never end
            os.mknod(sealed, stat.S_IFCHR | 0o600, os.makedev(1, 5))
        except PermissionError:
            pytest.skip("mknod needs CAP_MKNOD here")
        shown = "Pulumi.staging.yaml: sealed: 'stacks/staging/sealed.yaml': is a device"
    else:
        sealed.unlink()
        os.mkfifo(sealed) if kind == "fifo" else sealed.mkdir()
        shown = "Pulumi.staging.yaml: sealed: 'stacks/staging/sealed.yaml': is a " + (
            "FIFO" if kind == "fifo" else "directory"
        )
    res = _ks_timed(*_COMMANDS[command], cwd=split_repo)
    assert res.returncode == 2, (res.stdout, res.stderr)
    if command == "seal" and kind == "fifo stack file":  # the writers' own words (fileio.editable_target)
        shown = "Pulumi.staging.yaml: stack file is not a regular file"
    assert res.stderr.count("\n") == 1 and shown in res.stderr, res.stderr


@pytest.fixture
def shared_repo(split_repo: Path) -> Path:
    """Stack qa (a copy of staging) whose sealed values are staging's file, through a symlink."""
    text = (split_repo / "Pulumi.staging.yaml").read_text()
    (split_repo / "Pulumi.qa.yaml").write_text(text.replace("stacks/staging/sealed.yaml", "stacks/qa/sealed.yaml"))
    (split_repo / "stacks" / "qa").mkdir()
    (split_repo / "stacks" / "qa" / "sealed.yaml").symlink_to("../staging/sealed.yaml")
    return split_repo


@pytest.mark.parametrize(
    "argv",
    [
        ("export", "--check"),
        ("verify",),
        ("doctor", "--stack", "staging"),
        ("doctor", "--stack", "qa"),
        ("seal", "--stack", "qa", "--name", "my-app-secrets", "--from-literal", "K=v12345678"),
        ("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", "K=v12345678"),
        ("app", "add", "--stack", "qa", "--name", "zz", "--keys", "A"),
    ],
    ids=" ".join,
)
def test_two_stacks_cannot_share_an_included_file(shared_repo, argv):
    """Refused in the loader and by the writers: one line naming both stack files, nothing written."""
    before = {p: p.read_bytes() for p in shared_repo.rglob("*") if p.is_file()}
    res = _ks_timed(*argv, cwd=shared_repo)
    assert res.returncode == 2, (res.stdout, res.stderr)
    (line,) = res.stderr.splitlines()
    assert "stacks cannot share an included file" in line
    assert "Pulumi.qa.yaml" in line and "Pulumi.staging.yaml" in line, line
    assert {p: p.read_bytes() for p in shared_repo.rglob("*") if p.is_file()} == before


def test_one_stack_cannot_name_one_file_for_both_keys(split_repo):
    stack = split_repo / "Pulumi.staging.yaml"
    stack.write_text(stack.read_text().replace("stacks/staging/apps.yaml", "stacks/staging/sealed.yaml"))
    res = _ks_timed("doctor", "--stack", "staging", cwd=split_repo)
    assert res.returncode == 2 and "is also named by its own" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["export", "seal", "verify"])
def test_a_certificate_the_stack_names_that_is_a_fifo_is_refused_without_blocking(repo_copy, command):
    cert = repo_copy / "certs" / "staging.pem"
    cert.unlink()
    os.mkfifo(cert)
    res = _ks_timed(*_COMMANDS[command], cwd=repo_copy)
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
    # Each command in its own words (export checks the path first, verify lists it on stdout).
    assert "certs/staging.pem" in res.stdout + res.stderr
    if command == "seal":
        assert "certificate file is a FIFO, not a regular file" in res.stderr, res.stderr

"""A sops stack's age keys (issue 20 §2): `ksecrets keygen --stack S` (recipient into the stack,
identity only in the encrypted backup and the cluster Secret, `ksecrets restore` of it) and
`ksecrets sops updatekeys` (every file re-keyed, values untouched, all or nothing).

Real: pyrage's age, the project's SOPS format, the backup file format, and the real `sops` v3 from
the e2e tool cache as the oracle where it is built (else those checks skip)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ksecrets.config import load_stack_file
from ksecrets.sealing import sops
from tests.backends.test_sops import SECRET, STACK, env_file

PASS = "a backup passphrase for tests"


@pytest.fixture(autouse=True)
def backup_env(monkeypatch):
    monkeypatch.setenv("KSECRETS_BACKUP_PASSPHRASE", PASS)
    monkeypatch.setenv("KSECRETS_BACKUP_SCRYPT_LOG2N", "14")
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)


@pytest.fixture
def empty_stack(tmp_path):
    """A sops stack without recipients (as `stack new --backend sops` writes it), in a git repo."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "Pulumi.dev.yaml").write_text(STACK.replace("recipients: [{recipient}]", "recipients: []"))
    return root


def sops_bin() -> Path | None:
    from tests.e2e.harness import binaries, missing_binaries

    return None if missing_binaries(["sops"]) else binaries()["sops"]


def real_sops_decrypt(path: Path, key_file: Path) -> subprocess.CompletedProcess:
    binary = sops_bin()
    assert binary is not None
    env = {"PATH": "/usr/bin:/bin", "HOME": str(path.parent), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return subprocess.run(
        [str(binary), "decrypt", "--input-type", "yaml", "--output-type", "json", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def no_identity_under(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and ".git" not in p.relative_to(root).parts[:1]:
            assert b"AGE-SECRET-KEY" not in p.read_bytes().upper(), p


def keygen(cli, root: Path, backup: Path, *more: str):
    return cli("keygen", "--stack", "dev", "--backup-file", str(backup), "--root", str(root), *more)


def sops_set(cli, root: Path, values: dict[str, str], key_file: Path | None = None, name: str = "web-secrets"):
    env = env_file(root.parent / f"{name}.env", values)
    more = ["--age-key-file", str(key_file)] if key_file else []
    if name != "web-secrets":
        more += ["--namespace", "web"]
    return cli("sops", "set", "--stack", "dev", "--name", name, "--from-env-file", str(env), "--root", str(root), *more)


# --- keygen ---------------------------------------------------------------------------------------


def test_keygen_makes_the_age_key_backup_secret_and_recipient(empty_stack, cli, tmp_path):
    root = empty_stack
    backup, key_out = tmp_path / "dev-age.ksbackup", tmp_path / "dev.agekey"
    result = keygen(cli, root, backup, "--print-secret", "--age-key-out", str(key_out))
    assert result.code == 0, result.err
    recipients = load_stack_file(root / "Pulumi.dev.yaml").sops.recipients
    assert len(recipients) == 1 and recipients[0].startswith("age1")
    # The printed Secret is the one the apps Kustomization's decryption.secretRef names.
    secret = yaml.safe_load(result.out)
    assert secret["metadata"] == {"name": "sops-age", "namespace": "flux-system"}
    assert list(secret["data"]) == ["age.agekey"] and "labels" not in secret["metadata"]
    key_text = base64.b64decode(secret["data"]["age.agekey"]).decode()
    assert key_out.read_text() == key_text and oct(key_out.stat().st_mode & 0o777) == "0o600"
    (identity,) = sops.identities_from_key_file(key_text, "key")
    assert sops.recipient_of(identity, "key") == recipients[0]
    assert oct(backup.stat().st_mode & 0o777) == "0o600" and b"AGE-SECRET-KEY" not in backup.read_bytes()
    # The key decrypts what is written for the new recipient.
    assert sops_set(cli, root, {"PASSWORD": "hunter2"}).code == 0
    text = (root / SECRET).read_text()
    assert sops.secret_values(text, [identity], SECRET) == {"PASSWORD": b"hunter2"}
    no_identity_under(root)
    if sops_bin() is not None:  # the real sops, with the key file keygen wrote
        proc = real_sops_decrypt(root / SECRET, key_out)
        assert proc.returncode == 0, proc.stderr
    # Backup round trip: `ksecrets restore` gives the same Secret, and the key file again.
    restored = cli("restore", "--backup", str(backup))
    assert restored.code == 0, restored.err
    assert yaml.safe_load(restored.out) == secret
    again = tmp_path / "again.agekey"
    assert cli("restore", "--backup", str(backup), "--age-key-out", str(again)).code == 0
    assert sops.identities_from_key_file(again.read_text(), "again") == [identity]
    assert sops.secret_values(text, sops.identities_from_key_file(again.read_text(), "a"), SECRET)


def test_keygen_adds_a_second_recipient_only_when_asked_and_keeps_the_first(empty_stack, cli, tmp_path):
    root = empty_stack
    assert keygen(cli, root, tmp_path / "a.ksbackup", "--age-key-out", str(tmp_path / "a.agekey")).code == 0
    first = load_stack_file(root / "Pulumi.dev.yaml").sops.recipients
    stack_text = (root / "Pulumi.dev.yaml").read_text()
    refused = keygen(cli, root, tmp_path / "b.ksbackup")
    assert refused.code == 2 and "--add" in refused.err and len(refused.err.splitlines()) == 1
    assert (root / "Pulumi.dev.yaml").read_text() == stack_text and not (tmp_path / "b.ksbackup").exists()
    assert sops_set(cli, root, {"A": "1"}).code == 0
    added = keygen(cli, root, tmp_path / "b.ksbackup", "--add", "--age-key-out", str(tmp_path / "b.agekey"))
    assert added.code == 0, added.err
    assert "sops updatekeys" in added.err  # the existing file is not for the new key yet
    both = load_stack_file(root / "Pulumi.dev.yaml").sops.recipients
    assert both[:1] == first and len(both) == 2
    no_identity_under(root)


def test_keygen_never_writes_the_key_into_the_repository(empty_stack, cli, tmp_path):
    root = empty_stack
    stack_text = (root / "Pulumi.dev.yaml").read_text()
    inside = keygen(cli, root, tmp_path / "a.ksbackup", "--age-key-out", str(root / "dev.agekey"))
    assert inside.code == 2 and "inside the repository" in inside.err
    assert not (root / "dev.agekey").exists() and not (tmp_path / "a.ksbackup").exists()
    assert (root / "Pulumi.dev.yaml").read_text() == stack_text
    result = cli("keygen", "--stack", "dev", "--backup-file", str(tmp_path / "x"), "--force", "--root", str(root))
    assert result.code == 2 and "--add" in result.err


def test_backup_from_stdin_takes_an_age_key_secret(cli, tmp_path):
    from tests.conftest import run_ksecrets

    key = sops.generate_age_key()
    secret = sops.key_secret_manifest(key.key_file(), "sops-age", "flux-system")
    result = run_ksecrets("backup", "--out", str(tmp_path / "k.ksbackup"), cwd=tmp_path, stdin=yaml.safe_dump(secret))
    assert result.returncode == 0, result.stderr
    assert key.recipient in result.stderr
    assert yaml.safe_load(cli("restore", "--backup", str(tmp_path / "k.ksbackup")).out) == secret


# --- updatekeys -----------------------------------------------------------------------------------


def two_key_stack(cli, root: Path, tmp_path: Path, files: int = 3):
    """A stack keyed for a, with `files` SOPS files; then b added (keygen --add)."""
    assert keygen(cli, root, tmp_path / "a.ksbackup", "--age-key-out", str(tmp_path / "a.agekey")).code == 0
    for n in range(files):
        assert sops_set(cli, root, {"K": f"v{n}", "EMPTY": "", "EQ": "a=b"}, name=f"s{n}").code == 0
    assert keygen(cli, root, tmp_path / "b.ksbackup", "--add", "--age-key-out", str(tmp_path / "b.agekey")).code == 0
    return tmp_path / "a.agekey", tmp_path / "b.agekey"


def set_recipients(root: Path, recipients: list[str]) -> None:
    path = root / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["k8s-secrets:sops"]["recipients"] = recipients
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def ids(path: Path) -> list[str]:
    return sops.identities_from_key_file(path.read_text(), str(path))


def test_updatekeys_rekeys_every_file_values_and_mac_untouched(empty_stack, cli, tmp_path):
    root = empty_stack
    a_file, b_file = two_key_stack(cli, root, tmp_path)
    paths = sorted((root / "secrets" / "dev").glob("*.sops.yaml"))
    before = {p: yaml.safe_load(p.read_text()) for p in paths}
    for p in paths:  # not yet for b
        with pytest.raises(sops.SopsError):
            sops.decrypt(p.read_text(), ids(b_file), p.name)
    result = cli("sops", "updatekeys", "--stack", "dev", "--age-key-file", str(a_file), "--root", str(root))
    assert result.code == 0, result.err
    assert f"{len(paths)} file(s) re-keyed" in result.out
    for p in paths:
        after = yaml.safe_load(p.read_text())
        assert after["data"] == before[p]["data"]  # every value's ciphertext as it was
        assert after["sops"]["mac"] == before[p]["sops"]["mac"]
        assert after["sops"]["lastmodified"] == before[p]["sops"]["lastmodified"]
        assert sops.decrypt(p.read_text(), ids(b_file), p.name) == sops.decrypt(p.read_text(), ids(a_file), p.name)
        if sops_bin() is not None:
            assert real_sops_decrypt(p, b_file).returncode == 0
            assert real_sops_decrypt(p, a_file).returncode == 0
    # a leaves: b re-keys the tree for b alone; a's key no longer opens any file.
    set_recipients(root, [load_stack_file(root / "Pulumi.dev.yaml").sops.recipients[1]])
    result = cli("sops", "updatekeys", "--all-stacks", "--age-key-file", str(b_file), "--root", str(root))
    assert result.code == 0, result.err
    for p in paths:
        assert sops.decrypt(p.read_text(), ids(b_file), p.name)["data"]["K"]
        with pytest.raises(sops.SopsError):
            sops.decrypt(p.read_text(), ids(a_file), p.name)
        if sops_bin() is not None:
            assert real_sops_decrypt(p, b_file).returncode == 0
            bad = real_sops_decrypt(p, a_file)
            assert bad.returncode != 0 and "failed to get the data key" in bad.stderr.lower() + bad.stdout.lower()
    # Again: nothing to do.
    result = cli("sops", "updatekeys", "--env", "dev", "--age-key-file", str(b_file), "--root", str(root))
    assert result.code == 0 and "0 file(s) re-keyed" in result.out


def test_updatekeys_is_all_or_nothing(empty_stack, cli, tmp_path):
    root = empty_stack
    a_file, b_file = two_key_stack(cli, root, tmp_path)
    # One file encrypted for someone else only: a cannot open it.
    other = sops.generate_age_key()
    stray = root / "secrets" / "dev" / "s1.sops.yaml"
    stray.write_text(sops.updatekeys(stray.read_text(), ids(a_file), [other.recipient], "s1"))
    tree = {p: p.read_bytes() for p in (root / "secrets").rglob("*.yaml")}
    result = cli("sops", "updatekeys", "--stack", "dev", "--age-key-file", str(a_file), "--root", str(root))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert "secrets/dev/s1.sops.yaml" in result.err and "none of the given age identities" in result.err
    assert {p: p.read_bytes() for p in (root / "secrets").rglob("*.yaml")} == tree  # nothing written
    # A file whose MAC fails is refused the same way.
    stray.write_text(
        sops.updatekeys(
            stray.read_text(), [other.identity], [load_stack_file(root / "Pulumi.dev.yaml").sops.recipients[0]], "s1"
        )
    )
    doc = yaml.safe_load(stray.read_text())
    doc["data"]["K"], doc["data"]["EQ"] = doc["data"]["EQ"], doc["data"]["K"]  # swapped ciphertexts
    stray.write_text(yaml.safe_dump(doc, sort_keys=False))
    tree = {p: p.read_bytes() for p in (root / "secrets").rglob("*.yaml")}
    result = cli("sops", "updatekeys", "--stack", "dev", "--age-key-file", str(a_file), "--root", str(root))
    assert result.code == 2 and "s1.sops.yaml" in result.err
    assert {p: p.read_bytes() for p in (root / "secrets").rglob("*.yaml")} == tree


def test_updatekeys_needs_a_key_and_a_sops_stack(empty_stack, cli, tmp_path):
    root = empty_stack
    result = cli("sops", "updatekeys", "--stack", "dev", "--root", str(root))
    assert result.code == 2 and "SOPS_AGE_KEY_FILE" in result.err
    key = sops.generate_age_key()
    kf = tmp_path / "k.agekey"
    kf.write_text(key.key_file())
    (root / "Pulumi.other.yaml").write_text("config:\n  k8s-secrets:backend: manual\n")
    result = cli("sops", "updatekeys", "--stack", "other", "--age-key-file", str(kf), "--root", str(root))
    assert result.code == 2 and "not a sops stack" in result.err
    os.environ.pop("SOPS_AGE_KEY_FILE", None)


def test_backup_check_of_a_folder_with_an_age_key_backup(empty_stack, cli, tmp_path):
    """`backup --check DIR` counts sealing keys; an age key backup in the folder is no error."""
    safe = tmp_path / "safe"
    safe.mkdir()
    assert keygen(cli, empty_stack, safe / "dev-age.ksbackup").code == 0
    result = cli("backup", "--check", str(safe), "--root", str(empty_stack))
    assert "has no data.tls.key" not in result.err, result.err

"""Backend sops (issue 20 §2): the stack's config, `ksecrets sops set` writing the committed SOPS
Secrets, and `ksecrets export` copying them into the apps layer as they are with the apps
Kustomization's `decryption`. Real: pyrage's age, the project's SOPS format, and the real `sops`
v3 (from the e2e tool cache, when built) decrypting what `sops set` wrote."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets.config import load_stack_file
from ksecrets.sealing import sops
from ksecrets.usecases.stack_facts import plan_stack

STACK = """\
config:
  kubernetes:context: dev
  k8s-secrets:backend: sops
  k8s-secrets:sops:
    recipients: [{recipient}]
  k8s-secrets:monitoring:
    enabled: false
  k8s-secrets:apps:
    - name: web
      namespace: web
      secretName: web-secrets
      deployments:
        - name: web
          image: ghcr.io/stefanprodan/podinfo:6.7.1
          envFrom: true
"""
SECRET = "secrets/dev/web-secrets.sops.yaml"
EXPORTED = "k8s/dev/apps/secret-web-secrets.sops.yaml"


def make_repo(root: Path) -> tuple[sops.AgeKey, Path]:
    key = sops.generate_age_key()
    (root / "Pulumi.dev.yaml").write_text(STACK.format(recipient=key.recipient))
    key_file = root / "dev.agekey"
    key_file.write_text(key.key_file())
    return key, key_file


@pytest.fixture
def repo(tmp_path):
    key, key_file = make_repo(tmp_path)
    return tmp_path, key, key_file


def env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


# --- config ---------------------------------------------------------------------------------------


def test_sops_config_defaults_and_recipients(repo):
    root, key, _ = repo
    cfg = load_stack_file(root / "Pulumi.dev.yaml")
    assert cfg.spec.sops_files and not (cfg.spec.seals or cfg.spec.vault or cfg.spec.pulumi_values)
    assert cfg.sops.recipients == (key.recipient,)
    assert cfg.sops.key_secret == "sops-age"


@pytest.mark.parametrize("bad", ["age1short", "AGE1" + "q" * 58, "age1" + "b" * 58, "ssh-ed25519 AAAA"])
def test_a_recipient_that_is_not_age_is_refused(tmp_path, cli, bad):
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK.format(recipient=json.dumps(bad)))
    result = cli("export", "--root", str(tmp_path))
    assert result.code == 2
    assert result.err.startswith("ksecrets: Pulumi.dev.yaml: ") and "sops.recipients[0]" in result.err
    assert "not an age X25519 recipient" in result.err and len(result.err.splitlines()) == 1


# --- sops set -------------------------------------------------------------------------------------


def test_sops_set_creates_then_edits_and_keeps_other_ciphertexts(repo, cli):
    root, key, key_file = repo
    first = env_file(root / ".env", {"PASSWORD": "hunter2", "API_URL": "https://api.example"})
    result = cli(
        "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(first), "--root", str(root)
    )
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"{SECRET}: created (web/web-secrets)"
    text = (root / SECRET).read_text()
    assert "hunter2" not in text and base64.b64encode(b"hunter2").decode() not in text
    assert sops.secret_values(text, [key.identity], SECRET) == {
        "PASSWORD": b"hunter2",
        "API_URL": b"https://api.example",
    }
    before = yaml.safe_load(text)["data"]

    second = env_file(root / ".env2", {"PASSWORD": "correct horse", "EXTRA": "x"})
    # Editing needs the key: none given, refused, nothing written.
    result = cli(
        "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(second), "--root", str(root)
    )
    assert result.code == 2 and "--age-key-file" in result.err and (root / SECRET).read_text() == text
    result = cli(
        "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(second),
        "--age-key-file", str(key_file), "--root", str(root),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "edited" in result.out and "set: EXTRA, PASSWORD" in result.out
    after_text = (root / SECRET).read_text()
    after = yaml.safe_load(after_text)["data"]
    assert after["API_URL"] == before["API_URL"]  # not in the env file: its ciphertext untouched
    assert after["PASSWORD"] != before["PASSWORD"]
    assert sops.secret_values(after_text, [key.identity], SECRET) == {
        "PASSWORD": b"correct horse",
        "API_URL": b"https://api.example",
        "EXTRA": b"x",
    }


def test_sops_set_refuses_a_credential_like_key_name_and_another_backend(repo, cli, tmp_path_factory):
    root, _, _ = repo
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    bad = root / ".env"
    bad.write_bytes(f"{token}=\n".encode())
    result = cli(
        "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(bad), "--root", str(root)
    )
    assert result.code == 2 and "looks like a credential" in result.err and token not in result.err
    assert not (root / SECRET).exists()

    other = tmp_path_factory.mktemp("sealed")
    (other / "Pulumi.dev.yaml").write_text(
        STACK.replace("backend: sops", "backend: manual").split("  k8s-secrets:sops:")[0]
        + "  k8s-secrets:apps:\n    - name: web\n      namespace: web\n"
    )
    good = env_file(other / ".env", {"A": "b"})
    result = cli(
        "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(good), "--root", str(other)
    )
    assert result.code == 2 and "backend manual" in result.err and "pulumi config set" in result.err
    assert not (other / "secrets").exists()


def test_what_sops_set_writes_the_real_sops_decrypts(repo, cli):
    from tests.e2e.harness import binaries, missing_binaries

    if missing_binaries(["sops"]):
        pytest.skip("the real sops is not built (make e2e-tools)")
    root, _, key_file = repo
    first = env_file(root / ".env", {"PASSWORD": "hunter2"})
    args = ["sops", "set", "--stack", "dev", "--name", "web-secrets", "--root", str(root)]
    assert cli(*args, "--from-env-file", str(first)).code == 0
    second = env_file(root / ".env2", {"TOKEN": "t0k"})
    assert cli(*args, "--from-env-file", str(second), "--age-key-file", str(key_file)).code == 0
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env["SOPS_AGE_KEY_FILE"] = str(key_file)
    proc = subprocess.run(
        [str(binaries()["sops"]), "decrypt", "--input-type", "yaml", "--output-type", "json", str(root / SECRET)],
        env=env, capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-500:]
    data = json.loads(proc.stdout)["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == {"PASSWORD": b"hunter2", "TOKEN": b"t0k"}


# --- export ---------------------------------------------------------------------------------------


def test_export_copies_the_encrypted_file_as_is_with_decryption(repo, cli):
    root, _, _ = repo
    e = env_file(root / ".env", {"PASSWORD": "hunter2"})
    assert (
        cli(
            "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(e), "--root", str(root)
        ).code
        == 0
    )
    result = cli("export", "--root", str(root))
    assert result.code == 0, result.err
    assert (root / EXPORTED).read_bytes() == (root / SECRET).read_bytes()
    kust = yaml.safe_load((root / "k8s/dev/apps/kustomization.yaml").read_text())
    assert "secret-web-secrets.sops.yaml" in kust["resources"]
    apps = yaml.safe_load((root / "k8s/dev/sync/kustomization-dev-apps.yaml").read_text())
    assert apps["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    infra = yaml.safe_load((root / "k8s/dev/sync/kustomization-dev-infrastructure.yaml").read_text())
    assert "decryption" not in infra["spec"]
    # The apps layer's applier may write Secrets where the SOPS Secret goes.
    role = yaml.safe_load((root / "k8s/dev/infrastructure/role-dev-apps-applier.yaml").read_text())
    assert any("secrets" in r["resources"] and r["apiGroups"] == [""] for r in role["rules"])
    # Deterministic: a second export writes nothing; --check agrees.
    again = cli("export", "--root", str(root))
    assert again.code == 0 and again.out == ""
    assert cli("export", "--root", str(root), "--check").code == 0
    # Flux only: `pulumi up` does not apply it (it cannot decrypt).
    cfg = load_stack_file(root / "Pulumi.dev.yaml")
    planned = [p for p in plan_stack(cfg) if p.obj["kind"] == "Secret"]
    assert [(p.gitops, p.pulumi, p.raw is not None) for p in planned] == [(True, False, True)]
    # An edit is exported anew; a removed file goes stale and is removed.
    (root / SECRET).unlink()
    assert cli("export", "--root", str(root)).code == 0
    assert not (root / EXPORTED).exists()


def test_export_refuses_a_plaintext_value_and_a_file_without_sops(repo, cli):
    root, key, _ = repo
    e = env_file(root / ".env", {"PASSWORD": "hunter2"})
    assert (
        cli(
            "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(e), "--root", str(root)
        ).code
        == 0
    )
    doc = yaml.safe_load((root / SECRET).read_text())
    doc["data"]["PASSWORD"] = base64.b64encode(b"hunter2").decode()
    (root / SECRET).write_text(yaml.safe_dump(doc))
    result = cli("export", "--root", str(root))
    assert result.code == 2
    assert result.err == f"ksecrets: {SECRET}: data.PASSWORD: the value is not SOPS-encrypted; refused\n"
    assert "hunter2" not in result.err and "aHVudGVyMg" not in result.err
    assert not (root / "k8s").exists()
    del doc["sops"]
    (root / SECRET).write_text(yaml.safe_dump(doc))
    result = cli("export", "--root", str(root))
    assert result.code == 2 and "not a SOPS file" in result.err and not (root / "k8s").exists()


def test_export_refuses_a_file_whose_name_is_not_its_secret(repo, cli):
    root, key, _ = repo
    text = sops.encrypt_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "other", "namespace": "web"},
            "data": {"A": "Yg=="},
        },
        [key.recipient],
        SECRET,
    )
    (root / SECRET).parent.mkdir(parents=True)
    (root / SECRET).write_text(text)
    result = cli("export", "--root", str(root))
    assert result.code == 2 and "metadata.name must be web-secrets" in result.err


# --- repeated edits (Hypothesis) ------------------------------------------------------------------

KEYS = st.sampled_from(["A", "B", "PASSWORD", "DATABASE_URL", "api.key", "x-1"])
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
EDITS = st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=4), min_size=1, max_size=5)
CASES = {"examples": 0, "edits": 0}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS)
def test_repeated_sops_set_keeps_every_value(edits):
    from ksecrets.usecases.sops_set import sops_set

    CASES["examples"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key, key_file = make_repo(root)
        want: dict[str, bytes] = {}
        previous: dict = {}
        want_before: dict[str, bytes] = {}
        for edit in edits:
            values = {k: v.encode("utf-8") for k, v in edit.items()}
            sops_set(root, "dev", name="web-secrets", values=values, key_file=key_file)
            CASES["edits"] += 1
            want.update(values)
            text = (root / SECRET).read_text()
            assert sops.secret_values(text, [key.identity], SECRET) == want
            data = yaml.safe_load(text)["data"]
            for k, ciphertext in previous.items():  # untouched or unchanged keys keep their ciphertext
                if k not in values or values[k] == want_before.get(k):
                    assert data[k] == ciphertext
            previous, want_before = dict(data), dict(want)


def test_zz_report_property_cases():
    print(f"\nsops set property: {CASES['examples']} examples, {CASES['edits']} edits")


# --- stack new --------------------------------------------------------------------------------------


def test_stack_new_backend_sops_with_and_without_recipient(tmp_path, cli):
    key = sops.generate_age_key()
    result = cli("stack", "new", "dev", "--backend", "sops", "--age-recipient", key.recipient, "--root", str(tmp_path))
    assert result.code == 0, result.err
    assert "ksecrets sops set --stack dev" in result.out or "ksecrets keygen --stack dev" in result.out
    cfg = load_stack_file(tmp_path / "Pulumi.dev.yaml")
    assert cfg.spec.sops_files and cfg.sops.recipients == (key.recipient,)
    # Without one: an empty list to fill in; sops set says so.
    assert cli("stack", "new", "qa", "--backend", "sops", "--root", str(tmp_path)).code == 0
    assert load_stack_file(tmp_path / "Pulumi.qa.yaml").sops.recipients == ()
    # A recipient that is not age: refused, nothing written.
    result = cli("stack", "new", "bad", "--backend", "sops", "--age-recipient", "age1nope", "--root", str(tmp_path))
    assert result.code == 2 and "not an age X25519 recipient" in result.err
    assert not (tmp_path / "Pulumi.bad.yaml").exists()
    result = cli("stack", "new", "ss", "--backend", "manual", "--age-recipient", key.recipient, "--root", str(tmp_path))
    assert result.code == 2 and "does not encrypt SOPS files" in result.err
    e = env_file(tmp_path / ".env", {"A": "b"})
    result = cli(
        "sops", "set", "--stack", "qa", "--name", "x", "--namespace", "web", "--from-env-file", str(e),
        "--root", str(tmp_path),
    )  # fmt: skip
    assert result.code == 2 and "sops.recipients: empty" in result.err and not (tmp_path / "secrets").exists()


def test_doctor_sees_the_sops_secret_or_says_how_to_make_it(repo, cli):
    root, _, _ = repo
    result = cli("doctor", "--stack", "dev", "--root", str(root))
    assert result.code != 0 and "ksecrets sops set --stack dev --name web-secrets" in result.out + result.err
    e = env_file(root / ".env", {"PASSWORD": "hunter2"})
    assert (
        cli(
            "sops", "set", "--stack", "dev", "--name", "web-secrets", "--from-env-file", str(e), "--root", str(root)
        ).code
        == 0
    )
    result = cli("doctor", "--stack", "dev", "--root", str(root))
    assert result.code == 0 and "every one provided" in result.out

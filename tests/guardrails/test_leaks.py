"""The leak test: drive the whole system with canary values and prove none escapes.

In a copy of the repository (its tracked files): make a staging sealing key (`keygen`, the backup
passphrase a canary), seal canaries into staging (`seal --stack --from-literal`, `--from-env-file`,
with a canary churn key), push canaries to a Vault mocked at the HTTP boundary for production
(the token a canary), add a manual-backend stack through a temp stack file (values only as Pulumi
config secrets), `export` every stack, `export --check`, `verify`, run the Pulumi program under mocks
for every stack, and drive the error paths with canaries in bad input. Then search every file in
the copy (k8s/, stack files, certs, everything written), the key backup, every registered
resource and all captured output (stdout and stderr) for each canary, raw, base64 (standard and
URL-safe) and hex: none may appear. Finally `ksecrets scan` with the canaries' env files finds
nothing in the copy.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import responses

from components.platform import Platform
from ksecrets.cli import main as ksecrets_main
from ksecrets.config import load_stack_file
from components.pulumi_source import load_from_pulumi, manual_value_outputs
from tests.pulumi_harness import run_program
from tests.vault.fakevault import ADDR, FakeVault

ROOT = Path(__file__).resolve().parents[2]

MANUAL_STACK = """\
# A manual-backend stack for the leak test: values live in Pulumi config secrets only.
config:
  k8s-secrets:backend: manual
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      serviceAccount: my-app
      secretName: my-app-secrets
      deployments:
        - name: my-app
          image: ghcr.io/stefanprodan/podinfo:6.7.1
          envFrom: true
  k8s-secrets:monitoring: {{prometheusOperator: true}}
  k8s-secrets:allowPlaceholders: [monitoring.runbookBaseUrl]
  k8s-secrets:manualValues:
    my-app-secrets:
      API_KEY:
        secure: v1:{ciphertext}
      DATABASE_URL:
        secure: v1:{ciphertext}
"""


# A fresh sealed-secrets stack whose key `keygen` makes here (staging keeps its committed certificate,
# whose private key was discarded).
SEALED_STACK = """\
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    certificate: certs/canary.pem
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      serviceAccount: my-app
      secretName: my-app-secrets
  k8s-secrets:monitoring:
    prometheusOperator: true
  k8s-secrets:allowPlaceholders: [monitoring.runbookBaseUrl]
"""


def canary(name: str) -> str:
    return f"canary-{name}-{secrets.token_hex(10)}"


def forms(value: str) -> dict[str, bytes]:
    raw = value.encode()
    return {
        "raw": raw,
        "base64": base64.b64encode(raw),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base64-unpadded": base64.b64encode(raw).rstrip(b"="),
        "hex": binascii.hexlify(raw),
        "HEX": binascii.hexlify(raw).upper(),
    }


def copy_tracked_files(dest: Path) -> None:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


class Transcript:
    """Every command's output, in-process (capfd: fd-level, so hvac/urllib3 logs count too) or
    as a subprocess."""

    def __init__(self, capfd, cwd: Path) -> None:
        self.capfd, self.cwd = capfd, cwd
        self.chunks: list[tuple[str, str]] = []

    def run(self, *argv: str) -> int:
        try:
            code = ksecrets_main(list(argv))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = self.capfd.readouterr()
        self.chunks.append((" ".join(argv[:2]), out + err))
        return code

    def sub(self, *argv: str, stdin: str | None = None, env: dict | None = None) -> int:
        r = subprocess.run(
            [sys.executable, "-m", "ksecrets", *argv],
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
        )
        self.chunks.append((" ".join(argv[:2]), r.stdout + r.stderr))
        return r.returncode

    def text(self) -> str:
        return "".join(c for _, c in self.chunks)


def find_canaries(blob: bytes, values: dict[str, str]) -> list[str]:
    hits = []
    for name, value in values.items():
        for form, needle in forms(value).items():
            if needle in blob:
                hits.append(f"{name} ({form})")
    return hits


def test_no_canary_leaks_anywhere(tmp_path, capfd, monkeypatch):
    repo = tmp_path / "repo"
    inputs = tmp_path / "inputs"  # env files hold the canaries by definition: outside the copy
    safe = tmp_path / "safe"  # where the key backup goes, outside Git as the CLI advises
    for d in (repo, inputs, safe):
        d.mkdir()
    copy_tracked_files(repo)
    c = {
        name: canary(name)
        for name in (
            "passphrase",
            "seal-key",
            "stg-db",
            "stg-api",
            "stg-envfile",
            "prod-db",
            "prod-api",
            "vault-token",
            "manual-api",
            "manual-db",
            "bad-key",
            "bad-dup",
            "bad-literal",
            "bad-stdin",
            "bad-vault",
        )
    }

    monkeypatch.chdir(repo)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KSECRETS_BACKUP_PASSPHRASE", c["passphrase"])
    monkeypatch.setenv("KSECRETS_BACKUP_SCRYPT_LOG2N", "14")
    c["seal-key"] = secrets.token_urlsafe(32)  # a seal key must be key material (32 random bytes)
    monkeypatch.setenv("KSECRETS_SEAL_KEY", c["seal-key"])
    for k in ("VAULT_CACERT", "VAULT_NAMESPACE", "VAULT_SKIP_VERIFY", "SEALED_SECRETS_CERT"):
        monkeypatch.delenv(k, raising=False)
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    t = Transcript(capfd, repo)

    # --- staging: sealed values, with its committed certificate ----------------------------------------
    assert (
        t.run(
            "seal",
            "--stack",
            "staging",
            "--name",
            "my-app-secrets",
            "--from-literal",
            f"DATABASE_URL={c['stg-db']}",
            "--from-literal",
            f"API_KEY={c['stg-api']}",
        )
        == 0
    ), t.text()
    stg_env = inputs / "staging.env"
    stg_env.write_text(f"EXTRA_TOKEN={c['stg-envfile']}\n")
    assert t.run("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-env-file", str(stg_env)) == 0, (
        t.text()
    )
    staging = load_stack_file(repo / "Pulumi.staging.yaml")
    assert staging.sealed[0].keys == ("API_KEY", "DATABASE_URL", "EXTRA_TOKEN")

    # --- a new sealed-secrets stack: a key (backup passphrase a canary), then a sealed value -----------
    (repo / "Pulumi.canary.yaml").write_text(SEALED_STACK)
    backup = safe / "canary.ksbackup"
    assert t.run("keygen", "--stack", "canary", "--backup-file", str(backup)) == 0, t.text()
    assert (repo / "certs" / "canary.pem").is_file() and backup.is_file()
    assert (
        t.run("seal", "--stack", "canary", "--name", "my-app-secrets", "--from-literal", f"API_KEY={c['stg-api']}-2")
        == 0
    ), t.text()

    # --- production: push to a Vault mocked at the HTTP boundary ----------------------------------
    prod_env = inputs / "production.env"
    prod_env.write_text(f"DATABASE_URL={c['prod-db']}\nAPI_KEY={c['prod-api']}\n")
    monkeypatch.setenv("VAULT_ADDR", ADDR)
    monkeypatch.setenv("VAULT_TOKEN", c["vault-token"])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        vault = FakeVault(rsps, token=c["vault-token"])
        vault.enable_kv2()
        assert (
            t.run("vault", "push", "--stack", "production", "--path", "my-app", "--from-env-file", str(prod_env)) == 0
        ), t.text()
        # The values did go somewhere: into Vault, and nowhere else.
        assert vault.kv_latest("secret", "my-app") == {"API_KEY": c["prod-api"], "DATABASE_URL": c["prod-db"]}
        # Error path: a bad env file holding a canary.
        bad_vault = inputs / "bad-vault.env"
        bad_vault.write_text(f"DATABASE_URL=x\n{c['bad-vault']} =oops\n")
        assert (
            t.run("vault", "push", "--stack", "production", "--path", "my-app", "--from-env-file", str(bad_vault)) == 2
        )

    # --- manual: a temp stack file (shape only) and the values as Pulumi config secrets ---------------
    (repo / "Pulumi.dev.yaml").write_text(MANUAL_STACK.format(ciphertext=base64.b64encode(os.urandom(24)).decode()))

    # --- render, check, verify ----------------------------------------------------------------------
    assert t.run("export") == 0, t.text()
    assert t.run("export", "--check") == 0, t.text()
    assert t.run("verify") == 0, t.text()
    assert (repo / "k8s" / "staging").is_dir() and (repo / "k8s" / "dev").is_dir()
    sealed_files = list((repo / "k8s" / "staging").rglob("sealedsecret-*.yaml"))
    assert sealed_files, "the sealed values were not exported"
    assert not [p for p in (repo / "k8s" / "dev").rglob("*.yaml") if b"kind: Secret\n" in p.read_bytes()]

    # --- error paths with canaries in bad input ------------------------------------------------------
    bad = inputs / "bad.env"
    bad.write_text(f"GOOD=fine-value\n9{c['bad-key']}=x\n")
    assert t.run("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-env-file", str(bad)) == 2
    dup = inputs / "dup.env"
    dup.write_text(f"API_KEY=first\nAPI_KEY={c['bad-dup']}\n")
    assert t.run("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-env-file", str(dup)) == 2
    assert (
        t.run("seal", "--stack", "staging", "--name", "my-app-secrets", "--from-literal", f"bad key={c['bad-literal']}")
        == 2
    )
    assert t.run("scan", "--env-file", str(bad)) == 2
    stdin_secret = (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: my-app\n"
        f"data:\n  password: {c['bad-stdin']}!\n"
    )  # not base64
    assert t.sub("seal", "--cert", "certs/staging.pem", stdin=stdin_secret) == 2
    assert t.sub("seal", "--cert", "certs/staging.pem", stdin=stdin_secret.replace("data:", "data:\n  :")) == 2

    # --- the Pulumi program under mocks, every stack ---------------------------------------------------
    registered: list[dict] = []
    for stack in ("staging", "production", "canary"):
        cfg = load_stack_file(repo / f"Pulumi.{stack}.yaml")
        mocks, _ = run_program(lambda: Platform(cfg.stack, cfg), stack=stack)
        registered += [r.inputs for r in mocks.resources]
    manual_config = {
        "k8s-secrets:backend": "manual",
        "k8s-secrets:apps": [
            {
                "name": "my-app",
                "namespace": "my-app",
                "serviceAccount": "my-app",
                "secretName": "my-app-secrets",
                "deployments": [{"name": "my-app", "image": "ghcr.io/stefanprodan/podinfo:6.7.1"}],
            }
        ],
        "k8s-secrets:manualValues": {"my-app-secrets": {"API_KEY": c["manual-api"], "DATABASE_URL": c["manual-db"]}},
    }

    def manual_program():
        cfg, manual = load_from_pulumi()
        return Platform(cfg.stack, cfg, manual_values=manual_value_outputs(cfg, manual))

    mocks, _ = run_program(manual_program, stack="dev", config=manual_config)
    pulumi.runtime.set_all_config({})
    out, err = capfd.readouterr()
    t.chunks.append(("pulumi program", out + err))
    (manual_secret,) = [r for r in mocks.resources if r.type == "kubernetes:core/v1:Secret"]
    # The manual values reach the Secret only as a Pulumi secret (encrypted in state, masked in logs).
    assert (
        manual_secret.inputs["stringData"][pulumi.runtime.rpc._special_sig_key]
        == pulumi.runtime.rpc._special_secret_sig
    )
    registered += [r.inputs for r in mocks.resources if r is not manual_secret]

    # --- search ------------------------------------------------------------------------------------
    written = sorted(
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.is_file() and before.get(p.relative_to(repo)) != p.read_bytes()
    )
    assert {"Pulumi.staging.yaml", "Pulumi.canary.yaml", "certs/canary.pem"} <= set(written)
    assert any(w.startswith("k8s/dev/") for w in written)
    leaks = {}
    for p in sorted(repo.rglob("*")):
        if p.is_file():
            hits = find_canaries(p.read_bytes(), c)
            if hits:
                leaks[str(p.relative_to(repo))] = hits
    for p in safe.rglob("*"):
        hits = find_canaries(p.read_bytes(), c)
        if hits:
            leaks[str(p)] = hits
    for what, text in t.chunks:
        hits = find_canaries(text.encode(), c)
        if hits:
            leaks[f"output of {what}"] = hits
    hits = find_canaries(json.dumps(registered, default=str).encode(), c)
    if hits:
        leaks["registered resources"] = hits
    assert leaks == {}, f"canaries leaked: {leaks}"

    # Not vacuous: the error paths failed for the planted reason, and the canary is in their input.
    assert c["bad-key"] in bad.read_text() and c["prod-db"] in prod_env.read_text()

    # --- and the scanner agrees: the copy holds no canary and no key ----------------------------------
    canary_env = inputs / "canaries.env"
    canary_env.write_text("".join(f"C{i}={v}\n" for i, v in enumerate(c.values())))
    assert t.run("scan", ".", "--env-file", str(canary_env)) == 0, t.text()
    # ... while the key backup, decrypted, is exactly what it would have caught.
    from ksecrets.sealing.backup import decrypt_backup
    from ksecrets.scan import scan_bytes

    plaintext = decrypt_backup(backup.read_bytes(), c["passphrase"], str(backup))
    assert {f.kind for f in scan_bytes("keys.json", plaintext)} == {"private-key", "unencrypted-key-backup"}


def test_the_search_sees_every_form_in_context():
    value = canary("probe")
    for form, needle in forms(value).items():
        blob = b"prefix " + needle + b" suffix"
        assert find_canaries(blob, {"probe": value}) and f"probe ({form})" in find_canaries(blob, {"probe": value})
    assert find_canaries(b"canary-probe-", {"probe": value}) == []

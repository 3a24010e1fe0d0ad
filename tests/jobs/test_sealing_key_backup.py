"""Sealing keys that never go stale: offline-key encryption (the CronJob cannot decrypt), the
CronJob's run against an API at the HTTP boundary, `ksecrets backup --check/--import/
--new-offline-key`, the builder with its one RBAC exception, and the alert through promtool."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess

import kubernetes_validate
import pytest
import responses
import yaml

from ksecrets import yamlio
from ksecrets.errors import KsecretsError
from ksecrets.manifests import monitoring
from ksecrets.usecases.stack_facts import read_facts
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.jobs import key_backup
from ksecrets.sealing import crypto, keybackup
from ksecrets.sealing.certs import public_key_fingerprint
from ksecrets.sealing.keys import cert_pem, generate_key_and_cert, tls_secret_manifest

OFFLINE_PASS = "offline passphrase for tests"
API = "https://kube.test:6443"


@pytest.fixture(scope="module")
def pairs():
    return [generate_key_and_cert(2048, dt.timedelta(days=3650)) for _ in range(3)]


@pytest.fixture(scope="module")
def offline():
    return keybackup.new_offline_key(2048)


def key_secrets(pairs):
    out = []
    for i, (key, cert) in enumerate(pairs):
        s = tls_secret_manifest(key, cert, name=f"sealed-secrets-key{'abcde'[i] * 5}")
        s["metadata"]["creationTimestamp"] = f"2026-0{i + 1}-01T00:00:00Z"
        s["metadata"]["uid"] = f"uid-{i}"
        out.append(s)
    return out


def test_a_key_file_round_trips_and_holds_no_plaintext(pairs, offline):
    secret = key_secrets(pairs)[0]
    data = keybackup.encrypt_key_secret(secret, offline.public_key())
    doc = json.loads(data)
    assert doc["fingerprint"] == public_key_fingerprint(pairs[0][0].public_key())
    assert doc["recipient"] == public_key_fingerprint(offline.public_key())
    assert doc["certificate"] == cert_pem(pairs[0][1]).decode()  # public: --check needs no key
    assert secret["data"]["tls.key"].encode() not in data and b"PRIVATE KEY" not in data
    back = keybackup.decrypt_key_file(data, offline, "f")
    assert back["data"] == secret["data"] and back["metadata"]["name"] == secret["metadata"]["name"]
    assert "uid" not in back["metadata"]  # only what restoring needs


def test_only_the_offline_private_key_decrypts(pairs, offline):
    data = keybackup.encrypt_key_secret(key_secrets(pairs)[0], offline.public_key())
    other = keybackup.new_offline_key(2048)
    with pytest.raises(KsecretsError, match="not to this offline key"):
        keybackup.decrypt_key_file(data, other, "f")
    doc = json.loads(data)
    doc["recipient"] = public_key_fingerprint(other.public_key())  # lie about the recipient
    with pytest.raises(KsecretsError, match="cannot decrypt"):
        keybackup.decrypt_key_file(json.dumps(doc).encode(), other, "f")
    # the label binds the ciphertext to this use: a sealing-format decrypt with another label fails
    with pytest.raises(crypto.DecryptError):
        crypto.hybrid_decrypt(offline, base64.b64decode(doc["ciphertext"]), b"kube-system/x")


def test_the_cronjob_run_lists_keys_and_writes_only_new_ones(pairs, offline, tmp_path):
    pub = tmp_path / "public.pem"
    pub.write_bytes(keybackup.public_pem(offline))
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    out = tmp_path / "backups"
    secrets_ = key_secrets(pairs)
    args = [
        "--namespace",
        "kube-system",
        "--public-key",
        str(pub),
        "--dir",
        str(out),
        "--token-file",
        str(token),
        "--ca-file",
        str(pub),
    ]
    env = {"KSECRETS_KUBE_API": API}
    with responses.RequestsMock() as rsps:
        url = f"{API}/api/v1/namespaces/kube-system/secrets"
        rsps.add(responses.GET, url, json={"kind": "SecretList", "items": secrets_[:2]})
        rsps.add(responses.GET, url, json={"kind": "SecretList", "items": secrets_})
        assert key_backup.main(args, env) == 0
        first = {p.name: p.read_bytes() for p in out.iterdir()}
        assert key_backup.main(args, env) == 0
        req = rsps.calls[0].request
        assert req.headers["Authorization"] == "Bearer sa-token"
        assert "labelSelector=sealedsecrets.bitnami.com%2Fsealed-secrets-key" in req.url
    files = sorted(p.name for p in out.iterdir())
    assert files == ["sealed-secrets-keyaaaaa.kskey", "sealed-secrets-keybbbbb.kskey", "sealed-secrets-keyccccc.kskey"]
    assert all((out / n).read_bytes() == b for n, b in first.items())  # existing files kept byte for byte
    assert all(oct((out / n).stat().st_mode & 0o777) == "0o600" for n in files)


def test_the_cronjob_run_fails_without_list(offline, tmp_path):
    pub = tmp_path / "public.pem"
    pub.write_bytes(keybackup.public_pem(offline))
    (tmp_path / "token").write_text("t")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{API}/api/v1/namespaces/kube-system/secrets", status=403, json={})
        code = key_backup.main(
            [
                "--namespace",
                "kube-system",
                "--public-key",
                str(pub),
                "--dir",
                str(tmp_path / "o"),
                "--token-file",
                str(tmp_path / "token"),
            ],
            {"KSECRETS_KUBE_API": API},
        )
    assert code == 1


STACK = """\
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    certificate: certs/s.pem
    keyBackup:
      publicKey: certs/s-keybackup.pem
      image: registry.test/ksecrets-keybackup:0.1.0
      maxDelay: 2h
"""


@pytest.fixture
def repo(tmp_path, pairs, monkeypatch):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/s.pem").write_bytes(cert_pem(pairs[2][1]))  # the stack's current certificate
    (tmp_path / "Pulumi.s.yaml").write_text(STACK)
    monkeypatch.setenv(keybackup.PASSPHRASE_ENV, OFFLINE_PASS)
    monkeypatch.setenv("KSECRETS_BACKUP_PASSPHRASE", "backup passphrase for tests")
    monkeypatch.setenv("KSECRETS_BACKUP_SCRYPT_LOG2N", "14")
    return tmp_path


def test_new_offline_key_check_and_import(repo, pairs, cli, monkeypatch):
    pub, priv = repo / "certs/s-keybackup.pem", repo / "offline.key"
    made = cli("backup", "--new-offline-key", "--public-out", str(pub), "--private-out", str(priv))
    assert made.code == 0, made.err
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes() and oct(priv.stat().st_mode & 0o777) == "0o600"
    assert cli("backup", "--new-offline-key", "--public-out", str(pub), "--private-out", str(priv)).code == 2
    recipient = keybackup.load_public_key(pub.read_bytes(), "pub")
    out = repo / "backups"
    keybackup.save_new_keys(key_secrets(pairs)[:2], recipient, out)  # the CronJob has not seen key 3 yet

    stale = cli("backup", "--check", str(out), "--root", str(repo))
    fp3 = public_key_fingerprint(pairs[2][0].public_key())
    assert stale.code == 1
    assert stale.out.splitlines() == [
        f"missing: stack s (certs/s.pem): {fp3} is in no backup given",
        "0 of 1 key(s) backed up; 1 missing",
    ]
    live = yamlio.dump({"apiVersion": "v1", "kind": "List", "items": key_secrets(pairs)})
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(live.encode())))
    from_cluster = cli("backup", "--check", str(out), "--keys-from-stdin")
    assert from_cluster.code == 1
    assert (
        from_cluster.out.splitlines()[2] == f"missing: key Secret sealed-secrets-keyccccc: {fp3} is in no backup given"
    )
    assert from_cluster.out.splitlines()[-1] == "2 of 3 key(s) backed up; 1 missing"

    keybackup.save_new_keys(key_secrets(pairs), recipient, out)  # the next run
    fresh = cli("backup", "--check", str(out), "--root", str(repo))
    assert fresh.code == 0 and fresh.out.splitlines()[-1] == "1 of 1 key(s) backed up"

    # Only the key the repository knows (certs/s.pem) by default; the two older ones on request.
    imported = cli("backup", "--import", str(out), "--offline-key", str(priv), "--root", str(repo))
    assert imported.code == 0, imported.err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(imported.out)] == ["sealed-secrets-keyccccc"]
    assert imported.err.count("skipped: key SHA256:") == 2
    imported = cli("backup", "--import", str(out), "--offline-key", str(priv), "--allow-unknown-key")
    assert imported.code == 0, imported.err
    docs = list(yaml.safe_load_all(imported.out))
    assert [d["metadata"]["name"] for d in docs] == [f"sealed-secrets-key{c * 5}" for c in "abc"]
    assert [d["data"]["tls.key"] for d in docs] == [s["data"]["tls.key"] for s in key_secrets(pairs)]
    # ...into a passphrase backup that --check, restore and unseal read like any other
    ks = repo / "all.ksbackup"
    made = cli(
        "backup", "--import", str(out), "--offline-key", str(priv), "--import-out", str(ks), "--allow-unknown-key"
    )
    assert made.code == 0
    assert cli("backup", "--check", str(ks), "--root", str(repo)).code == 0
    sealed = crypto.encrypt_value(pairs[2][1].public_key(), b"a value", b"my-app/s")
    from ksecrets.sealing.backup import read_backup
    from ksecrets.sealing.keys import keys_from_secrets

    keys = keys_from_secrets(read_backup(ks, "backup passphrase for tests"), "ks")
    assert crypto.decrypt_value(keys, sealed, b"my-app/s") == b"a value"
    monkeypatch.setenv(keybackup.PASSPHRASE_ENV, "wrong passphrase!!")
    wrong = cli("backup", "--import", str(out), "--offline-key", str(priv), "--allow-unknown-key")
    assert wrong.code == 2 and wrong.err == f"ksecrets: {priv}: wrong passphrase, or not a PEM private key\n"


def test_builder_one_rbac_exception_exactly(repo, offline):
    (repo / "certs/s-keybackup.pem").write_bytes(keybackup.public_pem(offline))
    from ksecrets.config.load import load_stack
    from policy import rules

    cfg = load_stack("s", repo)
    planned = plan_stack(cfg)
    objs = [p.obj for p in planned if p.group == "disaster-recovery"]
    assert {p.layer for p in planned if p.group == "disaster-recovery"} == {"infrastructure"}
    # the apps layer's applier (Flux) gets no rights in the controller's namespace for it
    assert not [p for p in planned if p.group == "flux-applier" and p.obj["metadata"].get("namespace") == "kube-system"]
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ServiceAccount", "sealing-key-backup"),
        ("Role", "ksecrets-sealing-key-backup"),
        ("RoleBinding", "ksecrets-sealing-key-backup"),
        ("ConfigMap", "sealing-key-backup-public-key"),
        ("PersistentVolumeClaim", "sealing-key-backups"),
        ("CronJob", "sealing-key-backup"),
    ]
    for o in objs:
        kubernetes_validate.validate(o, "1.33", strict=True)
        assert o["metadata"]["namespace"] == "kube-system"
    role = objs[1]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    kind = "kubernetes:rbac.authorization.k8s.io/v1:Role"
    assert rules.role_violations(kind, role) == []
    for change in ({"verbs": ["list", "get"]}, {"verbs": ["list", "watch"]}, {"resources": ["secrets", "configmaps"]}):
        widened = {**role, "rules": [{**role["rules"][0], **change}]}
        assert rules.role_violations(kind, widened), change
    renamed = {**role, "metadata": {**role["metadata"], "name": "something-else"}}
    assert rules.role_violations(kind, renamed) == [
        "Role kube-system/something-else: rules[0] touches secrets without resourceNames",
        "Role kube-system/something-else: rules[0] grants list on secrets",
    ]
    assert objs[3]["data"]["public.pem"] == keybackup.public_pem(offline).decode()
    pod = objs[5]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsUser"] == 10001
    assert "PRIVATE" not in json.dumps(objs)


def test_missing_public_key_is_a_config_error(repo):
    from ksecrets.config.load import load_stack

    with pytest.raises(KsecretsError) as err:
        plan_stack(load_stack("s", repo))
    assert str(err.value) == ("Pulumi.s.yaml: sealedSecrets.keyBackup.publicKey: public key file not found")


KSM = 'job="kube-state-metrics", instance="10.0.0.3:8080", namespace="kube-system"'


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name,series,fires",
    [
        # key created at 1h, backup succeeded at 2h: covered
        (
            "covered",
            [
                ("kube_secret_created", 'secret="sealed-secrets-keyaaaaa"', "3600x600"),
                ("kube_cronjob_status_last_successful_time", 'cronjob="sealing-key-backup"', "0x119 7200x500"),
            ],
            False,
        ),
        # a new key at 5h, the last success at 2h: not in a backup for more than maxDelay (2h)
        (
            "stale",
            [
                ("kube_secret_created", 'secret="sealed-secrets-keyaaaaa"', "3600x600"),
                ("kube_secret_created", 'secret="sealed-secrets-keybbbbb"', "_x299 18000x300"),
                ("kube_cronjob_status_last_successful_time", 'cronjob="sealing-key-backup"', "0x119 7200x500"),
            ],
            True,
        ),
        # the CronJob never succeeded
        ("never", [("kube_secret_created", 'secret="sealed-secrets-keyaaaaa"', "3600x600")], True),
        # another Secret in kube-system is not a sealing key
        (
            "not a key",
            [
                ("kube_secret_created", 'secret="bootstrap-token-x"', "18000x600"),
                ("kube_secret_created", 'secret="sealed-secrets-keyaaaaa"', "3600x600"),
                ("kube_cronjob_status_last_successful_time", 'cronjob="sealing-key-backup"', "7200x600"),
            ],
            False,
        ),
    ],
)
def test_sealing_key_alert_with_promtool(promtool, repo, offline, tmp_path, name, series, fires):
    (repo / "certs/s-keybackup.pem").write_bytes(keybackup.public_pem(offline))
    from ksecrets.config.load import load_stack

    cfg = load_stack("s", repo)
    groups = monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yamlio.dump({"groups": groups}))
    exp = [{"exp_labels": {"severity": "critical", "stack": "s", "namespace": "kube-system"}}] if fires else []
    if fires:
        exp[0]["exp_annotations"] = {
            "summary": "The newest sealing key is in no backup",
            "description": (
                "The newest sealing key Secret in kube-system was created after the last successful run "
                "of CronJob sealing-key-backup (or it never succeeded): losing the cluster now would lose "
                "the key that unseals every SealedSecret sealed since."
            ),
            "runbook_url": "https://github.com/example/k8s-secrets/blob/main/README.md#sealingkeynotbackedup",
        }
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"{metric}{{{KSM}, {labels}}}", "values": values} for metric, labels, values in series
                ],
                "alert_rule_test": [{"alertname": "SealingKeyNotBackedUp", "eval_time": "8h", "exp_alerts": exp}],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yamlio.dump(tests))
    done = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("plain", [b"[1, 2]", b'"a string"', b"7", b"\xff\xfe not json", b'{"data": [1]}'], ids=repr)
def test_a_key_file_whose_plaintext_is_not_a_key_secret_is_one_line(pairs, offline, plain):
    """Decrypts fine but is no JSON object (or no Secret's shape): one line, no traceback."""
    import base64

    from ksecrets.sealing import crypto as sealing_crypto

    doc = json.loads(keybackup.encrypt_key_secret(key_secrets(pairs)[0], offline.public_key()))
    doc["ciphertext"] = base64.b64encode(
        sealing_crypto.hybrid_encrypt(offline.public_key(), plain, keybackup.LABEL)
    ).decode()
    with pytest.raises(KsecretsError) as err:
        keybackup.decrypt_key_file(json.dumps(doc).encode(), offline, "k.json")
    assert str(err.value).startswith("k.json: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("answer", [b"<html>login</html>", b"[1]", b'{"items": {"a": 1}}', b'{"items": [1, "x"]}'])
def test_the_cronjob_run_on_an_answer_that_is_not_a_secret_list_is_one_line(offline, tmp_path, capsys, answer):
    pub = tmp_path / "public.pem"
    pub.write_bytes(keybackup.public_pem(offline))
    (tmp_path / "token").write_text("t")
    argv = ["--namespace", "kube-system", "--public-key", str(pub), "--dir", str(tmp_path / "o")]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{API}/api/v1/namespaces/kube-system/secrets", status=200, body=answer)
        code = key_backup.main([*argv, "--token-file", str(tmp_path / "token")], {"KSECRETS_KUBE_API": API})
    err = capsys.readouterr().err
    assert code != 0 and "not a list of Secrets" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())

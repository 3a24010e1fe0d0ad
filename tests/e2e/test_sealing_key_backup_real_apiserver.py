"""The sealing-key backup against the real kube-apiserver and its RBAC authorizer (issue 12).

Real: kube-apiserver (RBAC), the staging stack's exported disaster-recovery objects applied as Flux
applies them, a TokenRequest token for the CronJob's ServiceAccount, and the CronJob's own code
(`ksecrets.jobs.key_backup.main`) listing the key Secrets over HTTPS. Not run: the CronJob's pod
(no kubelet); the drill that restores into a new API server and the real controller is the lead's.
"""

from __future__ import annotations

import datetime as dt

import yaml

from ksecrets.config.load import load_stack
from ksecrets.manifests import keybackup as kb_manifests
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.jobs import key_backup
from ksecrets.sealing import keybackup
from ksecrets.sealing.certs import public_key_fingerprint
from ksecrets.sealing.keys import generate_key_and_cert, tls_secret_manifest
from tests.e2e.harness import ROOT
from tests.e2e.harness.kube import sa_user


def test_the_key_backup_lists_exactly_the_key_secrets_and_nothing_more(cluster, tmp_path):
    offline = keybackup.new_offline_key(2048)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/staging.pem").write_bytes((ROOT / "certs/staging.pem").read_bytes())
    (tmp_path / "certs/staging-keybackup.pub").write_bytes(keybackup.public_pem(offline))
    text = (
        (ROOT / "Pulumi.staging.yaml")
        .read_text()
        .replace(
            "    certificate: certs/staging.pem\n",
            "    certificate: certs/staging.pem\n    keyBackup:\n      publicKey: certs/staging-keybackup.pub\n"
            "      image: registry.test/ksecrets-keybackup:0.1.0\n",
            1,
        )
    )
    assert "keyBackup" in text
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    cfg = load_stack("staging", tmp_path)
    objs = [p.obj for p in plan_stack(cfg) if p.group == "disaster-recovery"]
    cluster.apply([o for o in objs if o["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap")])

    pairs = [generate_key_and_cert(2048, dt.timedelta(days=3650)) for _ in range(2)]
    keys = [tls_secret_manifest(k, c, name=f"sealed-secrets-key{n}") for (k, c), n in zip(pairs, ("e2eaa", "e2ebb"))]
    other = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "not-a-key", "namespace": "kube-system"},
        "stringData": {"x": "not a key"},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([*keys, other]))

    user = sa_user(kb_manifests.NAME, "kube-system")
    assert cluster.can_i("list", "secrets", "kube-system", user=user)
    for verb in ("get", "watch", "create", "update", "patch", "delete"):
        assert not cluster.can_i(verb, "secrets", "kube-system", user=user, name="not-a-key"), verb
    assert not cluster.can_i("list", "secrets", "default", user=user)

    token = tmp_path / "token"
    token.write_text(cluster.token(kb_manifests.NAME, "kube-system", seconds=600))
    pub = tmp_path / "public.pem"
    pub.write_bytes(keybackup.public_pem(offline))
    out = tmp_path / "backups"
    argv = [
        "--namespace",
        "kube-system",
        "--public-key",
        str(pub),
        "--dir",
        str(out),
        "--token-file",
        str(token),
        "--ca-file",
        str(cluster.ca.cert_path),
    ]
    assert key_backup.main(argv, {"KSECRETS_KUBE_API": cluster.server}) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["sealed-secrets-keye2eaa.kskey", "sealed-secrets-keye2ebb.kskey"]  # not-a-key has no label
    got = {public_key_fingerprint(k.public_key()) for k, _ in pairs}
    assert {keybackup.read_key_file((out / f).read_bytes(), f)["fingerprint"] for f in files} == got
    restored = [keybackup.decrypt_key_file((out / f).read_bytes(), offline, f) for f in files]
    assert [r["data"]["tls.key"] for r in restored] == [k["data"]["tls.key"] for k in keys]

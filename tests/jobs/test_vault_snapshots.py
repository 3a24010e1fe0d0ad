"""Vault raft snapshots: the CronJob builder, save/restore at the HTTP boundary, the CLI, and the
VaultSnapshotTooOld alert through the real promtool."""

from __future__ import annotations

import gzip
import io
import subprocess

import hvac
import kubernetes_validate
import pytest
import responses

from ksecrets import yamlio
from ksecrets.config.load import load_stack, parse
from ksecrets.errors import KsecretsError
from ksecrets.manifests import monitoring, snapshots
from ksecrets.usecases.stack_facts import read_facts
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.vault import snapshot
from tests.conftest import ROOT, assert_committed

ADDR = "http://vault.test:8200"
STACK = {
    "backend": "vault",
    "vault": {
        "namespace": "vault",
        "tls": {"enabled": True},
        "snapshots": {"schedule": "0 */6 * * *", "retain": 3, "maxAge": "13h", "storageSize": "5Gi"},
    },
    "apps": [],
}


@pytest.fixture(scope="module")
def cfg():
    return parse(STACK, stack="dr", source="Pulumi.dr.yaml")


def test_objects_restricted_numeric_user_no_rbac(cfg):
    objs = {p.obj["kind"]: p.obj for p in plan_stack(cfg) if p.group == "disaster-recovery"}
    assert sorted(objs) == ["CronJob", "PersistentVolumeClaim", "ServiceAccount"]
    for obj in objs.values():
        kubernetes_validate.validate(obj, "1.33", strict=True)
    assert objs["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    cj = objs["CronJob"]
    assert cj["spec"]["schedule"] == "0 */6 * * *" and cj["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
    }
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "vault-snapshot"
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "ksecrets.vault.snapshot"]
    assert c["args"] == ["--dir", "/snapshots", "--retain", "3"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {e["name"]: e.get("value") for e in c["env"]}["KSECRETS_VAULT_ROLE"] == "vault-snapshot"
    assert not [
        p for p in plan_stack(cfg) if p.obj["kind"] in ("Role", "RoleBinding") and "vault-snapshot" in str(p.obj)
    ]


def test_the_production_snapshot_objects_are_the_committed_k8s_files():
    """Their exact shape: k8s/production/ (`make render` after a deliberate change, then review)."""
    planned = [p for p in plan_stack(load_stack("production", ROOT)) if p.group == "disaster-recovery"]
    assert {p.obj["kind"] for p in planned} >= {"CronJob", "PersistentVolumeClaim", "ServiceAccount"}
    assert_committed("production", planned)


def test_its_vault_policy_allows_only_the_snapshot_path():
    assert snapshots.policy().count("path ") == 1
    assert 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}' in snapshots.policy()


def test_bootstrap_writes_the_policy_and_role(cfg):
    from ksecrets.usecases.vault_bootstrap import bootstrap
    from tests.vault.fakevault import FakeVault

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeVault(rsps)
        client = hvac.Client(url=fake.addr, token=fake.token)
        bootstrap(client, cfg)
        writes = {(m, p): b for m, p, b in fake.writes()}
    assert writes[("POST", "sys/policies/acl/ksecrets-vault-snapshot")] == {"policy": snapshots.policy()}
    role = writes[("POST", "auth/kubernetes/role/vault-snapshot")]
    assert role["bound_service_account_names"] == ["vault-snapshot"]
    assert role["bound_service_account_namespaces"] == ["vault"]
    assert role["token_policies"] == ["ksecrets-vault-snapshot"]


def fake_snapshot(n: int) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(b"raft state %d " % n * 1000)
    return buf.getvalue()


def test_save_rotating_keeps_retain_newest_and_whole_files(tmp_path):
    client = hvac.Client(url=ADDR, token="t")
    (tmp_path / ".snapshot-killed-run").write_bytes(b"\x1f\x8bhalf")  # a run killed mid-stream
    with responses.RequestsMock() as rsps:
        for i in range(5):
            rsps.add(responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", body=fake_snapshot(i), status=200)
        saved = [snapshot.save_rotating(client, tmp_path, 3, now=1_700_000_000 + 3600 * i)[0] for i in range(5)]
    left = snapshot.snapshots(tmp_path)
    assert left == saved[2:]
    assert [p.name for p in left] == [
        "vault-raft-20231115T001320Z.snap",
        "vault-raft-20231115T011320Z.snap",
        "vault-raft-20231115T021320Z.snap",
    ]
    assert [p.read_bytes() for p in left] == [fake_snapshot(i) for i in (2, 3, 4)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".snapshot-")]  # no temp file left


def test_save_refuses_a_non_snapshot_and_leaves_nothing(tmp_path):
    client = hvac.Client(url=ADDR, token="t")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", body=b"<html>proxy</html>", status=200)
        with pytest.raises(KsecretsError) as err:
            snapshot.save(client, tmp_path / "x.snap")
    assert "not a raft snapshot" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_save_permission_denied_is_one_line(tmp_path):
    client = hvac.Client(url=ADDR, token="t")
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", json={"errors": ["permission denied"]}, status=403
        )
        with pytest.raises(KsecretsError) as err:
            snapshot.save(client, tmp_path / "x.snap")
    assert str(err.value).startswith(f"Vault {ADDR}: sys/storage/raft/snapshot: permission denied")
    assert list(tmp_path.iterdir()) == []


def test_cli_restore_needs_yes_and_posts_the_file(tmp_path, cli, monkeypatch):
    f = tmp_path / "s.snap"
    f.write_bytes(fake_snapshot(7))
    monkeypatch.setenv("VAULT_ADDR", ADDR)
    monkeypatch.setenv("VAULT_TOKEN", "root-token")
    no = cli("vault", "snapshot", "restore", "--file", str(f))
    assert no.code == 2 and "--yes" in no.err
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{ADDR}/v1/sys/storage/raft/snapshot", status=204)
        done = cli("vault", "snapshot", "restore", "--file", str(f), "--yes")
        assert done.code == 0, done.err
        assert rsps.calls[0].request.body == fake_snapshot(7)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", body=fake_snapshot(8), status=200)
        saved = cli("vault", "snapshot", "save", "--out", str(tmp_path / "new.snap"))
    assert saved.code == 0, saved.err
    assert (tmp_path / "new.snap").read_bytes() == fake_snapshot(8)
    again = cli("vault", "snapshot", "save", "--out", str(tmp_path / "new.snap"))
    assert again.code == 2 and "exists" in again.err


# --- the alert, with the real promtool ---------------------------------------------------------

KSM = 'job="kube-state-metrics", instance="10.0.0.3:8080", namespace="vault", cronjob="vault-snapshot"'


def _promtool_case(promtool, tmp_path, cfg, series, at, expect_firing):
    groups = monitoring.prometheus_rule(cfg, read_facts(cfg))["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yamlio.dump({"groups": groups}))
    exp = (
        [
            {
                "exp_labels": {
                    "severity": "critical",
                    "stack": "dr",
                    "namespace": "vault",
                    "cronjob": "vault-snapshot",
                },
                "exp_annotations": {
                    "summary": "The newest Vault raft snapshot is older than its schedule allows",
                    "description": (
                        "CronJob vault/vault-snapshot has not saved a raft snapshot in the last 13h: a "
                        "disaster now would lose every change since the last one."
                    ),
                    "runbook_url": "https://github.com/example/k8s-secrets/blob/main/README.md#vaultsnapshottooold",
                },
            }
        ]
        if expect_firing
        else []
    )
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"alertname": "VaultSnapshotTooOld", "eval_time": at, "exp_alerts": exp}],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yamlio.dump(tests))
    return subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name,series,at,fires",
    [
        # succeeded at t=0 and every 6h after: healthy at 20h
        (
            "healthy",
            [
                {
                    "series": f"kube_cronjob_status_last_successful_time{{{KSM}}}",
                    "values": "0x359 21600x359 43200x359 64800x359",
                },
                {"series": f"kube_cronjob_created{{{KSM}}}", "values": "0x1500"},
            ],
            "20h",
            False,
        ),
        # last success at t=0, nothing since: older than 13h by 14h (plus the 10m for)
        (
            "stale",
            [
                {"series": f"kube_cronjob_status_last_successful_time{{{KSM}}}", "values": "0x1500"},
                {"series": f"kube_cronjob_created{{{KSM}}}", "values": "0x1500"},
            ],
            "14h",
            True,
        ),
        # created at t=0 and never succeeded: fires once it has existed 13h
        ("never", [{"series": f"kube_cronjob_created{{{KSM}}}", "values": "0x1500"}], "14h", True),
        ("never, young", [{"series": f"kube_cronjob_created{{{KSM}}}", "values": "0x1500"}], "12h", False),
    ],
)
def test_snapshot_alert_with_promtool(promtool, tmp_path, cfg, name, series, at, fires):
    done = _promtool_case(promtool, tmp_path, cfg, series, at, fires)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_snapshot_job_runs_in_the_rotator_image_without_cryptography():
    """The snapshot CronJob uses the rotator image, which has no cryptography on purpose."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import ksecrets.vault.snapshot, ksecrets.jobs.vault_snapshot, ksecrets.s3\n"
        "print('ok', 'cryptography' in sys.modules and sys.modules['cryptography'] is None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["ok", "True"], done.stderr


def test_save_into_a_missing_folder_is_one_line_before_asking_vault(tmp_path, cli, monkeypatch):
    client = hvac.Client(url=ADDR, token="t")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", body=gzip.compress(b"x"), status=200)
        with pytest.raises(KsecretsError) as err:
            snapshot.save(client, tmp_path / "missing" / "x.snap")
        assert len(rsps.calls) == 0  # Vault was not asked for a snapshot it could not keep
    assert "no such folder" in str(err.value) and not (tmp_path / "missing").exists()
    monkeypatch.setenv("VAULT_ADDR", ADDR)
    monkeypatch.setenv("VAULT_TOKEN", "t")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{ADDR}/v1/sys/storage/raft/snapshot", body=gzip.compress(b"x"), status=200)
        res = cli("vault", "snapshot", "save", "--out", str(tmp_path / "missing" / "x.snap"))
    assert res.code == 2 and res.err.count("\n") == 1 and "no such folder" in res.err, res.err

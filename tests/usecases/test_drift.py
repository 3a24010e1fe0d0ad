"""`ksecrets drift`: random fleets with planted drift report exactly that drift (Hypothesis), and
the sealer's real fleet digests compare across clusters sealed with different keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ksecrets.sealing import churn
from ksecrets.usecases.drift import drift
from tests.conftest import ROOT, ksecrets_in_process, sealed_shape

SEAL_KEY = b"dGVzdC1mbGVldC1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A="
NOW = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)
SCHEDULE = "0 2 * * 0"
OTHER_SCHEDULE = "30 3 * * 1"


def _cert(path: Path, not_after: dt.datetime) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_after - dt.timedelta(days=3650))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("drift")
    shutil.copy2(ROOT / "Pulumi.yaml", d)
    (d / "certs").mkdir()
    _cert(d / "certs" / "good.pem", NOW + dt.timedelta(days=365))
    _cert(d / "certs" / "expired.pem", NOW - dt.timedelta(days=2))
    return d


APPS = 2
KEYS = ("API_KEY", "TOKEN")
SLOTS = [(f"app{a}", f"app{a}-secrets", k) for a in range(APPS) for k in KEYS]


def _apps(schedule_of: dict[tuple[str, str, str], str]) -> list[dict[str, Any]]:
    apps = []
    for a in range(APPS):
        rot = [
            {"key": k, "schedule": schedule_of[(f"app{a}", f"app{a}-secrets", k)]}
            for k in KEYS
            if (f"app{a}", f"app{a}-secrets", k) in schedule_of
        ]
        app: dict[str, Any] = {"name": f"app{a}", "namespace": f"app{a}"}
        if rot:
            app["rotation"] = rot
        apps.append(app)
    return apps


@st.composite
def fleets(draw):
    """A fleet with drift planted on distinct slots, and the findings it must give."""
    envs = {f"env{e}": [f"env{e}-c{c}" for c in range(draw(st.integers(1, 3)))] for e in range(draw(st.integers(1, 3)))}
    stacks = [s for ss in envs.values() for s in ss]
    values = {s: {slot: 0 for slot in SLOTS} for s in stacks}  # stack → slot → value id (present)
    schedules = {s: {SLOTS[0]: SCHEDULE} for s in stacks}
    expired: set[str] = set()
    expected: set[tuple] = set()
    free = list(SLOTS[1:])  # SLOTS[0] is rotated everywhere: it stays in every cluster
    plants = draw(st.lists(st.sampled_from(["missing", "differs", "rotation", "env-missing", "cert"]), max_size=4))
    for plant in plants:
        if plant == "cert":
            s = draw(st.sampled_from(stacks))
            if s not in expired:
                expired.add(s)
                expected.add(("certificate", s))
            continue
        multi = [e for e, ss in envs.items() if len(ss) >= 2]
        if not free or (plant != "env-missing" and not multi) or (plant == "env-missing" and len(envs) < 2):
            continue
        slot = draw(st.sampled_from(free))
        free.remove(slot)
        secret, key = f"{slot[0]}/{slot[1]}", slot[2]
        if plant == "env-missing":
            env = draw(st.sampled_from(sorted(envs)))
            for s in envs[env]:
                del values[s][slot]
            have = tuple(e for e in sorted(envs) if e != env)
            expected.add(("missing-key", "across-environments", "/".join(sorted(envs)), secret, key, have, (env,)))
            continue
        env = draw(st.sampled_from(multi))
        members = envs[env]
        odd = draw(st.lists(st.sampled_from(members), min_size=1, max_size=len(members) - 1, unique=True))
        if plant == "missing":
            for s in odd:
                del values[s][slot]
            have = tuple(s for s in members if s not in odd)
            expected.add(("missing-key", "environment", env, secret, key, have, tuple(sorted(odd))))
        elif plant == "differs":
            for s in odd:
                values[s][slot] = 1
            groups = tuple(sorted((tuple(s for s in members if s not in odd), tuple(sorted(odd)))))
            expected.add(("value-differs", "environment", env, secret, key, tuple(members), groups))
        else:
            for s in odd:
                schedules[s][slot] = OTHER_SCHEDULE
            expected.add(("rotation-differs", "environment", env, secret, key, tuple(members)))
    return envs, values, schedules, expired, expected


def _write(root: Path, envs, values, schedules, expired) -> None:
    for p in root.glob("Pulumi.*.yaml"):
        if p.name != "Pulumi.yaml":
            p.unlink()
    shutil.rmtree(root / "environments", ignore_errors=True)
    (root / "environments").mkdir()
    for env, stacks in envs.items():
        (root / "environments" / f"{env}.yaml").write_text(
            yaml.safe_dump(
                {"backend": "sealed-secrets", "monitoring": {"enabled": False}, "apps": _apps({SLOTS[0]: SCHEDULE})}
            )
        )
        for s in stacks:
            sealed = []
            for a in range(APPS):
                ns, name = f"app{a}", f"app{a}-secrets"
                keys = [k for k in KEYS if (ns, name, k) in values[s]]
                if not keys:
                    continue
                sealed.append(
                    {
                        "name": name,
                        "namespace": ns,
                        "encryptedData": {k: sealed_shape(i) for i, k in enumerate(keys)},
                        "fleetDigests": {
                            k: churn.fleet_digest(
                                SEAL_KEY,
                                namespace=ns,
                                name=name,
                                key=k,
                                value=b"value-canary-%d" % values[s][(ns, name, k)],
                            )
                            for k in keys
                        },
                    }
                )
            config: dict[str, Any] = {
                "k8s-secrets:extends": f"environments/{env}.yaml",
                "k8s-secrets:sealedSecrets": {"certificate": f"certs/{'expired' if s in expired else 'good'}.pem"},
                "k8s-secrets:sealed": sealed,
            }
            if schedules[s] != {SLOTS[0]: SCHEDULE}:
                config["k8s-secrets:apps"] = _apps(schedules[s])
            (root / f"Pulumi.{s}.yaml").write_text(yaml.safe_dump({"config": config}))


def _got(result) -> set[tuple]:
    out = set()
    for f in result.findings:
        if f.kind == "certificate":
            out.add(("certificate", f.where))
        elif f.kind == "value-differs":
            out.add((f.kind, f.scope, f.where, f.secret, f.key, f.present, f.groups))
        elif f.kind == "rotation-differs":
            out.add((f.kind, f.scope, f.where, f.secret, f.key, f.present))
        else:
            out.add((f.kind, f.scope, f.where, f.secret, f.key, f.present, f.missing))
    return out


@settings(
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fleet=fleets())
def test_random_fleets_report_exactly_the_planted_drift(base, fleet):
    envs, values, schedules, expired, expected = fleet
    _write(base, envs, values, schedules, expired)
    result = drift(base, now=NOW)
    assert _got(result) == expected
    assert len(result.findings) == len(expected)  # nothing reported twice
    assert result.not_comparable == 0
    doc = result.to_json()
    assert doc["drift"] is bool(expected)
    text = json.dumps(doc)
    assert "value-canary" not in text and "hmac-sha256" not in text  # no value, no digest: names and counts


# --- the sealer's real digests --------------------------------------------------------------------


@pytest.fixture
def sealed_fleet(repo_copy: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    env["KSECRETS_BACKUP_PASSPHRASE"] = "a-long-test-passphrase-0123"
    res = ksecrets_in_process("stack", "new", "stg-2", "--env", "staging", "--root", str(repo_copy))
    assert res.returncode == 0, res.stderr
    res = ksecrets_in_process(
        "keygen",
        "--stack",
        "stg-2",
        "--backup-file",
        str(repo_copy / "stg-2.ksbackup"),
        "--root",
        str(repo_copy),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    return repo_copy


def test_one_value_sealed_for_two_clusters_compares_equal_and_a_changed_one_differs(sealed_fleet, tmp_path):
    root = sealed_fleet
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    env["KSECRETS_SEAL_KEY"] = SEAL_KEY.decode()
    values = tmp_path / ".env"
    values.write_text("API_KEY=canary-fleet-0001\nDATABASE_URL=postgres://a@db/app\n")
    res = ksecrets_in_process(
        "seal",
        "--stack",
        "staging",
        "--stack",
        "stg-2",
        "--name",
        "my-app-secrets",
        "--from-env-file",
        str(values),
        "--root",
        str(root),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    res = ksecrets_in_process("drift", "--env", "staging", "--root", str(root))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "2 cluster(s) in 1 environment(s): 0 finding(s)"
    # Different certificates, so different ciphertexts and churn digests, but one fleet digest.
    a = yaml.safe_load((root / "Pulumi.staging.yaml").read_text())["config"]["k8s-secrets:sealed"][0]
    b = yaml.safe_load((root / "Pulumi.stg-2.yaml").read_text())["config"]["k8s-secrets:sealed"][0]
    assert a["certificateFingerprint"] != b["certificateFingerprint"]
    assert a["digests"]["API_KEY"] != b["digests"]["API_KEY"]
    assert a["fleetDigests"] == b["fleetDigests"]
    values.write_text("API_KEY=canary-fleet-0002\n")
    res = ksecrets_in_process(
        "seal",
        "--stack",
        "stg-2",
        "--name",
        "my-app-secrets",
        "--from-env-file",
        str(values),
        "--root",
        str(root),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    res = ksecrets_in_process("drift", "--env", "staging", "--root", str(root))
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == (
        "staging: my-app/my-app-secrets API_KEY: values differ between clusters (staging | stg-2)"
    )
    assert "canary" not in res.stdout + res.stderr
    res = ksecrets_in_process("drift", "--json", "--env", "staging", "--root", str(root))
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert [f["kind"] for f in doc["findings"]] == ["value-differs"]
    assert doc["clusters"]["stg-2"]["digestsStored"] == 2


def test_drift_without_digests_is_not_comparable_never_drift(sealed_fleet, tmp_path):
    root = sealed_fleet
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSECRETS_")}
    values = tmp_path / ".env"
    values.write_text("API_KEY=x-canary-1\nDATABASE_URL=y-canary-2\n")
    res = ksecrets_in_process(
        "seal",
        "--stack",
        "stg-2",
        "--name",
        "my-app-secrets",
        "--from-env-file",
        str(values),
        "--root",
        str(root),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    res = ksecrets_in_process("drift", "--env", "staging", "--root", str(root))
    assert res.returncode == 0, res.stdout
    assert "2 key(s) without digests to compare" in res.stdout


def test_bad_selector_is_exit_2(repo_copy):
    res = ksecrets_in_process("drift", "--env", "nope", "--root", str(repo_copy))
    assert res.returncode == 2 and res.stderr.startswith("ksecrets: --env nope: no stack of that environment")

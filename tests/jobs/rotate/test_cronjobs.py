"""Rotation CronJobs: least privilege, restricted security context, strict schema. Their exact shape
is the committed k8s/production/ (golden files; `make render` rewrites them after a deliberate
builder change): the tests here assert the rules, not the shape."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from ksecrets.config.load import load_stack, load_stack_file
from ksecrets.manifests import rotation
from ksecrets.usecases.stack_facts import plan_stack
from tests.conftest import assert_committed

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cfg():
    return load_stack_file(FIXTURES / "Pulumi.rotating.yaml")


@pytest.fixture(scope="module")
def planned(cfg):
    return rotation.cronjobs(cfg)


def by_name(planned, kind):
    return {p.obj["metadata"]["name"]: p.obj for p in planned if p.obj["kind"] == kind}


def test_one_service_account_per_rotating_app_then_one_cronjob_per_key(planned):
    assert [(p.obj["kind"], p.obj["metadata"]["namespace"], p.obj["metadata"]["name"], p.layer) for p in planned] == [
        ("ServiceAccount", "my-app", "my-app-rotator", "apps"),
        ("CronJob", "my-app", "my-app-rotate-api-key", "apps"),
        ("CronJob", "my-app", "my-app-rotate-database-password", "apps"),
    ]
    assert all(p.gitops and p.needs == () for p in planned)


def test_every_object_validates_strictly(planned):
    for p in planned:
        kubernetes_validate.validate(p.obj, "1.33", strict=True)


def test_the_production_rotation_objects_are_the_committed_k8s_files():
    """The exact shape (every field, in k8s/production/apps/): golden files, not restated here."""
    assert_committed("production", rotation.cronjobs(load_stack("production", REPO)))


def test_random_cronjob_rules(planned):
    cj = by_name(planned, "CronJob")["my-app-rotate-api-key"]
    assert cj["metadata"]["annotations"] == {"ksecrets.io/rotates": "my-app-secrets/API_KEY"}
    spec = cj["spec"]
    assert {k: v for k, v in spec.items() if k != "jobTemplate"} == {
        "schedule": "0 2 * * 0",  # the default: weekly, Sunday 02:00
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 2,
        "failedJobsHistoryLimit": 5,
    }
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"], job["ttlSecondsAfterFinished"]) == (2, 600, 691200)
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "my-app-rotator"
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "ksecrets.rotate"]
    # The plan form (issue 12): one run per app and schedule, the stack's minimum interval.
    assert container["args"] == [
        "--mount",
        "secret",
        "--path",
        "my-app",
        "--min-interval",
        "3600",
        "--random",
        "API_KEY:48",
    ]
    assert container["env"] == [
        {"name": "VAULT_ADDR", "value": "https://vault.vault.svc:8200"},
        {"name": "KSECRETS_VAULT_AUTH_MOUNT", "value": "kubernetes"},
        {"name": "KSECRETS_VAULT_ROLE", "value": "my-app-rotator"},
        {"name": "KSECRETS_VAULT_TOKEN_FILE", "value": "/var/run/secrets/ksecrets/vault/token"},
        {"name": "VAULT_CACERT", "value": "/etc/ksecrets/vault-ca/ca.crt"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    assert pod["volumes"][1] == {
        "name": "vault-token",
        "projected": {
            "sources": [{"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "token"}}]
        },
    }
    assert pod["volumes"][2] == {
        "name": "vault-ca",
        "secret": {"secretName": "vault-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }


def test_postgres_cronjob_reads_admin_credentials_by_reference_only(planned):
    cj = by_name(planned, "CronJob")["my-app-rotate-database-password"]
    assert cj["spec"]["schedule"] == "30 3 * * 1"
    (container,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-8:] == [
        "--pg-host",
        "postgres.db.svc",
        "--pg-port",
        "5432",
        "--pg-database",
        "app",
        "--pg-role",
        "app_user",
    ]
    admin_env = [e for e in container["env"] if e["name"].startswith("PGADMIN_")]
    assert admin_env == [
        {"name": "PGADMIN_USER", "valueFrom": {"secretKeyRef": {"name": "postgres-admin", "key": "username"}}},
        {"name": "PGADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "postgres-admin", "key": "password"}}},
    ]
    # No env var carries an inline value except addresses, names and paths.
    inline = {e["name"] for e in container["env"] if "value" in e}
    assert inline == {
        "VAULT_ADDR",
        "KSECRETS_VAULT_AUTH_MOUNT",
        "KSECRETS_VAULT_ROLE",
        "KSECRETS_VAULT_TOKEN_FILE",
        "VAULT_CACERT",
        "PYTHONDONTWRITEBYTECODE",
    }


def test_restricted_security_context_on_pod_and_container(planned):
    for cj in by_name(planned, "CronJob").values():
        pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsUser"] == 10001
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_rotator_service_account_has_no_api_token_and_no_rbac(cfg):
    planned = plan_stack(cfg)
    sa = next(
        p.obj for p in planned if p.obj["kind"] == "ServiceAccount" and p.obj["metadata"]["name"] == "my-app-rotator"
    )
    assert sa["automountServiceAccountToken"] is False
    bound = [
        s for p in planned if p.obj["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in p.obj.get("subjects", [])
    ]
    assert all(s["name"] != "my-app-rotator" for s in bound)


def test_no_tls_no_ca_volume(cfg):
    import dataclasses

    plain = dataclasses.replace(
        cfg, vault=dataclasses.replace(cfg.vault, tls=dataclasses.replace(cfg.vault.tls, enabled=False))
    )
    cj = by_name(rotation.cronjobs(plain), "CronJob")["my-app-rotate-api-key"]
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "vault-token"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["VAULT_ADDR"] == "http://vault.vault.svc:8200" and "VAULT_CACERT" not in env


def test_deterministic(cfg):
    assert [p.obj for p in rotation.cronjobs(cfg)] == [p.obj for p in rotation.cronjobs(cfg)]


def test_sealed_secrets_backend_has_no_cronjob_by_design():
    cfg = load_stack("staging", REPO)
    assert rotation.cronjobs(cfg) == []
    assert rotation.cronjob_names(cfg) == []


def test_cronjob_names_unique_and_short(cfg):
    import dataclasses

    from ksecrets.config.model import RotationSpec

    app = dataclasses.replace(
        cfg.apps[0],
        name="a" * 40,
        rotation=(
            RotationSpec(key="API_KEY"),
            RotationSpec(key="api-key"),
            RotationSpec(key="A_VERY_LONG_KEY_NAME_FOR_ROTATION"),
        ),
    )
    names = [rotation.cronjob_name(app, spec) for spec in app.rotation]
    assert len(set(names)) == 3
    assert all(len(n) <= 52 for n in names)
    import hashlib

    assert names[0] == "a" * 40 + "-rota-" + hashlib.sha256(b"API_KEY").hexdigest()[:6]
    assert rotation.cronjob_names(cfg) == [
        ("my-app", "my-app-rotate-api-key"),
        ("my-app", "my-app-rotate-database-password"),
    ]


def test_keys_on_one_schedule_share_one_cronjob_and_one_version():
    """Issue 12: one CronJob per app and schedule, so one kv-v2 version and one restart."""
    from ksecrets.config.load import parse

    doc = {
        "backend": "vault",
        "rotation": {"minInterval": "6h"},
        "apps": [
            {
                "name": "shop",
                "namespace": "shop",
                "keys": ["API_KEY", "TOKEN", "DB_PASSWORD", "DB_USER", "OTHER"],
                "vault": {"path": "shop"},
                "rotation": [
                    {"key": "API_KEY", "length": 40},
                    {
                        "key": "DB_PASSWORD",
                        "generator": "postgres",
                        "postgres": {
                            "host": "db",
                            "role": "shop",
                            "adminSecret": "pg-admin",
                            "mode": "dual",
                            "usernameKey": "DB_USER",
                        },
                    },
                    {"key": "OTHER", "schedule": "0 5 1 * *"},
                    {"key": "TOKEN"},
                ],
            }
        ],
    }
    cfg = parse(doc, stack="s", source="Pulumi.s.yaml")
    jobs = by_name(rotation.cronjobs(cfg), "CronJob")
    assert sorted(jobs) == ["shop-rotate-api-key-db-password-token", "shop-rotate-other"]
    assert rotation.cronjob_names(cfg) == [
        ("shop", "shop-rotate-api-key-db-password-token"),
        ("shop", "shop-rotate-other"),
    ]
    weekly = jobs["shop-rotate-api-key-db-password-token"]
    assert weekly["metadata"]["annotations"] == {"ksecrets.io/rotates": "shop-secrets/API_KEY,DB_PASSWORD,TOKEN"}
    (container,) = weekly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "--mount",
        "secret",
        "--path",
        "shop",
        "--min-interval",
        "21600",
        "--random",
        "API_KEY:40",
        "--random",
        "TOKEN:32",
        "--postgres",
        "DB_PASSWORD:32",
        "--pg-mode",
        "dual",
        "--pg-username-key",
        "DB_USER",
        "--pg-host",
        "db",
        "--pg-port",
        "5432",
        "--pg-database",
        "postgres",
        "--pg-role",
        "shop",
    ]
    for obj in jobs.values():
        kubernetes_validate.validate(obj, "1.33", strict=True)
    # The args parse back into exactly the plan the rotator runs.
    from ksecrets.jobs.rotate.__main__ import build_parser, plan_from_args

    plan = plan_from_args(build_parser().parse_args(container["args"]), {"PGADMIN_USER": "u", "PGADMIN_PASSWORD": "p"})
    assert (plan.random, plan.postgres.key, plan.postgres.mode, plan.postgres.username_key, plan.min_interval) == (
        (("API_KEY", 40), ("TOKEN", 32)),
        "DB_PASSWORD",
        "dual",
        "DB_USER",
        21600,
    )


@pytest.mark.parametrize("schedule", ["*/² * * * *", "0 ² * * *", "0 1-٣ * * *", "*/0 * * * *"])
def test_a_schedule_with_unicode_digits_is_refused_not_a_traceback(schedule):
    """`"²".isdigit()` is True but `int("²")` raises: a schedule from a stack file is a problem line."""
    from ksecrets import validators

    assert validators.cron(schedule)

"""Bad rotation input (issue 5, item 5): each a one-line config error naming the key path."""

from __future__ import annotations

import copy

import pytest
import yaml

from ksecrets.config.load import parse
from ksecrets.validators import cron, image
from ksecrets.errors import ConfigError
from tests.conftest import run_ksecrets

VAULT = {
    "backend": "vault",
    "rotation": {"image": "ghcr.io/example/ksecrets-rotator:0.1.0"},
    "apps": [
        {
            "name": "my-app",
            "namespace": "my-app",
            "keys": ["API_KEY", "DB_PASSWORD"],
            "deployments": [{"name": "web", "image": "ghcr.io/example/web:1.0.0"}],
            "vault": {"path": "my-app"},
            "rotation": [
                {"key": "API_KEY", "restart": ["web"]},
                {
                    "key": "DB_PASSWORD",
                    "generator": "postgres",
                    "postgres": {"host": "db", "role": "app", "adminSecret": "pg-admin"},
                },
            ],
        }
    ],
}


def with_(path: tuple, value, base=VAULT) -> dict:
    doc = copy.deepcopy(base)
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


def error(raw: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(raw, stack="production", source="Pulumi.production.yaml")
    return str(exc.value)


def test_the_base_config_is_valid():
    cfg = parse(VAULT, stack="production", source="Pulumi.production.yaml")
    assert [(r.key, r.schedule, r.generator) for r in cfg.apps[0].rotation] == [
        ("API_KEY", "0 2 * * 0", "random"),
        ("DB_PASSWORD", "0 2 * * 0", "postgres"),
    ]


CASES = [
    (
        "invalid-cron",
        ("apps", 0, "rotation", 0, "schedule"),
        "0 2 * *",
        'apps[0].rotation[0].schedule: "0 2 * *" is not a cron schedule (five fields: minute hour day-of-month month '
        "day-of-week)",
    ),
    (
        "cron-out-of-range",
        ("apps", 0, "rotation", 0, "schedule"),
        "0 24 * * 0",
        'apps[0].rotation[0].schedule: "0 24 * * 0" is not a cron schedule (hour field "24" is out of range or malformed)',
    ),
    (
        "cron-day-of-week-7",
        ("apps", 0, "rotation", 1, "schedule"),
        "0 2 * * 7",
        'apps[0].rotation[1].schedule: "0 2 * * 7" is not a cron schedule (day of week field "7" is out of range or '
        "malformed)",
    ),
    (
        "cron-time-zone",
        ("apps", 0, "rotation", 0, "schedule"),
        "CRON_TZ=UTC 0 2 * * 0",
        'apps[0].rotation[0].schedule: "CRON_TZ=UTC 0 2 * * 0": set the time zone with spec.timeZone, not in the schedule',
    ),
    (
        "default-schedule",
        ("rotation", "defaultSchedule"),
        "weekly",
        'rotation.defaultSchedule: "weekly" is not a cron schedule (five fields: minute hour day-of-month month '
        "day-of-week)",
    ),
    (
        "key-not-in-secret",
        ("apps", 0, "rotation", 0, "key"),
        "API_KEYS",
        'apps[0].rotation[0].key: "API_KEYS" is not a key of Secret "my-app-secrets" (keys: API_KEY, DB_PASSWORD)',
    ),
    (
        "key-rotated-twice",
        ("apps", 0, "rotation", 1, "key"),
        "API_KEY",
        'apps[0].rotation[1].key: "API_KEY" is already rotated by rotation[0]',
    ),
    (
        "restart-unknown-deployment",
        ("apps", 0, "rotation", 0, "restart"),
        ["api"],
        'apps[0].rotation[0].restart: Deployment "api" is not one of app "my-app"\'s deployments',
    ),
    (
        "image-without-tag",
        ("rotation", "image"),
        "ghcr.io/example/ksecrets-rotator",
        'rotation.image: "ghcr.io/example/ksecrets-rotator" has no tag; pin a version (e.g. :1.2.3) or a digest',
    ),
    (
        "image-latest",
        ("rotation", "image"),
        "ghcr.io/example/ksecrets-rotator:latest",
        'rotation.image: "ghcr.io/example/ksecrets-rotator:latest" uses :latest; pin a version or a digest',
    ),
    (
        "length-too-short",
        ("apps", 0, "rotation", 0, "length"),
        8,
        "apps[0].rotation[0].length: 8 is out of range (16 to 256)",
    ),
    (
        "unknown-generator",
        ("apps", 0, "rotation", 0, "generator"),
        "uuid",
        'apps[0].rotation[0].generator: "uuid" is not one of random, postgres',
    ),
    (
        "postgres-without-target",
        ("apps", 0, "rotation", 1, "postgres"),
        None,
        "apps[0].rotation[1].postgres: is required when generator is postgres",
    ),
    (
        "postgres-admin-secret-name",
        ("apps", 0, "rotation", 1, "postgres", "adminSecret"),
        "PG_Admin",
        'apps[0].rotation[1].postgres.adminSecret: "PG_Admin" is not a valid Kubernetes name',
    ),
    (
        "unknown-rotation-key",
        ("apps", 0, "rotation", 0, "schedul"),
        "0 2 * * 0",
        'apps[0].rotation[0].schedul: unknown key (did you mean "schedule"?)',
    ),
]


@pytest.mark.parametrize("name,path,value,message", CASES, ids=[c[0] for c in CASES])
def test_one_line_error_naming_the_key_path(name, path, value, message):
    got = error(with_(path, value))
    assert got == f"Pulumi.production.yaml: {message}"
    assert "\n" not in got


def test_postgres_generator_needs_the_vault_backend():
    raw = with_(("backend",), "sealed-secrets")
    raw["sealedSecrets"] = {"certificate": "certs/x.pem"}
    del raw["apps"][0]["vault"]
    assert error(raw) == (
        "Pulumi.production.yaml: apps[0].rotation[1].generator: postgres rotation needs the vault backend"
    )


def test_a_rotatable_key_needs_declared_keys_under_vault():
    raw = copy.deepcopy(VAULT)
    del raw["apps"][0]["keys"]
    assert error(raw) == (
        'Pulumi.production.yaml: apps[0].rotation[0].key: "API_KEY" is not a key of Secret '
        '"my-app-secrets" (it has no known keys)'
    )


@pytest.mark.parametrize(
    "value",
    ["0 2 * * 0", "*/15 * * * *", "0 2 * * MON-FRI", "30 3 1,15 jan-jun/2 ?", "@weekly", "@daily", "0 0-23/6 * * sun"],
)
def test_valid_schedules(value):
    assert cron(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "redis:7",
        "postgres:16.4",
        "ghcr.io/example/ksecrets-rotator:0.1.0",
        "localhost:5000/rotator:1",
        "img@sha256:" + "a" * 64,
    ],
)
def test_valid_images(value):
    assert image(value) is None


def test_the_command_prints_one_line_and_exits_2(tmp_path):
    doc = {
        "config": {f"k8s-secrets:{k}": v for k, v in with_(("apps", 0, "rotation", 0, "schedule"), "0 2 * *").items()}
    }
    (tmp_path / "Pulumi.production.yaml").write_text(yaml.safe_dump(doc))
    done = run_ksecrets("export", "--stack", "production", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        'ksecrets: Pulumi.production.yaml: apps[0].rotation[0].schedule: "0 2 * *" is not a cron '
        "schedule (five fields: minute hour day-of-month month day-of-week)\n"
    )
    assert not (tmp_path / "k8s").exists()


# --- issue 12: dual PostgreSQL logins, one CronJob per schedule, minimum interval ---------------

DUAL_PG = {"host": "db", "role": "app", "adminSecret": "pg-admin", "mode": "dual", "usernameKey": "DB_USER"}


@pytest.mark.parametrize(
    "pg,keys,message",
    [
        (
            {**DUAL_PG, "usernameKey": None},
            ["API_KEY", "DB_PASSWORD"],
            "apps[0].rotation[1].postgres.usernameKey: is required when mode is dual (the key that holds the login's name)",
        ),
        (
            {**DUAL_PG, "mode": "single"},
            ["API_KEY", "DB_PASSWORD", "DB_USER"],
            "apps[0].rotation[1].postgres.usernameKey: is only used when mode is dual",
        ),
        (
            DUAL_PG,
            ["API_KEY", "DB_PASSWORD"],
            'apps[0].rotation[1].postgres.usernameKey: "DB_USER" is not a key of Secret "my-app-secrets" '
            "(keys: API_KEY, DB_PASSWORD)",
        ),
        (
            {**DUAL_PG, "usernameKey": "API_KEY"},
            ["API_KEY", "DB_PASSWORD"],
            'apps[0].rotation[1].postgres.usernameKey: "API_KEY" is rotated itself; the username key is written by '
            "this rotation",
        ),
        (
            {**DUAL_PG, "mode": "triple"},
            ["API_KEY", "DB_PASSWORD", "DB_USER"],
            'apps[0].rotation[1].postgres.mode: "triple" is not one of single, dual',
        ),
    ],
)
def test_dual_mode_errors(pg, keys, message):
    doc = with_(("apps", 0, "rotation", 1, "postgres"), {k: v for k, v in pg.items() if v is not None})
    doc["apps"][0]["keys"] = keys
    with pytest.raises(ConfigError) as err:
        parse(doc, stack="s", source="Pulumi.s.yaml")
    assert str(err.value) == f"Pulumi.s.yaml: {message}"


def test_two_postgres_passwords_on_one_schedule_is_an_error():
    doc = copy.deepcopy(VAULT)
    doc["apps"][0]["keys"].append("DB2")
    doc["apps"][0]["rotation"].append(
        {"key": "DB2", "generator": "postgres", "postgres": {"host": "db2", "role": "b", "adminSecret": "pg-admin"}}
    )
    with pytest.raises(ConfigError) as err:
        parse(doc, stack="s", source="Pulumi.s.yaml")
    assert str(err.value) == (
        "Pulumi.s.yaml: apps[0].rotation[2].schedule: rotation[1] already rotates a PostgreSQL "
        'password on "0 2 * * 0"; one rotation (one kv-v2 version) changes at most one: give '
        "this one another schedule"
    )
    doc["apps"][0]["rotation"][2]["schedule"] = "0 4 * * 0"
    assert len(parse(doc, stack="s", source="Pulumi.s.yaml").apps[0].rotation) == 3


def test_min_interval():
    assert parse(VAULT, stack="s", source="Pulumi.s.yaml").rotation.min_interval_seconds == 3600
    doc = with_(("rotation", "minInterval"), "1h30m")
    assert parse(doc, stack="s", source="Pulumi.s.yaml").rotation.min_interval_seconds == 5400
    doc = with_(("rotation", "minInterval"), "soon")
    with pytest.raises(ConfigError) as err:
        parse(doc, stack="s", source="Pulumi.s.yaml")
    assert str(err.value) == 'Pulumi.s.yaml: rotation.minInterval: "soon" is not a duration like 30s, 10m or 1h30m'

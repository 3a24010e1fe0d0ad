"""The postgres rotation against a real PostgreSQL server: the new password logs in, the old one
no longer does, and every failure half-way leaves the old pair working (database and Vault)."""

from __future__ import annotations

import logging

import hvac
import pytest

from ksecrets.jobs.rotate import (
    EXIT_FAILED,
    EXIT_UNKNOWN,
    Postgres,
    RotationFailed,
    RotationStateUnknown,
    Target,
    rotate_postgres,
)
from ksecrets.jobs.rotate.__main__ import main
from ksecrets.jobs.rotate.postgres import can_login

VAULT_ADDR = "http://vault.test:8200"  # what the fake_kv fixture serves (tests/jobs/rotate/conftest.py)
VAULT_TOKEN = "hvs.test-token"

OLD = "old-password-0123456789abcdef"
NEW = "new-password-ZYXWVUTSRQ_987654"
ROLE = "App-User"  # mixed case and a hyphen: only a quoted identifier reaches this role


@pytest.fixture
def role(pg_server):
    pg_server.create_role(ROLE, OLD)
    return ROLE


@pytest.fixture
def pg(pg_server, role) -> Postgres:
    return Postgres(
        host=pg_server.socket_dir,
        port=pg_server.port,
        database="postgres",
        role=role,
        admin_user=pg_server.admin,
        admin_password=pg_server.admin_password,
    )


@pytest.fixture
def seeded(fake_kv):
    fake_kv.seed("my-app", {"DB_PASSWORD": OLD, "API_KEY": "unrelated"})
    return fake_kv


TARGET = Target(mount="secret", path="my-app", key="DB_PASSWORD")


def client() -> hvac.Client:
    return hvac.Client(url=VAULT_ADDR, token=VAULT_TOKEN)


def test_the_new_password_logs_in_and_the_old_one_no_longer_does(pg, seeded):
    version = rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert version == 2
    assert seeded.current("my-app") == {"DB_PASSWORD": NEW, "API_KEY": "unrelated"}
    assert can_login(pg, ROLE, NEW) is True
    assert can_login(pg, ROLE, OLD) is False


def test_command_end_to_end_exit_0_and_no_value_in_any_output(pg_server, pg, seeded, capsys, caplog):
    caplog.set_level(logging.INFO, logger="ksecrets.rotate")
    env = {
        "VAULT_ADDR": VAULT_ADDR,
        "VAULT_TOKEN": VAULT_TOKEN,
        "PGADMIN_USER": pg_server.admin,
        "PGADMIN_PASSWORD": pg_server.admin_password,
    }
    code = main(
        [
            "--mount",
            "secret",
            "--path",
            "my-app",
            "--key",
            "DB_PASSWORD",
            "--generator",
            "postgres",
            "--length",
            "40",
            "--pg-host",
            pg_server.socket_dir,
            "--pg-port",
            str(pg_server.port),
            "--pg-database",
            "postgres",
            "--pg-role",
            ROLE,
        ],
        env,
    )
    assert code == 0
    new = seeded.current("my-app")["DB_PASSWORD"]
    assert len(new) == 40 and new != OLD
    assert can_login(pg, ROLE, new) is True
    assert can_login(pg, ROLE, OLD) is False
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "committed the new password of role App-User" in caplog.text
    for value in (new, OLD, pg_server.admin_password):
        assert value not in text
    # The statement PostgreSQL logged (log_statement=all) carries a SCRAM verifier, not the password.
    server_log = pg_server.log_file.read_text()
    assert 'ALTER ROLE "App-User" WITH PASSWORD \'SCRAM-SHA-256$' in server_log
    assert new not in server_log


def test_vault_write_fails_database_rolled_back(pg, seeded):
    seeded.fail_write = 500
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert err.value.exit_code == EXIT_FAILED
    assert "rolled back" in str(err.value) and NEW not in str(err.value)
    assert can_login(pg, ROLE, OLD) is True
    assert can_login(pg, ROLE, NEW) is False
    assert seeded.version("my-app") == 1 and seeded.current("my-app")["DB_PASSWORD"] == OLD


def test_concurrent_writer_check_and_set_refuses_and_database_rolled_back(pg, seeded):
    seeded.concurrent_write = {"API_KEY": "someone-else"}
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert "check-and-set" in str(err.value)
    assert can_login(pg, ROLE, OLD) is True
    assert can_login(pg, ROLE, NEW) is False
    # The other writer's version stays current, with the old password.
    assert seeded.current("my-app") == {"DB_PASSWORD": OLD, "API_KEY": "someone-else"}


def test_write_landed_despite_an_error_is_committed(pg, seeded):
    seeded.fail_after_write = 502
    version = rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert version == 2
    assert seeded.current("my-app")["DB_PASSWORD"] == NEW
    assert can_login(pg, ROLE, NEW) is True
    assert can_login(pg, ROLE, OLD) is False


def test_commit_fails_after_the_vault_write_old_value_is_restored_in_vault(pg_server, pg, seeded):
    def kill_rotator_session() -> None:
        with pg_server.admin_conn() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'ksecrets-rotate' AND pid <> pg_backend_pid()"
            )

    seeded.before_write = kill_rotator_session
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert "COMMIT failed" in str(err.value) and "version 3" in str(err.value)
    assert can_login(pg, ROLE, OLD) is True
    assert can_login(pg, ROLE, NEW) is False
    # Version 2 had the new value for a moment; version 3 (current) is the working one again.
    assert seeded.versions["my-app"][1]["DB_PASSWORD"] == NEW
    assert seeded.version("my-app") == 3 and seeded.current("my-app")["DB_PASSWORD"] == OLD


def test_commit_that_landed_but_lost_its_reply_keeps_the_new_pair(pg, seeded, monkeypatch):
    """A COMMIT can succeed on the server and still raise on the client; the database decides."""
    import psycopg

    from ksecrets.jobs.rotate import postgres as pgops

    real_commit = pgops.commit

    def commit_then_lose_reply(conn):
        real_commit(conn)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pgops, "commit", commit_then_lose_reply)
    version = rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert version == 2
    assert seeded.version("my-app") == 2 and seeded.current("my-app")["DB_PASSWORD"] == NEW
    assert can_login(pg, ROLE, NEW) is True
    assert can_login(pg, ROLE, OLD) is False


def test_commit_error_with_the_database_unreachable_exits_3(pg, seeded, monkeypatch):
    import psycopg

    from ksecrets.jobs.rotate import postgres as pgops

    def commit_fails(conn):
        conn.rollback()
        raise psycopg.OperationalError("connection lost")

    monkeypatch.setattr(pgops, "commit", commit_fails)
    monkeypatch.setattr(pgops, "can_login", lambda pg_, role, password: False)
    with pytest.raises(RotationStateUnknown) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert err.value.exit_code == EXIT_UNKNOWN
    assert "logs in with neither password" in str(err.value)
    assert NEW not in str(err.value) and OLD not in str(err.value)


def test_vault_unreadable_after_a_failed_write_exits_3_with_database_unchanged(pg, seeded):
    seeded.fail_write = 503
    seeded.fail_reads_after_failed_write = True
    with pytest.raises(RotationStateUnknown) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert err.value.exit_code == EXIT_UNKNOWN
    assert "vault kv rollback" in str(err.value)
    assert can_login(pg, ROLE, OLD) is True
    assert can_login(pg, ROLE, NEW) is False


def test_unknown_role_fails_before_vault_is_written(pg, seeded, pg_server):
    missing = Postgres(**{**pg.__dict__, "role": "no_such_role"})
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, missing, 32, generator=lambda n: NEW)
    assert 'role "no_such_role" does not exist' in str(err.value)
    assert "SQLSTATE 42704" in str(err.value)
    assert seeded.writes == 0 and seeded.version("my-app") == 1


def test_vault_unreadable_at_start_changes_nothing(pg, fake_kv):
    # No such secret in Vault: rotation does not start, the database is not touched.
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, pg, 32, generator=lambda n: NEW)
    assert "not started" in str(err.value) and "secret/data/my-app" in str(err.value)
    assert can_login(pg, ROLE, OLD) is True


def test_wrong_admin_password_fails_without_echoing_it(pg, seeded):
    bad = Postgres(**{**pg.__dict__, "admin_password": "definitely-wrong-admin-pw"})
    assert "definitely-wrong-admin-pw" not in repr(bad)
    with pytest.raises(RotationFailed) as err:
        rotate_postgres(client(), TARGET, bad, 32, generator=lambda n: NEW)
    assert "cannot connect" in str(err.value)
    assert "definitely-wrong-admin-pw" not in str(err.value)
    assert seeded.writes == 0
    assert can_login(pg, ROLE, OLD) is True


def test_command_exit_code_1_when_vault_write_fails(pg_server, pg, seeded, capsys):
    seeded.fail_write = 500
    env = {
        "VAULT_ADDR": VAULT_ADDR,
        "VAULT_TOKEN": VAULT_TOKEN,
        "PGADMIN_USER": pg_server.admin,
        "PGADMIN_PASSWORD": pg_server.admin_password,
    }
    code = main(
        [
            "--mount",
            "secret",
            "--path",
            "my-app",
            "--key",
            "DB_PASSWORD",
            "--generator",
            "postgres",
            "--pg-host",
            pg_server.socket_dir,
            "--pg-port",
            str(pg_server.port),
            "--pg-role",
            ROLE,
        ],
        env,
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") >= 1 and "ksecrets.rotate: writing secret/data/my-app key DB_PASSWORD failed" in err
    assert can_login(pg, ROLE, OLD) is True

"""Dual credentials and one-version rotations against the real PostgreSQL server the tests start
and the kv-v2 fake at the HTTP boundary (tests/jobs/rotate/conftest.py)."""

from __future__ import annotations

import itertools

import hvac
import psycopg
import pytest
from psycopg import sql

from ksecrets.jobs.rotate import (
    MARK_KEY,
    Plan,
    Postgres,
    PostgresItem,
    RotationFailed,
    Target,
    rotate_app,
    rotate_postgres_dual,
)
from ksecrets.jobs.rotate.__main__ import main
from ksecrets.jobs.rotate.postgres import can_login

GROUP = "Orders-App"  # mixed case and a hyphen: quoted identifiers everywhere
A, B = f"{GROUP}_a", f"{GROUP}_b"


def client(kv) -> hvac.Client:
    return hvac.Client(url=kv.addr, token=kv.token)


def drop(pg_server, *roles: str) -> None:
    with pg_server.admin_conn() as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role))) if conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone() else None
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def group(pg_server):
    drop(pg_server, A, B, GROUP)
    with pg_server.admin_conn() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(GROUP)))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS orders"))
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA orders TO {}").format(sql.Identifier(GROUP)))
    yield GROUP
    drop(pg_server, A, B, GROUP)


@pytest.fixture
def pg(pg_server, group) -> Postgres:
    return Postgres(
        host=pg_server.socket_dir,
        port=pg_server.port,
        database="postgres",
        role=group,
        admin_user=pg_server.admin,
        admin_password=pg_server.admin_password,
    )


def values():
    counter = itertools.count(1)
    return lambda n: f"value-{next(counter):04d}".ljust(n, "x")


TARGET = Target("secret", "orders", "DB_PASSWORD")


def test_each_rotation_switches_login_and_the_previous_pair_still_logs_in(pg, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": "", "API_KEY": "k"})
    gen = values()
    pairs = []
    for _ in range(4):
        rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, gen)
        cur = fake_kv.current("orders")
        pairs.append((cur["DB_USER"], cur["DB_PASSWORD"]))
    assert [u for u, _ in pairs] == [A, B, A, B]
    # the current and the previous pair log in; the one before that was replaced
    assert can_login(pg, *pairs[-1]) and can_login(pg, *pairs[-2])
    assert not can_login(pg, *pairs[-3]) and not can_login(pg, *pairs[-4])
    assert fake_kv.current("orders")["API_KEY"] == "k"
    assert fake_kv.version("orders") == 5  # one version per rotation, username and password together


def test_logins_inherit_the_group_and_create_objects_owned_by_it(pg_server, pg, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    user, pw = fake_kv.current("orders")["DB_USER"], fake_kv.current("orders")["DB_PASSWORD"]
    with psycopg.connect(
        host=pg_server.socket_dir, port=pg_server.port, dbname="postgres", user=user, password=pw, autocommit=True
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == GROUP
        conn.execute("CREATE TABLE orders.t (id int)")
    rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    other = fake_kv.current("orders")
    assert other["DB_USER"] != user
    with psycopg.connect(
        host=pg_server.socket_dir,
        port=pg_server.port,
        dbname="postgres",
        user=other["DB_USER"],
        password=other["DB_PASSWORD"],
        autocommit=True,
    ) as conn:
        conn.execute("INSERT INTO orders.t VALUES (1)")  # the other login uses what the first created
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 't'").fetchone()[0]
    assert owner == GROUP


def test_a_failed_vault_write_leaves_vault_naming_the_untouched_login(pg, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    before = fake_kv.current("orders")
    fake_kv.fail_write = 500
    with pytest.raises(RotationFailed) as err:
        rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    assert f"Vault still names login {A}" in str(err.value)
    assert fake_kv.current("orders") == before and can_login(pg, before["DB_USER"], before["DB_PASSWORD"])


def test_a_missing_group_role_changes_nothing(pg_server, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    pg = Postgres(
        pg_server.socket_dir, pg_server.port, "postgres", "no_such_group", pg_server.admin, pg_server.admin_password
    )
    with pytest.raises(RotationFailed) as err:
        rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    assert 'role "no_such_group" does not exist' in str(err.value)
    assert fake_kv.writes == 0
    with pg_server.admin_conn() as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'no_such_group%'").fetchone()[0] == 0


def test_a_second_rotator_of_the_same_role_stops(pg_server, pg, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    with pg_server.admin_conn() as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ksecrets-rotate:{GROUP}",))
        with pytest.raises(RotationFailed) as err:
            rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
        # Released here, not when the server ends the closed session's backend (asynchronous: on a
        # loaded machine the worker's next rotation test found the lock still held).
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ksecrets-rotate:{GROUP}",))
    assert "another rotation of role Orders-App is running" in str(err.value)
    assert fake_kv.writes == 0


@pytest.mark.parametrize("ends", ["done", "refused by Vault"])
def test_the_rotation_lock_is_free_before_the_rotator_closes_its_connection(pg_server, pg, fake_kv, ends, monkeypatch):
    """The rotator unlocks before it closes its connection: closing alone frees the lock only when
    the server has ended the backend, asynchronously (back-to-back rotations under load found it
    held). Checked at the close itself, from another session, while the rotator's is still open."""
    from ksecrets.jobs.rotate import postgres as pgops

    key = (f"ksecrets-rotate:{GROUP}",)
    free_at_close: list[bool] = []
    real_close = pgops.close

    def close(conn) -> None:
        with pg_server.admin_conn() as other:
            got = other.execute("SELECT pg_try_advisory_lock(hashtext(%s))", key).fetchone()[0]
            if got:
                other.execute("SELECT pg_advisory_unlock(hashtext(%s))", key)
        free_at_close.append(got)
        real_close(conn)

    monkeypatch.setattr(pgops, "close", close)
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    if ends == "done":
        rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    else:
        fake_kv.fail_write = 500
        with pytest.raises(RotationFailed):
            rotate_postgres_dual(client(fake_kv), TARGET, pg, "DB_USER", 24, values())
    assert free_at_close and all(free_at_close), free_at_close


def test_keys_of_one_schedule_change_in_one_version(pg, fake_kv):
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": "", "API_KEY": "a", "TOKEN": "t", "OTHER": "o"})
    plan = Plan(
        "secret",
        "orders",
        random=(("API_KEY", 40), ("TOKEN", 20)),
        postgres=PostgresItem("DB_PASSWORD", pg, 24, "dual", "DB_USER"),
    )
    out = rotate_app(client(fake_kv), plan, generator=values())
    assert out.version == 2 and fake_kv.version("orders") == 2
    new = fake_kv.current("orders")
    assert {k for k in new if new[k] != fake_kv.versions["orders"][0][k]} == {
        "DB_USER",
        "DB_PASSWORD",
        "API_KEY",
        "TOKEN",
    }
    assert len(new["API_KEY"]) == 40 and len(new["TOKEN"]) == 20 and new["OTHER"] == "o"
    assert fake_kv.custom["orders"] == {MARK_KEY: "2"}


def test_random_keys_alone_one_version(fake_kv):
    fake_kv.seed("app", {"A": "1", "B": "2"})
    fake_kv.custom["app"] = {"owner": "team-x"}
    out = rotate_app(client(fake_kv), Plan("secret", "app", random=(("A", 16), ("B", 17))))
    assert out.version == 2 and fake_kv.version("app") == 2
    assert fake_kv.custom["app"] == {"owner": "team-x", MARK_KEY: "2"}  # other custom metadata kept


def test_minimum_interval_skips_a_second_rotation_and_allows_it_later(fake_kv):
    fake_kv.seed("app", {"A": "1"})
    clock = [1_000_000.0]
    plan = Plan("secret", "app", random=(("A", 16),), min_interval=3600)
    assert rotate_app(client(fake_kv), plan).version == 2
    written = fake_kv.created["app"][-1]
    clock[0] = written + 3599
    out = rotate_app(client(fake_kv), plan, now=lambda: clock[0])
    assert out.version is None and "less than the minimum interval of 3600s" in out.skipped
    assert fake_kv.version("app") == 2
    clock[0] = written + 3601
    assert rotate_app(client(fake_kv), plan, now=lambda: clock[0]).version == 3


def test_a_push_is_not_a_rotation_but_a_marked_version_that_never_landed_does_not_count(fake_kv):
    fake_kv.seed("app", {"A": "1"})
    plan = Plan("secret", "app", random=(("A", 16),), min_interval=3600)
    fake_kv.fail_write = 500
    with pytest.raises(RotationFailed):
        rotate_app(client(fake_kv), plan)
    assert fake_kv.custom["app"] == {MARK_KEY: "2"} and fake_kv.version("app") == 1
    fake_kv.fail_write = None
    assert rotate_app(client(fake_kv), plan).version == 2  # the Job's retry is not blocked


def test_command_dual_form_and_bad_flags(pg_server, pg, fake_kv, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ksecrets.rotate")
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": "", "API_KEY": "a"})
    env = {
        "VAULT_ADDR": fake_kv.addr,
        "VAULT_TOKEN": fake_kv.token,
        "PGADMIN_USER": pg_server.admin,
        "PGADMIN_PASSWORD": pg_server.admin_password,
    }
    base = [
        "--mount",
        "secret",
        "--path",
        "orders",
        "--pg-host",
        pg_server.socket_dir,
        "--pg-port",
        str(pg_server.port),
        "--pg-role",
        GROUP,
    ]
    assert (
        main(
            [
                *base,
                "--random",
                "API_KEY:48",
                "--postgres",
                "DB_PASSWORD:40",
                "--pg-mode",
                "dual",
                "--pg-username-key",
                "DB_USER",
                "--min-interval",
                "3600",
            ],
            env,
        )
        == 0
    )
    cur = fake_kv.current("orders")
    assert cur["DB_USER"] == A and len(cur["DB_PASSWORD"]) == 40 and len(cur["API_KEY"]) == 48
    assert main([*base, "--random", "API_KEY:48", "--min-interval", "3600"], env) == 0  # skipped
    assert fake_kv.version("orders") == 2
    text = capsys.readouterr().err + caplog.text
    assert "skipped: secret/data/orders: the last rotation (version 2) is" in caplog.text
    for key in ("DB_PASSWORD", "API_KEY"):
        assert cur[key] not in text
    assert main([*base, "--postgres", "DB_PASSWORD", "--pg-mode", "dual"], env) == 2
    assert main([*base, "--random", "API_KEY:8"], env) == 2
    assert main([*base, "--key", "API_KEY", "--random", "API_KEY"], env) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ksecrets.rotate: --pg-mode dual needs --pg-username-key",
        "ksecrets.rotate: --random: 'API_KEY:8': the length must be a number from 16 to 256",
        "ksecrets.rotate: --key (one-key form) cannot be combined with --random or --postgres",
    ]


def test_workstation_rotate_dual_honours_the_minimum_interval_unless_forced(
    pg_server, pg, fake_kv, cli, monkeypatch, tmp_path
):
    (tmp_path / "Pulumi.ws.yaml").write_text(f"""\
config:
  k8s-secrets:backend: vault
  k8s-secrets:apps:
    - name: orders
      namespace: orders
      keys: [DB_USER, DB_PASSWORD]
      vault: {{path: orders}}
      rotation:
        - key: DB_PASSWORD
          generator: postgres
          postgres: {{host: "{pg_server.socket_dir}", port: {pg_server.port}, database: postgres, role: {GROUP},
                     adminSecret: pg-admin, mode: dual, usernameKey: DB_USER}}
""")
    fake_kv.seed("orders", {"DB_USER": "", "DB_PASSWORD": ""})
    for name, value in (
        ("VAULT_ADDR", fake_kv.addr),
        ("VAULT_TOKEN", fake_kv.token),
        ("PGADMIN_USER", pg_server.admin),
        ("PGADMIN_PASSWORD", pg_server.admin_password),
    ):
        monkeypatch.setenv(name, value)
    args = ("rotate", "--stack", "ws", "--name", "orders-secrets", "--key", "DB_PASSWORD", "--root", str(tmp_path))
    first = cli(*args)
    assert first.code == 0, first.err
    assert first.out.splitlines()[0] == (
        "secret/data/orders key DB_PASSWORD: rotated (kv-v2 version 2) and login Orders-App_a/_b switched"
    )
    second = cli(*args)
    assert second.code == 1 and second.err.startswith(
        "ksecrets: not rotated: secret/data/orders: the last rotation (version 2) is "
    )
    assert second.err.rstrip().endswith(
        "less than the minimum interval of 3600s (rotation.minInterval); --force rotates anyway"
    )
    forced = cli(*args, "--force")
    assert forced.code == 0, forced.err
    cur = fake_kv.current("orders")
    assert cur["DB_USER"] == B and can_login(pg, cur["DB_USER"], cur["DB_PASSWORD"])
    assert cur["DB_PASSWORD"] not in first.out + second.out + forced.out + second.err

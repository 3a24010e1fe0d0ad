"""The rotation proof, shared by the unit suite (kv-v2 fake served on 127.0.0.1) and the e2e suite
(a real Vault dev server): a client that logs in with the credential it read last, and a rotator
killed (SIGKILL) at each step of a rotation.

A "source" is anything with `addr`, `token`, `seed(path, data)` and `current(path)`: the fake
(`tests/jobs/rotate/conftest.py:FakeKV`) or `RealVault` below.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import psycopg
from psycopg import sql

from ksecrets.jobs.rotate import Plan, Postgres, PostgresItem, rotate_app

ROOT = Path(__file__).resolve().parents[3]
STEPS_DUAL = ("read", "committed", "marked", "written")
STEPS_SINGLE = ("read", "altered", "marked", "written")


class RealVault:
    """A real Vault's kv-v2 mount `secret/`, with the fake's test helpers."""

    def __init__(self, addr: str, token: str, mount: str = "secret") -> None:
        self.addr, self.token, self.mount = addr, token, mount
        self.client = hvac.Client(url=addr, token=token)

    def seed(self, path: str, data: dict[str, str]) -> None:
        self.client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=self.mount)

    def current(self, path: str) -> dict[str, str]:
        return self.client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self.mount, raise_on_deleted_version=True
        )["data"]["data"]

    def version(self, path: str) -> int:
        return int(
            self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)["data"]["current_version"]
        )


def reset_group(pg_server, group: str) -> None:
    """A NOLOGIN group role with nothing else: the app's privileges would be granted to it."""
    with pg_server.admin_conn() as conn:
        for role in (f"{group}_a", f"{group}_b", group):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))


def postgres(pg_server, role: str) -> Postgres:
    return Postgres(
        host=pg_server.socket_dir,
        port=pg_server.port,
        database="postgres",
        role=role,
        admin_user=pg_server.admin,
        admin_password=pg_server.admin_password,
    )


def login(pg_server, user: str, password: str) -> bool:
    try:
        with psycopg.connect(
            host=pg_server.socket_dir,
            port=pg_server.port,
            dbname="postgres",
            user=user,
            password=password,
            connect_timeout=5,
        ):
            return True
    except psycopg.OperationalError:
        return False


@dataclass
class Figures:
    mode: str
    rotations: int = 0
    skipped: int = 0
    logins: int = 0
    failed: int = 0
    rereads: int = 0
    seconds: float = 0.0
    rotation_ms: list[float] = field(default_factory=list)
    max_age_ms: float = 0.0  # the oldest credential the client used: time since it read it
    max_lag: int = 0  # the most versions the pair the client logged in with was behind the newest

    def line(self) -> str:
        ms = sorted(self.rotation_ms) or [0.0]
        return (
            f"{self.mode:6} | {self.rotations:9} | {self.logins:6} | {self.failed:13} | {self.rereads:7} | "
            f"{statistics.median(ms):9.1f} | {ms[-1]:7.1f} | {self.max_age_ms:11.1f} | {self.seconds:5.1f}"
        )

    HEADER = "mode   | rotations | logins | failed logins | rereads | median ms | max ms  | max age ms  | s"


class Client(threading.Thread):
    """Logs in again and again with the pair it read last; re-reads the source every `reread` s."""

    def __init__(
        self,
        source,
        path: str,
        pg_server,
        user_key: str | None,
        password_key: str,
        fixed_user: str | None,
        reread: float,
        figures: Figures,
    ) -> None:
        super().__init__(daemon=True)
        self.vault = hvac.Client(url=source.addr, token=source.token)
        self.path, self.pg_server, self.user_key, self.password_key = path, pg_server, user_key, password_key
        self.fixed_user, self.reread, self.figures = fixed_user, reread, figures
        self.stop_event = threading.Event()
        self.failures: list[str] = []
        self.version_read = 0  # the kv version of the pair in hand
        self.newest = 0  # the newest version written (set by the rotating side)
        self.caught_up = threading.Condition()

    def _read(self) -> tuple[str, str]:
        answer = self.vault.secrets.kv.v2.read_secret_version(
            path=self.path, mount_point="secret", raise_on_deleted_version=True
        )["data"]
        data = answer["data"]
        self.figures.rereads += 1
        with self.caught_up:
            self.version_read = int(answer["metadata"]["version"])
            self.caught_up.notify_all()
        return (data[self.user_key] if self.user_key else self.fixed_user), data[self.password_key]

    def wait_for(self, version: int, timeout: float = 60.0) -> None:
        """Block until the client holds `version`: the consumer's side of the contract (in a cluster,
        refreshAfter plus the rollout within minInterval), made explicit rather than left to timing."""
        with self.caught_up:
            if not self.caught_up.wait_for(lambda: self.version_read >= version or not self.is_alive(), timeout):
                raise AssertionError(f"the client did not read version {version} within {timeout:.0f} s")

    def run(self) -> None:
        last = time.monotonic()
        user, password = self._read()
        while not self.stop_event.is_set():
            if time.monotonic() - last >= self.reread:
                last = time.monotonic()  # the time of the read, taken before it
                user, password = self._read()
            age = time.monotonic() - last
            self.figures.max_lag = max(self.figures.max_lag, self.newest - self.version_read)
            self.figures.logins += 1
            if not login(self.pg_server, user, password):
                self.figures.failed += 1
                self.failures.append(f"{user} (read {age * 1000:.0f} ms before)")
            self.figures.max_age_ms = max(self.figures.max_age_ms, age * 1000)


def run_rotations(
    source, pg_server, *, mode: str, group: str, rotations: int, min_interval: float, reread: float
) -> Figures:
    """`rotations` rotations of one app (a random key and the database password in one version),
    paced by the rotator's own minimum interval, while a client logs in continuously."""
    path = f"proof-{mode}-{group}"
    reset_group(pg_server, group)
    figures = Figures(mode)
    if mode == "dual":
        source.seed(path, {"DB_USER": "", "DB_PASSWORD": "", "API_KEY": "initial-api-key-value"})
        rotate_app(hvac.Client(url=source.addr, token=source.token), _plan(pg_server, path, group, mode, 0))
        figures = Figures(mode)  # the first rotation only creates the first login
    else:
        with pg_server.admin_conn() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(group), sql.Literal("initial-password-0123456789")
                )
            )
        source.seed(path, {"DB_PASSWORD": "initial-password-0123456789", "API_KEY": "initial-api-key-value"})
    plan = _plan(pg_server, path, group, mode, min_interval)
    client = Client(
        source,
        path,
        pg_server,
        "DB_USER" if mode == "dual" else None,
        "DB_PASSWORD",
        None if mode == "dual" else group,
        reread,
        figures,
    )
    vault = hvac.Client(url=source.addr, token=source.token)
    started = time.monotonic()
    client.start()
    try:
        while figures.rotations < rotations:
            t0 = time.monotonic()
            out = rotate_app(vault, plan)
            if out.version is None:
                figures.skipped += 1
                time.sleep(0.005)
                continue
            figures.rotation_ms.append((time.monotonic() - t0) * 1000)
            figures.rotations += 1
            client.newest = out.version
            if mode == "dual":
                # Dual mode keeps the last two pairs valid: the client must hold the newest before
                # the next rotation retires the one before it.
                client.wait_for(out.version)
        time.sleep(2 * reread)  # the client re-reads after the last rotation too
    finally:
        client.stop_event.set()
        client.join(30)
    figures.seconds = time.monotonic() - started
    return figures


def _plan(pg_server, path: str, group: str, mode: str, min_interval: float) -> Plan:
    return Plan(
        "secret",
        path,
        random=(("API_KEY", 32),),
        postgres=PostgresItem(
            "DB_PASSWORD", postgres(pg_server, group), 32, mode, "DB_USER" if mode == "dual" else None
        ),
        min_interval=min_interval,
    )  # type: ignore[arg-type]


# --- crash (SIGKILL) at each step ---------------------------------------------------------------

_RUNNER = textwrap.dedent("""
    import os, signal, sys
    import ksecrets.jobs.rotate as rotate
    from ksecrets.jobs.rotate.__main__ import main

    stop_at = os.environ["KSECRETS_TEST_KILL_AT"]

    def step(name):
        if name == stop_at:
            sys.stderr.write("killed at " + name + "\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    rotate._step = step
    raise SystemExit(main(sys.argv[1:]))
""")


def rotator_argv(pg_server, path: str, group: str, mode: str) -> list[str]:
    argv = [
        "--mount",
        "secret",
        "--path",
        path,
        "--random",
        "API_KEY:32",
        "--postgres",
        "DB_PASSWORD:32",
        "--pg-mode",
        mode,
        "--pg-host",
        pg_server.socket_dir,
        "--pg-port",
        str(pg_server.port),
        "--pg-role",
        group,
    ]
    return argv + (["--pg-username-key", "DB_USER"] if mode == "dual" else [])


def run_rotator(source, pg_server, argv: list[str], kill_at: str | None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VAULT_ADDR": source.addr,
        "VAULT_TOKEN": source.token,
        "PGADMIN_USER": pg_server.admin,
        "PGADMIN_PASSWORD": pg_server.admin_password,
        "KSECRETS_TEST_KILL_AT": kill_at or "-",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run([sys.executable, "-c", _RUNNER, *argv], env=env, capture_output=True, text=True, timeout=60)


def pair(source, path: str, mode: str, group: str) -> tuple[str, str]:
    data = source.current(path)
    return (data["DB_USER"] if mode == "dual" else group), data["DB_PASSWORD"]


def crash_each_step(source, pg_server, *, mode: str, group: str) -> dict[str, dict[str, bool]]:
    """For each step: rotate once cleanly, then rotate again and SIGKILL the rotator at that step.
    Report whether the pair Vault serves logs in, whether the pair served before the killed run
    still logs in, and whether the next (clean) rotation succeeds and its pair logs in."""
    steps = STEPS_DUAL if mode == "dual" else STEPS_SINGLE
    out: dict[str, dict[str, bool]] = {}
    for step in steps:
        path = f"crash-{mode}-{step}"
        reset_group(pg_server, group)
        if mode == "dual":
            source.seed(path, {"DB_USER": "", "DB_PASSWORD": "", "API_KEY": "k" * 32})
        else:
            with pg_server.admin_conn() as conn:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(group), sql.Literal("p" * 32))
                )
            source.seed(path, {"DB_PASSWORD": "p" * 32, "API_KEY": "k" * 32})
        argv = rotator_argv(pg_server, path, group, mode)
        vault = hvac.Client(url=source.addr, token=source.token)
        rotate_app(vault, _plan(pg_server, path, group, mode, 0))  # clean, in-process: only the kill needs a child
        before = pair(source, path, mode, group)
        killed = run_rotator(source, pg_server, argv, step)
        assert killed.returncode == -9 and f"killed at {step}" in killed.stderr, killed.stderr
        served = pair(source, path, mode, group)
        result = {"served pair logs in": login(pg_server, *served), "previous pair logs in": login(pg_server, *before)}
        try:
            result["next rotation succeeds"] = (
                rotate_app(vault, _plan(pg_server, path, group, mode, 0)).version is not None
            )
        except Exception:  # noqa: BLE001 - reported as a NO in the table
            result["next rotation succeeds"] = False
        result["its pair logs in"] = login(pg_server, *pair(source, path, mode, group))
        out[step] = result
    return out


def crash_table(mode: str, results: dict[str, dict[str, bool]]) -> str:
    cols = list(next(iter(results.values())))
    lines = [f"{mode}: SIGKILL at step | " + " | ".join(cols)]
    for step, r in results.items():
        lines.append(f"{step:>23} | " + " | ".join(f"{'yes' if r[c] else 'NO':>{len(c)}}" for c in cols))
    return "\n".join(lines)

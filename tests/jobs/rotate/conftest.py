"""Fixtures for rotation tests: a throw-away PostgreSQL server and a kv-v2 Vault at the HTTP
boundary (`responses`), so hvac and `ksecrets.vault.kv` run unchanged."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import responses

from tests.fakes.kv2 import KV2

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
ADMIN = "ksadmin"
ADMIN_PASSWORD = "admin-pw-for-tests-only"
VAULT_ADDR = "http://vault.test:8200"
VAULT_TOKEN = "hvs.test-token"
JSON = {"Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    socket_dir: str
    port: int
    log_file: Path
    admin: str = ADMIN
    admin_password: str = ADMIN_PASSWORD

    def admin_conn(self, autocommit: bool = True):
        import psycopg

        return psycopg.connect(
            host=self.socket_dir,
            port=self.port,
            dbname="postgres",
            user=self.admin,
            password=self.admin_password,
            autocommit=autocommit,
        )

    def create_role(self, role: str, password: str) -> None:
        from psycopg import sql

        with self.admin_conn() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL cluster in a temp dir, on a free port and a unix socket in that dir, with
    scram-sha-256 authentication everywhere (so a wrong password really is refused). One per
    session, so one per xdist worker: the tests name fixed roles, which never meet in one server
    (grouping them on one worker with --dist loadgroup does not work with pytest 9.2: xdist #1386)."""
    if not PG_BIN_DIRS:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (bash .ci/tools.sh installs them)"
        )
    bindir = PG_BIN_DIRS[0]
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    base = tempfile.mkdtemp(prefix="ksecrets-pg-")
    data, sock = Path(base) / "data", Path(base) / "sock"
    pwfile, log_file = Path(base) / "pw", Path(base) / "server.log"
    sock.mkdir()
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    if os.geteuid() == 0:
        for p in (Path(base), sock, pwfile):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    os.chmod(base, 0o755)
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                ADMIN,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        # log_statement=all: the tests read the server log to prove no password reached it.
        opts = f"-p {port} -k {sock} -c listen_addresses='' -c log_statement=all -c password_encryption=scram-sha-256"
        run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log_file), "-w", "-t", "30", "start"])
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"cannot start a PostgreSQL server: {' '.join(str(detail).split())[:300]}")
    server = PgServer(socket_dir=str(sock), port=port, log_file=log_file)
    # The postmaster's PID, read once it runs: the server is stopped by that PID if pg_ctl cannot.
    postmaster = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    try:
        yield server
    finally:
        stopped = subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        if stopped.returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class FakeKV:
    """kv-v2 at `secret/` as Vault's HTTP API answers it: versions, check-and-set, 400 on mismatch,
    `metadata/` with each version's created_time (this machine's clock) and custom_metadata. The
    kv-v2 semantics are the shared store's (`tests/fakes/kv2.py`, also behind tests/vault's
    FakeVault); this adds the rotator's login and the failure hooks.

    Hooks simulate failures at the HTTP boundary:
      fail_write: status for the next writes (the write does not land)
      fail_after_write: the write lands, but the client sees this status
      fail_reads_after_failed_write: every GET fails (503) once a write has failed
      before_write: called before a write is applied (e.g. to break the database connection)
      concurrent_write: another writer bumps the version just before our write

    Served in-process through `responses` (`register`), or on 127.0.0.1 by a real HTTP server
    (`serve`), for a rotator run as a child process that a test kills.
    """

    mount: str = "secret"
    addr: str = VAULT_ADDR
    token: str = VAULT_TOKEN
    store: KV2 = field(default_factory=KV2)
    fail_write: int | None = None
    fail_after_write: int | None = None
    fail_reads_after_failed_write: bool = False
    before_write: Callable[[], None] | None = None
    concurrent_write: dict[str, str] | None = None
    write_failed: bool = False
    writes: int = 0
    logins: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def versions(self) -> dict[str, list]:
        return self.store.versions

    @property
    def created(self) -> dict[str, list[float]]:
        return self.store.created

    @property
    def custom(self) -> dict[str, dict[str, str]]:
        return self.store.custom

    def seed(self, path: str, data: dict[str, str], at: float | None = None) -> None:
        self.store.seed(path, data, at)

    def current(self, path: str) -> dict[str, str]:
        return dict(self.versions[path][-1])

    def version(self, path: str) -> int:
        return self.store.version(path)

    def _path(self, url: str, kind: str = "data") -> str:
        prefix = f"{self.addr}/v1/{self.mount}/{kind}/"
        return url.split("?")[0][len(prefix) :]

    def _read(self, request):
        if self.fail_reads_after_failed_write and self.write_failed:
            return 503, JSON, json.dumps({"errors": ["Vault is sealed"]})
        status, body = self.store.read(self._path(request.url))
        return status, JSON, json.dumps(body)

    def _write(self, request):
        path = self._path(request.url)
        if self.concurrent_write is not None:
            self.seed(path, {**self.current(path), **self.concurrent_write})
            self.concurrent_write = None
        if self.before_write is not None:
            self.before_write()
        if self.fail_write is not None:
            self.write_failed = True
            return self.fail_write, JSON, json.dumps({"errors": ["internal error"]})
        status, body = self.store.write(path, json.loads(request.body))
        if status != 200:
            self.write_failed = True
            return status, JSON, json.dumps(body)
        self.writes += 1
        if self.fail_after_write is not None:
            self.write_failed = True
            return self.fail_after_write, JSON, json.dumps({"errors": ["upstream timeout"]})
        return 200, JSON, json.dumps(body)

    def _read_metadata(self, request):
        status, body = self.store.read_metadata(self._path(request.url, "metadata"))
        return status, JSON, json.dumps(body)

    def _write_metadata(self, request):
        path = self._path(request.url, "metadata")
        payload = json.loads(request.body)
        if set(payload) - {"custom_metadata"}:
            return 400, JSON, json.dumps({"errors": ["the rotator only ever sends custom_metadata"]})
        status, _ = self.store.write_metadata(path, payload)
        return status, {}, ""

    def _login(self, request):
        self.logins.append(json.loads(request.body))
        return (
            200,
            JSON,
            json.dumps(
                {
                    "auth": {
                        "client_token": "hvs.from-kubernetes-login",
                        "renewable": True,
                        "lease_duration": 600,
                        "policies": ["rotate"],
                    }
                }
            ),
        )

    def _mounts(self, request):
        return 200, JSON, json.dumps({"data": {"path": f"{self.mount}/", "type": "kv", "options": {"version": "2"}}})

    def _routes(self):
        import re

        v1 = re.escape(f"{self.addr}/v1/")
        data, meta = v1 + re.escape(f"{self.mount}/data/") + r".+", v1 + re.escape(f"{self.mount}/metadata/") + r".+"
        login, mounts = v1 + r"auth/[^/]+/login", v1 + r"sys/internal/ui/mounts/.*"
        return [
            ("GET", data, self._read),
            ("POST", data, self._write),
            ("PUT", data, self._write),
            ("GET", meta, self._read_metadata),
            ("POST", meta, self._write_metadata),
            ("PUT", meta, self._write_metadata),
            ("POST", login, self._login),
            ("GET", mounts, self._mounts),
        ]

    def _locked(self, handler):
        def call(request):
            with self.lock:
                return handler(request)

        return call

    def register(self, rsps: responses.RequestsMock) -> None:
        import re

        for method, pattern, handler in self._routes():
            rsps.add_callback(method, re.compile(pattern), callback=self._locked(handler))

    @contextlib.contextmanager
    def serve(self) -> Iterator["FakeKV"]:
        """The same kv-v2 on a real HTTP server on 127.0.0.1 (a free port); `addr` points at it."""
        import re
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from types import SimpleNamespace

        kv = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = SimpleNamespace(
                    url=kv.addr + self.path, body=body.decode() if body else None, method=self.command
                )
                for method, pattern, handler in kv._routes():
                    if method == self.command and re.fullmatch(pattern, request.url.split("?")[0]):
                        with kv.lock:
                            status, headers, text = handler(request)
                        break
                else:
                    status, headers, text = 404, JSON, json.dumps({"errors": ["no route"]})
                payload = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args) -> None:  # quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture
def fake_kv() -> Iterator[FakeKV]:
    kv = FakeKV()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        kv.register(rsps)
        yield kv


@pytest.fixture
def served_kv() -> Iterator[FakeKV]:
    """The fake kv-v2 on a real HTTP server on 127.0.0.1 (for child processes)."""
    with FakeKV().serve() as kv:
        yield kv

"""PostgreSQL steps of a rotation: an admin connection, `ALTER ROLE ... PASSWORD` in an open
transaction, commit or roll back. psycopg 3.

The password never travels as plain text in SQL: libpq's `PQencryptPasswordConn` (what psql's
`\\password` uses) turns it into the server's verifier (SCRAM-SHA-256 unless the server says
otherwise) on the client, and the statement carries only that. So `log_statement = 'ddl'`, a
slow-query log or `pg_stat_activity` never show a usable password. The role is quoted with
`sql.Identifier`, the verifier passed as `sql.Literal`.

Errors become one-line `RotationFailed` messages with the SQLSTATE and the server's primary
message (which names roles and databases, never the statement's literals).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ksecrets.rotate import Postgres, RotationFailed

Error = psycopg.Error


def _describe(exc: psycopg.Error, what: str, pg: Postgres | None = None) -> str:
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    text = " ".join(str(primary).split())
    if pg is not None and pg.admin_password and pg.admin_password in text:
        text = type(exc).__name__
    return f"{what}: {text}" + (f" (SQLSTATE {state})" if state else "")


def connect_admin(pg: Postgres) -> psycopg.Connection:
    try:
        return psycopg.connect(**pg.conninfo(), autocommit=False)
    except psycopg.Error as exc:
        raise RotationFailed(_describe(
            exc, f"PostgreSQL {pg.host}:{pg.port}/{pg.database} as {pg.admin_user}: cannot connect", pg)) from None


def password_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The server-side verifier of `password` for `role`, computed on the client by libpq."""
    algorithm = None  # libpq asks the server for password_encryption (scram-sha-256 by default)
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), algorithm).decode("ascii")


def alter_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """`ALTER ROLE <role> WITH PASSWORD '<verifier>'` inside the connection's open transaction."""
    try:
        verifier = password_verifier(conn, role, password)
        conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
    except psycopg.Error as exc:
        rollback(conn)
        raise RotationFailed(_describe(exc, f"ALTER ROLE {role} failed, nothing changed")) from None


def commit(conn: psycopg.Connection) -> None:
    conn.commit()


def rollback(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:
        # A broken connection rolls back on the server by itself.
        pass


def close(conn: psycopg.Connection) -> None:
    try:
        conn.close()  # an uncommitted transaction is rolled back by the server
    except psycopg.Error:
        pass


def can_login(pg: Postgres, role: str, password: str) -> bool:
    """Whether `role` can log in with `password` (used by tests and by operators' checks)."""
    try:
        with psycopg.connect(**pg.conninfo(user=role, password=password)):
            return True
    except psycopg.OperationalError:
        return False

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

from ksecrets.jobs.rotate import Postgres, RotationFailed

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
        raise RotationFailed(
            _describe(exc, f"PostgreSQL {pg.host}:{pg.port}/{pg.database} as {pg.admin_user}: cannot connect", pg)
        ) from None


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


def lock_rotation(conn: psycopg.Connection, role: str) -> None:
    """A session-level advisory lock for rotations of `role`, held until the connection closes
    (also when the process is killed: the server drops the session and its locks). A second
    rotator of the same role stops at once instead of changing a password the first one is
    about to publish."""
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", ("ksecrets-rotate:" + role,)).fetchone()
        conn.commit()
    except psycopg.Error as exc:
        rollback(conn)
        raise RotationFailed(_describe(exc, f"cannot take the rotation lock of role {role}")) from None
    if not row or row[0] is not True:
        raise RotationFailed(f"another rotation of role {role} is running (advisory lock held); nothing changed")


def unlock_rotation(conn: psycopg.Connection, role: str) -> None:
    """Release `lock_rotation`'s lock now, before the connection closes: the server ends a closed
    session's backend (and drops its locks) asynchronously, so a rotation that starts right after
    this one could still find the lock held. Best effort: a broken connection's session ends with
    its locks anyway."""
    try:
        rollback(conn)
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", ("ksecrets-rotate:" + role,))
        conn.commit()
    except psycopg.Error:
        pass


def set_login_password(conn: psycopg.Connection, group: str, login: str, password: str) -> None:
    """Dual mode: give `login` (a member of `group`) a new password and COMMIT.

    Creates the login `IN ROLE group` when it does not exist; makes sure it is a member that
    inherits the group and that its sessions `SET role` to the group (so what it creates belongs
    to the group, and the other login can use it). One transaction: all of it or nothing."""
    try:
        verifier = password_verifier(conn, login, password)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is not None
        if exists:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN INHERIT PASSWORD {}").format(
                    sql.Identifier(login), sql.Literal(verifier)
                )
            )
            member = (
                conn.execute(
                    "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                    "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
                    (group, login),
                ).fetchone()
                is not None
            )
            if not member:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(login)))
        else:
            conn.execute(
                sql.SQL("CREATE ROLE {} WITH LOGIN INHERIT PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(verifier), sql.Identifier(group)
                )
            )
        conn.execute(sql.SQL("ALTER ROLE {} SET role TO {}").format(sql.Identifier(login), sql.Literal(group)))
        conn.commit()
    except psycopg.Error as exc:
        rollback(conn)
        raise RotationFailed(
            _describe(exc, f"setting the password of login {login} (IN ROLE {group}) failed, nothing changed")
        ) from None

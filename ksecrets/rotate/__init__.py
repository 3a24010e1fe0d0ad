"""The in-cluster rotator (`python -m ksecrets.rotate`): a new value in Vault, and for a database
password the same new value in PostgreSQL, never one without the other.

Generators
----------
- `random`: a new URL-safe value of exactly `length` characters from `secrets`, written as a new
  kv-v2 version with check-and-set (`ksecrets.vault.kv.rotate_key`). Consumers pick it up
  through the Vault Secrets Operator (`refreshAfter`) and its `rolloutRestartTargets`.
- `postgres`: the value is the password of a PostgreSQL role. The database and Vault must agree
  at every moment a consumer can look, and a failure half-way must leave the *old* pair working.

Order for `postgres`, and why
-----------------------------
1. Read the current kv-v2 version (the old password, for the recovery in step 5). If Vault
   cannot be read, stop: nothing has changed.
2. Open one transaction as the admin and run `ALTER ROLE <role> WITH PASSWORD '<new>'`, without
   committing. PostgreSQL's catalog changes are transactional: until COMMIT every new login still
   checks the old password, and a ROLLBACK (or a dropped connection) undoes the change with no
   need to know or resend the old password.
3. Write the new value to Vault (check-and-set on the version just read).
   - The write fails: ROLLBACK. The database never saw the new password; Vault kept the old
     version (check-and-set refuses a half-made write). Old pair intact; exit 1.
   - The write *seems* to fail but may have landed (a timeout after the request was sent):
     read Vault back. If it holds the new value, carry on to COMMIT; if it holds the old one,
     ROLLBACK as above; if Vault cannot be read at all, ROLLBACK and exit 3 ("state unknown"),
     naming the path, so a human compares the latest version with the database (`vault kv
     rollback` restores the previous version).
4. COMMIT. From here the new password logs in and the old one does not.
5. The COMMIT reports an error. Usually the transaction is gone (the connection dropped, the
   server restarted), but a commit can also land and lose only its reply. So ask the database
   which password logs in, with a fresh connection as the role:
   - the new one: the commit landed; Vault already holds it; done (exit 0);
   - the old one: write the old value back to Vault as a newer version (check-and-set again),
     so Vault's latest version is the password that works; exit 1 (exit 3 if that write fails);
   - neither (the database is unreachable): exit 3 naming the path and the role.

Why database-first inside an open transaction rather than "ALTER, then write Vault, then ALTER
back on failure": setting the old password back needs a second round trip that can fail too, and
between the two ALTERs the database has a password no stored value knows. Why not Vault first:
then Vault (and, within `refreshAfter`, the pods) would hold a password the database rejects
until the ALTER lands. The one remaining window is between the Vault write and COMMIT, a few
milliseconds, during which the operator may read the new value; a consumer that restarts in that
window retries its connection a moment later and succeeds.

Existing sessions keep working after a password change (PostgreSQL checks passwords only at
login), so consumers restarted by the operator move to the new password without dropping work.

Every step logs what it did (role, path, versions), never a value. Exit codes: 0 rotated; 1
failed with the old pair intact; 2 bad input; 3 failed and the state needs a human.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any, Callable

import hvac

from ksecrets.errors import KsecretsError
from ksecrets.vault import kv
from ksecrets.vault.client import WriteOutcomeUnknown

log = logging.getLogger("ksecrets.rotate")

# RFC 4648 URL-safe alphabet: safe in URLs, env files, connection strings and shell words.
URL_SAFE = string.ascii_letters + string.digits + "-_"
MIN_LENGTH = 16
MAX_LENGTH = 256

EXIT_OK = 0
EXIT_FAILED = 1  # nothing changed, or changed back: the old pair works
EXIT_UNKNOWN = 3  # the database and Vault may disagree: a human must look


class RotationFailed(KsecretsError):
    """Rotation did not happen; the old value is still the working one."""

    exit_code = EXIT_FAILED


class RotationStateUnknown(KsecretsError):
    """Rotation failed in a way that may leave Vault and the database out of step."""

    exit_code = EXIT_UNKNOWN


@dataclass(frozen=True)
class Target:
    """Where the value lives in Vault."""

    mount: str
    path: str
    key: str

    @property
    def where(self) -> str:
        return f"{kv.data_path(self.mount, self.path)} key {self.key}"


@dataclass(frozen=True)
class Postgres:
    """The database whose role password is the value."""

    host: str
    port: int
    database: str
    role: str
    admin_user: str
    admin_password: str

    def __repr__(self) -> str:  # never the admin password, even in a traceback
        return (f"Postgres(host={self.host!r}, port={self.port}, database={self.database!r}, "
                f"role={self.role!r}, admin_user={self.admin_user!r})")

    def conninfo(self, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "dbname": self.database,
                "user": user or self.admin_user,
                "password": self.admin_password if password is None else password,
                "connect_timeout": 10, "application_name": "ksecrets-rotate"}


def generate(length: int) -> str:
    """A new value of exactly `length` URL-safe characters (6 bits of entropy each)."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise KsecretsError(f"--length: {length} is out of range ({MIN_LENGTH} to {MAX_LENGTH})")
    return "".join(secrets.choice(URL_SAFE) for _ in range(length))


def rotate_random(client: hvac.Client, target: Target, length: int,
                  generator: Callable[[int], str] = generate) -> int:
    """Write a new random value as a new kv-v2 version (check-and-set). Returns the version."""
    value = generator(length)
    try:
        version = kv.rotate_key(client, target.mount, target.path, target.key, value)
    except WriteOutcomeUnknown as exc:
        # The answer was lost: the new value may be current. Never claim the old one is.
        raise RotationStateUnknown(f"rotation of {target.where}: {exc}") from None
    except KsecretsError as exc:
        # check-and-set: a failed write leaves the previous version current.
        raise RotationFailed(f"rotation of {target.where} failed, the old value stays current: {exc}") from None
    log.info("rotated %s: new kv-v2 version %d", target.where, version)
    return version


def _vault_holds(client: hvac.Client, target: Target, value: str) -> tuple[bool | None, int]:
    """Does Vault's current version hold `value` for the key, and which version is current?
    (None, 0) when Vault cannot be read."""
    try:
        data, version = kv.read_current(client, target.mount, target.path)
    except KsecretsError:
        return None, 0
    current = data.get(target.key)
    return current is not None and hmac.compare_digest(current.encode(), value.encode()), version


def rotate_postgres(client: hvac.Client, target: Target, pg: Postgres, length: int,
                    generator: Callable[[int], str] = generate) -> int:
    """Change the role's password in PostgreSQL and in Vault together (see the module docstring).

    Returns the new kv-v2 version. Raises RotationFailed (old pair intact) or
    RotationStateUnknown (a human must compare).
    """
    from ksecrets.rotate import postgres as pgops

    try:
        data, version = kv.read_current(client, target.mount, target.path)
    except KsecretsError as exc:
        raise RotationFailed(f"rotation of {target.where} not started: {exc}") from None
    old_value = data.get(target.key)
    log.info("read %s at version %d", target.where, version)

    new_value = generator(length)
    conn = pgops.connect_admin(pg)
    try:
        pgops.alter_password(conn, pg.role, new_value)
        log.info("ALTER ROLE %s in %s:%d/%s (not committed yet)", pg.role, pg.host, pg.port, pg.database)
        try:
            new_version = kv.rotate_key(client, target.mount, target.path, target.key, new_value)
        except KsecretsError as write_error:
            landed, new_version = _vault_holds(client, target, new_value)
            if landed is None:
                pgops.rollback(conn)
                raise RotationStateUnknown(
                    f"writing {target.where} failed ({write_error}) and Vault cannot be read back; the database "
                    f"kept the old password of role {pg.role}: if Vault's latest version holds a new value, "
                    f"restore the previous one (vault kv rollback)") from None
            if not landed:
                pgops.rollback(conn)
                log.info("rolled back ALTER ROLE %s: the Vault write did not happen", pg.role)
                raise RotationFailed(
                    f"writing {target.where} failed, the database change was rolled back and the old password "
                    f"of role {pg.role} still works: {write_error}") from None
            log.info("the Vault write reported an error but %s holds the new value; committing", target.where)
        log.info("wrote %s: new kv-v2 version %d", target.where, new_version)
        try:
            pgops.commit(conn)
        except pgops.Error as commit_error:
            why = f"COMMIT failed ({type(commit_error).__name__})"
            # The reply was lost, not necessarily the commit: the database decides (step 5).
            if pgops.can_login(pg, pg.role, new_value):
                log.info("%s, but role %s logs in with the new password: the commit landed", why, pg.role)
                return new_version
            if old_value is not None and not pgops.can_login(pg, pg.role, old_value):
                raise RotationStateUnknown(
                    f"{why}, and role {pg.role} logs in with neither password (is the database reachable?); "
                    f"{target.where} holds the new value as version {new_version}: compare by hand") from None
            _restore(client, target, old_value, pg, why)
            raise AssertionError("unreachable") from None  # _restore always raises
        log.info("committed the new password of role %s", pg.role)
        return new_version
    finally:
        pgops.close(conn)


def _restore(client: hvac.Client, target: Target, old_value: str | None, pg: Postgres, why: str) -> None:
    """The database kept the old password but Vault has the new one: put the old value back."""
    if old_value is None:
        raise RotationStateUnknown(
            f"{why}: the database kept the old password of role {pg.role}, but {target.where} had no previous "
            f"value to restore; set it to the database's password by hand") from None
    try:
        version = kv.rotate_key(client, target.mount, target.path, target.key, old_value)
    except KsecretsError as exc:
        raise RotationStateUnknown(
            f"{why}: the database kept the old password of role {pg.role}, and restoring the old value in "
            f"{target.where} failed too ({exc}); restore the previous version by hand (vault kv rollback)") from None
    log.info("restored the old value of %s as kv-v2 version %d", target.where, version)
    raise RotationFailed(
        f"{why}: the database kept the old password of role {pg.role}; the old value is back in "
        f"{target.where} as version {version}")

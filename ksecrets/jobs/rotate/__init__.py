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

Dual credentials for `postgres` (`mode: dual`)
----------------------------------------------
Single mode above changes the password of the one role every consumer uses, so a consumer that
opens a new connection with the old password between COMMIT and its restart is refused. Dual mode
removes that window. The app's role (`<role>`) is a group role (NOLOGIN is fine) that holds the
privileges; two login roles `<role>_a` and `<role>_b` inherit it (and `SET role` to it, so objects
they create belong to the group). Vault holds the username and the password together. A rotation:

1. takes a session advisory lock for the group role on the admin connection (a second rotator of
   the same role waits for nothing: it stops, exit 1), then reads the current kv-v2 version: the
   login in use is the one its username key names;
2. gives the *other* login a new password (creating it `IN ROLE <role>` if missing) and COMMITs.
   Nobody uses that login's password at this point (it was replaced one rotation ago, and
   `minInterval` gave every consumer time to move off it);
3. writes username and password together in one new kv-v2 version (check-and-set on the version
   read in step 1).

The login in use is never touched, so at every instant both the version Vault serves and the
previous one log in: a crash (or kill) at any point leaves a working pair, and a consumer that has
not re-read the Secret yet keeps logging in until the *next* rotation. A failed or uncertain
Vault write needs no undo: the new password belongs to a login nobody was told about.

One rotation, one version
-------------------------
`rotate_app` rotates every key of one app that shares a schedule (random keys and at most one
postgres key) in ONE kv-v2 version, so the operator updates the Secret once and restarts the app
once. Before the write it records, in the secret's kv-v2 `custom_metadata`, the version it is
about to write (`ksecrets-rotation-version`). With `minInterval`, a run stops (exit 0, "skipped")
while that version exists and Vault's `created_time` for it is younger than the interval: a
rotation that never landed does not count (its version does not exist, or is someone else's
write, which counts conservatively), and a retried Job cannot rotate twice in a row.

Existing sessions keep working after a password change (PostgreSQL checks passwords only at
login), so consumers restarted by the operator move to the new password without dropping work.

Every step logs what it did (role, path, versions), never a value. Exit codes: 0 rotated; 1
failed with the old pair intact; 2 bad input; 3 failed and the state needs a human.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import logging
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ksecrets.errors import KsecretsError
from ksecrets.vault import kv
from ksecrets.vault.client import VaultClient, WriteOutcomeUnknown

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
        return (
            f"Postgres(host={self.host!r}, port={self.port}, database={self.database!r}, "
            f"role={self.role!r}, admin_user={self.admin_user!r})"
        )

    def conninfo(self, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": user or self.admin_user,
            "password": self.admin_password if password is None else password,
            "connect_timeout": 10,
            "application_name": "ksecrets-rotate",
        }


def generate(length: int) -> str:
    """A new value of exactly `length` URL-safe characters (6 bits of entropy each)."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise KsecretsError(f"--length: {length} is out of range ({MIN_LENGTH} to {MAX_LENGTH})")
    return "".join(secrets.choice(URL_SAFE) for _ in range(length))


def rotate_random(client: VaultClient, target: Target, length: int, generator: Callable[[int], str] = generate) -> int:
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


def _step(name: str) -> None:
    """A point between two steps of a rotation. Does nothing; the crash tests replace it in a child
    process with one that kills the process (SIGKILL) at a chosen step."""


MARK_KEY = "ksecrets-rotation-version"  # kv-v2 custom_metadata: the version a rotation wrote


def _vault_holds(client: VaultClient, mount: str, path: str, updates: Mapping[str, str]) -> tuple[bool | None, int]:
    """Does Vault's current version hold every value of `updates`, and which version is current?
    (None, 0) when Vault cannot be read."""
    try:
        data, version = kv.read_current(client, mount, path)
    except KsecretsError:
        return None, 0
    held = all(
        data.get(k) is not None and hmac.compare_digest(data[k].encode(), v.encode()) for k, v in updates.items()
    )
    return held, version


def rotate_postgres(
    client: VaultClient,
    target: Target,
    pg: Postgres,
    length: int,
    generator: Callable[[int], str] = generate,
    *,
    extra: Mapping[str, str] | None = None,
    mark: Callable[[int], None] | None = None,
) -> int:
    """Change the role's password in PostgreSQL and in Vault together (see the module docstring).

    `extra` are other keys' new values written in the same kv-v2 version; `mark(version_read)` runs
    just before the Vault write (the min-interval record). Returns the new kv-v2 version. Raises
    RotationFailed (old pair intact) or RotationStateUnknown (a human must compare).
    """
    from ksecrets.jobs.rotate import postgres as pgops

    try:
        data, version = kv.read_current(client, target.mount, target.path)
    except KsecretsError as exc:
        raise RotationFailed(f"rotation of {target.where} not started: {exc}") from None
    old_value = data.get(target.key)
    log.info("read %s at version %d", target.where, version)
    _step("read")

    new_value = generator(length)
    updates = {target.key: new_value, **(extra or {})}
    conn = pgops.connect_admin(pg)
    try:
        pgops.alter_password(conn, pg.role, new_value)
        log.info("ALTER ROLE %s in %s:%d/%s (not committed yet)", pg.role, pg.host, pg.port, pg.database)
        _step("altered")
        if mark is not None:
            try:
                mark(version)
            except KsecretsError:
                pgops.rollback(conn)
                raise
        try:
            new_version = kv.rotate_keys(client, target.mount, target.path, updates, cas=version)
        except KsecretsError as write_error:
            landed, new_version = _vault_holds(client, target.mount, target.path, updates)
            if landed is None:
                pgops.rollback(conn)
                raise RotationStateUnknown(
                    f"writing {target.where} failed ({write_error}) and Vault cannot be read back; the database "
                    f"kept the old password of role {pg.role}: if Vault's latest version holds a new value, "
                    f"restore the previous one (vault kv rollback)"
                ) from None
            if not landed:
                pgops.rollback(conn)
                log.info("rolled back ALTER ROLE %s: the Vault write did not happen", pg.role)
                raise RotationFailed(
                    f"writing {target.where} failed, the database change was rolled back and the old password "
                    f"of role {pg.role} still works: {write_error}"
                ) from None
            log.info("the Vault write reported an error but %s holds the new value; committing", target.where)
        log.info("wrote %s: new kv-v2 version %d", target.where, new_version)
        _step("written")
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
                    f"{target.where} holds the new value as version {new_version}: compare by hand"
                ) from None
            _restore(client, target, old_value, {k: data[k] for k in extra or {} if k in data}, pg, why)
            raise AssertionError("unreachable") from None  # _restore always raises
        log.info("committed the new password of role %s", pg.role)
        return new_version
    finally:
        pgops.close(conn)


def _restore(
    client: VaultClient, target: Target, old_value: str | None, old_extra: Mapping[str, str], pg: Postgres, why: str
) -> None:
    """The database kept the old password but Vault has the new one: put the old values back."""
    if old_value is None:
        raise RotationStateUnknown(
            f"{why}: the database kept the old password of role {pg.role}, but {target.where} had no previous "
            f"value to restore; set it to the database's password by hand"
        ) from None
    try:
        version = kv.rotate_keys(client, target.mount, target.path, {target.key: old_value, **old_extra})
    except KsecretsError as exc:
        raise RotationStateUnknown(
            f"{why}: the database kept the old password of role {pg.role}, and restoring the old value in "
            f"{target.where} failed too ({exc}); restore the previous version by hand (vault kv rollback)"
        ) from None
    log.info("restored the old value of %s as kv-v2 version %d", target.where, version)
    raise RotationFailed(
        f"{why}: the database kept the old password of role {pg.role}; the old value is back in "
        f"{target.where} as version {version}"
    )


def dual_logins(role: str) -> tuple[str, str]:
    """The two login roles of a group role in dual mode."""
    return f"{role}_a", f"{role}_b"


def rotate_postgres_dual(
    client: VaultClient,
    target: Target,
    pg: Postgres,
    username_key: str,
    length: int,
    generator: Callable[[int], str] = generate,
    *,
    extra: Mapping[str, str] | None = None,
    mark: Callable[[int], None] | None = None,
) -> int:
    """Dual credentials (module docstring): a new password for the login not in use, committed,
    then username and password together in one kv-v2 version. Returns the new version.

    Raises RotationFailed; never RotationStateUnknown: whatever happens to the Vault write, the
    version Vault serves names a login whose password works."""
    from ksecrets.jobs.rotate import postgres as pgops

    conn = pgops.connect_admin(pg)
    try:
        pgops.lock_rotation(conn, pg.role)
        try:
            data, version = kv.read_current(client, target.mount, target.path)
        except KsecretsError as exc:
            raise RotationFailed(f"rotation of {target.where} not started: {exc}") from None
        first, second = dual_logins(pg.role)
        in_use = data.get(username_key)
        login = second if in_use == first else first
        log.info(
            "read %s at version %d: login in use %s, rotating %s",
            target.where,
            version,
            in_use if in_use in (first, second) else "(none of the pair)",
            login,
        )
        _step("read")
        new_value = generator(length)
        pgops.set_login_password(conn, pg.role, login, new_value)
        log.info(
            "committed a new password for login %s (IN ROLE %s) in %s:%d/%s; %s untouched",
            login,
            pg.role,
            pg.host,
            pg.port,
            pg.database,
            in_use or "no login",
        )
        _step("committed")
        updates = {username_key: login, target.key: new_value, **(extra or {})}
        if mark is not None:
            mark(version)
        try:
            new_version = kv.rotate_keys(client, target.mount, target.path, updates, cas=version)
        except KsecretsError as write_error:
            landed, new_version = _vault_holds(client, target.mount, target.path, updates)
            if not landed:
                raise RotationFailed(
                    f"writing {target.where} failed; Vault still names login {in_use}, whose password is "
                    f"unchanged and works (the new password of {login} is known to nobody): {write_error}"
                ) from None
            log.info("the Vault write reported an error but %s holds the new pair", target.where)
        log.info("wrote %s: new kv-v2 version %d (username %s)", target.where, new_version, login)
        _step("written")
        return new_version
    finally:
        pgops.unlock_rotation(conn, pg.role)  # not left to the close: the server ends a session asynchronously
        pgops.close(conn)


def rotate_random_keys(
    client: VaultClient,
    mount: str,
    path: str,
    lengths: Mapping[str, int],
    generator: Callable[[int], str] = generate,
    *,
    mark: Callable[[int], None] | None = None,
) -> int:
    """New random values for several keys in ONE kv-v2 version (check-and-set). Returns it."""
    where = f"{kv.data_path(mount, path)} key{'s' if len(lengths) > 1 else ''} {', '.join(lengths)}"
    try:
        _data, version = kv.read_current(client, mount, path)
        _step("read")
        if mark is not None:
            mark(version)
        new_version = kv.rotate_keys(client, mount, path, {k: generator(n) for k, n in lengths.items()}, cas=version)
    except KsecretsError as exc:
        old = "the old values stay current" if len(lengths) > 1 else "the old value stays current"
        raise RotationFailed(f"rotation of {where} failed, {old}: {exc}") from None
    log.info("rotated %s: new kv-v2 version %d", where, new_version)
    _step("written")
    return new_version


# --- one app, one schedule: one version -----------------------------------------------------------


@dataclass(frozen=True)
class PostgresItem:
    key: str
    pg: Postgres
    length: int = 32
    mode: str = "single"  # or "dual"
    username_key: str | None = None  # dual: the key that holds the login's name


@dataclass(frozen=True)
class Plan:
    """What one CronJob run rotates: keys of one app's kv-v2 secret that share a schedule."""

    mount: str
    path: str
    random: tuple[tuple[str, int], ...] = ()  # (key, length)
    postgres: PostgresItem | None = None
    min_interval: float = 0  # seconds; 0: no minimum

    @property
    def where(self) -> str:
        keys = [k for k, _ in self.random] + ([self.postgres.key] if self.postgres else [])
        return f"{kv.data_path(self.mount, self.path)} key{'s' if len(keys) > 1 else ''} {', '.join(keys)}"


@dataclass(frozen=True)
class Outcome:
    version: int | None  # the new kv-v2 version; None when skipped
    skipped: str = ""


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_vault_time(text: str) -> float | None:
    """Seconds since the epoch of Vault's RFC 3339 times (nanoseconds allowed); None if unreadable."""
    m = _RFC3339.match(text or "")
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return _dt.datetime.fromisoformat(m.group(1) + frac + zone).timestamp()
    except ValueError:
        return None


def last_rotation(client: VaultClient, mount: str, path: str) -> tuple[int, float | None, dict[str, str]]:
    """(version a rotation last wrote, Vault's creation time of it or None, custom_metadata)."""
    meta = kv.read_metadata(client, mount, path)
    marked = meta.custom.get(MARK_KEY, "")
    if marked and not kv.is_whole(marked):
        # The minimum interval cannot be judged: refuse rather than rotate (or crash) on it.
        raise KsecretsError(
            f"{kv.metadata_path(mount, path)}: custom_metadata.{MARK_KEY} is not a whole number; "
            f"fix or delete it (`vault kv metadata patch -mount={mount} -custom-metadata={MARK_KEY}=N {path}`)"
        )
    version = int(marked) if marked else 0
    created = parse_vault_time(meta.created.get(version, "")) if version else None
    return version, created, meta.custom


def rotate_app(
    client: VaultClient, plan: Plan, *, now: Callable[[], float] = time.time, generator: Callable[[int], str] = generate
) -> Outcome:
    """Rotate every key of `plan` in one kv-v2 version, unless the last rotation is younger than
    `plan.min_interval`. Raises RotationFailed / RotationStateUnknown as the generators do."""
    if not plan.random and plan.postgres is None:
        raise KsecretsError("nothing to rotate: give --random KEY or --postgres KEY")
    try:
        marked, created, custom = last_rotation(client, plan.mount, plan.path)
    except KsecretsError as exc:
        raise RotationFailed(f"rotation of {plan.where} not started: {exc}") from None
    if plan.min_interval and created is not None:
        age = now() - created
        if age < plan.min_interval:
            reason = (
                f"{kv.data_path(plan.mount, plan.path)}: the last rotation (version {marked}) is "
                f"{max(int(age), 0)}s old, less than the minimum interval of {plan.min_interval}s"
            )
            log.info("skipped: %s", reason)
            return Outcome(None, reason)

    def mark(version_read: int) -> None:
        # Recorded BEFORE the data write: a write that lands is always marked; one that does not
        # land marks a version that does not exist (or someone else's, counted conservatively).
        try:
            kv.write_custom_metadata(client, plan.mount, plan.path, {**custom, MARK_KEY: str(version_read + 1)})
        except KsecretsError as exc:
            raise RotationFailed(
                f"rotation of {plan.where} did not happen (recording it in custom_metadata "
                f"failed; the pair Vault serves is unchanged): {exc}"
            ) from None
        _step("marked")

    randoms = dict(plan.random)
    item = plan.postgres
    if item is None:
        return Outcome(rotate_random_keys(client, plan.mount, plan.path, randoms, generator, mark=mark))
    extra = {k: generator(n) for k, n in randoms.items()}
    target = Target(plan.mount, plan.path, item.key)
    if item.mode == "dual":
        if not item.username_key:
            raise KsecretsError(f"{target.where}: dual mode needs the username key (--pg-username-key)")
        return Outcome(
            rotate_postgres_dual(
                client, target, item.pg, item.username_key, item.length, generator, extra=extra, mark=mark
            )
        )
    return Outcome(rotate_postgres(client, target, item.pg, item.length, generator, extra=extra, mark=mark))

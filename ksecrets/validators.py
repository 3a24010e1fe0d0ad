"""Small validators for config values: Kubernetes names, Vault names and paths, images, durations,
cron schedules. Standard library only, and below every package (the config model, the Vault port
and the rotator, whose image has no pydantic, all use them).

Each returns an error phrase (to be prefixed with file and key path) or None. They quote the
offending value because config values here are names and schedules, never secrets.
"""

from __future__ import annotations

import re

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes' IsConfigMapKey: the keys of a Secret's data.
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Kubernetes' IsEnvVarName.
_ENV_VAR = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# An exact SemVer 2.0 version: 1.2.3, 1.2.3-rc.1, 1.2.3+build. No range, wildcard, `v` prefix or
# `latest`. The one "pinned version" rule: the config loader and the policy pack (policy/rules.py,
# helm-chart-version-pinned) both use it.
EXACT_VERSION = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
# registry/path:tag or @sha256:digest; the tag is what we insist on.
_IMAGE = re.compile(
    # A registry port only before a path ("host:5000/img"): in "redis:7" the 7 is the tag.
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+(?=/))?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*)"
    r"(:(?P<tag>[\w][\w.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def dns_label(value: str) -> str | None:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        return f'"{value}" is not a valid Kubernetes name (lower-case DNS-1123 label, at most 63 characters)'
    return None


# An age X25519 recipient: `age1` and 58 bech32 characters (age's format; pyrage checks the checksum
# when it encrypts). The one shape check of `k8s-secrets:sops.recipients`.
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


def age_recipient(value: str) -> str | None:
    if not _AGE_RECIPIENT.match(value):
        return f'"{value[:80]}" is not an age X25519 recipient (age1 and 58 lower-case bech32 characters)'
    return None


def dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return f'"{value}" is not a valid Kubernetes name'
    return None


_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def qualified_name(value: str) -> str | None:
    """A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63."""
    prefix, _, name = value.rpartition("/")
    if (prefix and dns_subdomain(prefix)) or len(name) > 63 or not _NAME_PART.match(name):
        return f'"{value}" is not a valid label or annotation key'
    return None


def secret_key(value: str) -> str | None:
    if len(value) > 253 or not _SECRET_KEY.match(value):
        return f"\"{value}\" is not a valid Secret key (letters, digits, '-', '_' and '.')"
    return None


def env_var_name(value: str) -> str | None:
    if not _ENV_VAR.match(value):
        return f'"{value}" is not a valid environment variable name'
    return None


def duration(value: str) -> str | None:
    if not _DURATION.match(value):
        return f'"{value}" is not a duration like 30s, 10m or 1h30m'
    return None


def quantity(value: str) -> str | None:
    if not _QUANTITY.match(value):
        return f'"{value}" is not a storage quantity like 10Gi'
    return None


# Vault's own rule for a name in an endpoint path (the SDK's framework.GenericNameRegex, which the
# kubernetes auth roles, database roles and connections use): word characters, '-' and '.', first and
# last a word character. Names have no '/', so a role can never leave `auth/<mount>/role/`. Paths
# (kv secret paths, mounts) are '/'-separated segments that each follow the same rule: no empty, '.'
# or '..' segment, no leading or trailing '/'.
_VAULT_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_VAULT_NAME_HELP = "letters, digits, '_', '-', '.'; first and last a letter, digit or '_'"
# Paths Vault reserves for itself: a secrets engine mounted "there" would address Vault's own API.
_RESERVED_MOUNTS = {"sys", "auth", "audit", "cubbyhole", "identity"}


def vault_name(value: str) -> str | None:
    if len(value) > 128 or not _VAULT_NAME.match(value):
        return f'"{value}" is not a Vault name ({_VAULT_NAME_HELP}; at most 128 characters)'
    return None


def _vault_segments_ok(value: str) -> bool:
    return bool(value) and len(value) <= 512 and all(_VAULT_NAME.match(s) for s in value.split("/"))


def vault_path(value: str) -> str | None:
    """A kv secret path below its mount (`team/my-app`)."""
    if not _vault_segments_ok(value):
        return (
            f"\"{value}\" is not a Vault secret path (relative, no leading or trailing '/'; "
            f"each '/'-separated part: {_VAULT_NAME_HELP})"
        )
    return None


def vault_mount(value: str) -> str | None:
    """A secrets engine's or auth method's mount path (`secret`, `kv/team`)."""
    if not _vault_segments_ok(value):
        return (
            f"\"{value}\" is not a Vault mount path (no leading or trailing '/'; "
            f"each '/'-separated part: {_VAULT_NAME_HELP})"
        )
    if value.split("/")[0] in _RESERVED_MOUNTS:
        return f'"{value}" is not a Vault mount path: {value.split("/")[0]}/ is Vault\'s own'
    return None


def is_exact_version(value: object) -> bool:
    return isinstance(value, str) and EXACT_VERSION.fullmatch(value) is not None


def chart_version(value: str) -> str | None:
    if not is_exact_version(value):
        return f"\"{value}\" is not a pinned chart version (x.y.z); ranges and 'latest' are not reproducible"
    return None


def image(value: str) -> str | None:
    match = _IMAGE.match(value)
    if not match:
        return f'"{value}" is not a valid image reference'
    if not match.group("tag") and not match.group("digest"):
        return f'"{value}" has no tag; pin a version (e.g. :1.2.3) or a digest'
    if match.group("tag") == "latest" and not match.group("digest"):
        return f'"{value}" uses :latest; pin a version or a digest'
    return None


# --- cron --------------------------------------------------------------------------------------
# The schedule syntax of Kubernetes CronJobs (robfig/cron standard parser): five fields, names
# for months and weekdays, ranges, lists, steps, `*`/`?`, and the @-macros.
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
        },
    ),
    ("day of week", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)


def _cron_number(text: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not (text.isascii() and text.isdigit()):  # "²" is a digit to isdigit, not to int
        raise ValueError(text)
    number = int(text)
    if not low <= number <= high:
        raise ValueError(text)
    return number


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> bool:
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not (step.isascii() and step.isdigit()) or int(step) == 0):
            return False
        try:
            if base in ("*", "?"):
                continue
            start, dash, end = base.partition("-")
            first = _cron_number(start, low, high, names)
            if dash and _cron_number(end, low, high, names) < first:
                return False
        except ValueError:
            return False
    return True


def cron(value: str) -> str | None:
    text = value.strip()
    if text in _MACROS:
        return None
    if text.startswith("TZ=") or text.startswith("CRON_TZ="):
        return f'"{value}": set the time zone with spec.timeZone, not in the schedule'
    fields = text.split()
    if len(fields) != 5:
        return f'"{value}" is not a cron schedule (five fields: minute hour day-of-month month day-of-week)'
    for field, (label, low, high, names) in zip(fields, _FIELDS):
        if not _cron_field(field, low, high, names):
            return f'"{value}" is not a cron schedule ({label} field "{field}" is out of range or malformed)'
    return None

"""The stack file's spelling of the model (`ksecrets.config.model`), and the one formatter of its errors.

A field type here is `Annotated[<python type>, <check>]`. The check runs only when raw stack config
is validated (`validate_raw`: the `k8s-secrets:` keys of a stack file or of Pulumi config): it reads
what YAML gives (a string, a number, a list, a mapping) with this project's one-line messages, and
hands pydantic the Python value. Constructing the model in code (`VaultConfig()`,
`dataclasses.replace`, the Pulumi layer's inputs) skips it: pydantic checks the Python types alone.

`config_error` turns the first error of a `ValidationError` into `ConfigError(<file>, <key path>,
<problem>)`: `Pulumi.staging.yaml: apps[1].secretName: "App_Secrets" is not a valid Kubernetes name`.
Problems quote names and schedules (config values here are never secrets), never a `manualValues`
value; `hide_input_in_errors` keeps the input out of a `ValidationError`'s own text as well.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Callable, ClassVar, Mapping, Sequence, TypeVar

from pydantic import ConfigDict, ValidationError, ValidationInfo, WrapValidator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from ksecrets import validators as v
from ksecrets.errors import ConfigError

# Stack files spell keys in camelCase (the aliases); code uses the field names. Unknown keys fail.
CONFIG = ConfigDict(
    extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, hide_input_in_errors=True
)
_ERROR = "ksecrets"  # the pydantic error type of every problem raised here
_AT = "at"  # ctx: the key path below the error's loc (a mapping's key, a key a rule names)
_PROBLEM = "problem"  # ctx: the one-line problem (pydantic formats `msg` from its template; we do not)


def raw_context(**extra: Any) -> dict[str, Any]:
    """The validation context of raw stack config: checks on, plus what the model takes from outside."""
    return {"raw": True, **extra}


def is_raw(info: ValidationInfo) -> bool:
    return isinstance(info.context, Mapping) and info.context.get("raw") is True


def fail(problem: str, at: Sequence[str | int] = ()) -> PydanticCustomError:
    """An error for the current value (or the key path `at` below it) with this exact problem."""
    return PydanticCustomError(_ERROR, "{problem}", {_AT: list(at), _PROBLEM: problem})


def kind(value: Any) -> str:
    """What a value is, for "must be a string, not a number": never the value itself."""
    if value is None:
        return "empty"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


# --- the error formatter -------------------------------------------------------------------------


def key_path(loc: Sequence[str | int]) -> str:
    """`("apps", 1, "secretName")` → `apps[1].secretName`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def config_error(exc: ValidationError, source: str) -> ConfigError:
    """The first error, as the project's one line: file, key path, problem (never the input)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    ctx = err.get("ctx") or {}
    loc = [*err["loc"], *ctx.get(_AT, ())]
    kind_of = err["type"]
    if kind_of == _ERROR:
        problem = ctx[_PROBLEM]
    elif kind_of == "missing":
        problem = "is required"
    elif kind_of in ("unexpected_keyword_argument", "extra_forbidden"):
        problem = "unknown key"
    else:  # a type the checks here do not spell (none known): pydantic's words, which never quote the input
        problem = err["msg"]
    return ConfigError(source, key_path(loc), problem)


# --- the base of every model class: mappings, unknown keys, empty values ---------------------------


def did_you_mean(key: str, allowed: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return f' (did you mean "{match[0]}"?)' if match else ""


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    return "unknown key" + did_you_mean(key, allowed)


_FILE_KEYS: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Section:
    """Base of the model's classes. Raw config: a mapping with string keys, each one of the class's
    (camelCase) keys; a key whose value is empty (`key:` or null) counts as absent."""

    _not_in_file: ClassVar[tuple[str, ...]] = ()  # fields the model sets itself (the stack's name...)

    @classmethod
    def file_keys(cls) -> tuple[str, ...]:
        keys = _FILE_KEYS.get(cls)
        if keys is None:
            fields = cls.__pydantic_fields__  # type: ignore[attr-defined]  # set by pydantic's decorator
            keys = _FILE_KEYS[cls] = tuple(
                f.alias or name for name, f in fields.items() if name not in cls._not_in_file
            )
        return keys

    @model_validator(mode="before")
    @classmethod
    def _read_mapping(cls, data: Any, info: ValidationInfo) -> Any:
        if not is_raw(info):
            return data
        if not isinstance(data, Mapping):
            raise fail(f"must be a mapping, not {kind(data)}")
        allowed = cls.file_keys()
        out = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise fail(f'key "{key}" must be a string')
            if key not in allowed:
                raise fail(unknown_key(key, allowed), [key])
            if value is not None:
                out[key] = value
        return cls._raw_defaults(out, info.context or {})

    @classmethod
    def _raw_defaults(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """Raw config only: what a class takes from its surroundings (none, but the stack's)."""
        return data


# --- field types -------------------------------------------------------------------------------------

Check = Callable[[str], str | None]


def _raw_only(read: Callable[[Any], Any]) -> WrapValidator:
    def wrap(value: Any, handler: Callable[[Any], Any], info: ValidationInfo) -> Any:
        return handler(read(value) if is_raw(info) else value)

    return WrapValidator(wrap)


def _text(value: Any, check: Check | None = None) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a string, not {kind(value)}")
    problem = check(value) if check is not None else None
    if problem:
        raise fail(problem)
    return value


def text(check: Check | None = None) -> WrapValidator:
    """A string, checked by one of `ksecrets.validators`' functions."""
    return _raw_only(lambda value: _text(value, check))


def whole(low: int, high: int) -> WrapValidator:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"must be a whole number, not {kind(value)}")
        if not low <= value <= high:
            raise fail(f"{value} is out of range ({low} to {high})")
        return value

    return _raw_only(read)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(f"must be true or false, not {kind(value)}")
    return value


flag = _raw_only(_flag)


def choice(options: Sequence[str]) -> WrapValidator:
    def read(value: Any) -> str:
        value = _text(value)
        if value not in options:
            raise fail(f'"{value}" is not one of {", ".join(options)}')
        return value

    return _raw_only(read)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(value: Any) -> int:
    """A duration string (30s, 10m, 1h30m) in whole seconds."""
    found = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", _text(value, v.duration))
    return int(sum(float(n) * _UNITS[u] for n, u in found))


seconds = _raw_only(_seconds)  # an int field the stack file writes as a duration


def _list(value: Any) -> Any:
    if not isinstance(value, list):
        raise fail(f"must be a list, not {kind(value)}")
    return value


T = TypeVar("T")
Seq = Annotated[tuple[T, ...], _raw_only(_list)]  # a YAML list of T; a tuple in the model


def _pairs(value: Any, check_key: Check, check_value: Check | None) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        raise fail(f"must be a mapping, not {kind(value)}")
    out = []
    for key, item in value.items():
        if not isinstance(key, str) or check_key(key):
            raise fail(check_key(str(key)) or "key must be a string", [str(key)])
        if not isinstance(item, str):
            raise fail(f"must be a string, not {kind(item)}", [key])
        problem = check_value(item) if check_value is not None else None
        if problem:
            raise fail(problem, [key])
        out.append((key, item))
    return out


def pairs(check_key: Check, check_value: Check | None = None, *, sort: bool = False) -> WrapValidator:
    """A mapping of strings (labels, ciphertexts by key): a tuple of (key, value) in the model, in
    the file's order or sorted."""

    def read(value: Any) -> tuple[tuple[str, str], ...]:
        got = _pairs(value, check_key, check_value)
        return tuple(sorted(got) if sort else got)

    return _raw_only(read)


Pairs = tuple[tuple[str, str], ...]


def _env(value: Any) -> list[dict[str, str]]:
    return [{"name": name, "key": key} for name, key in _pairs(value, v.env_var_name, v.secret_key)]


env_map = _raw_only(_env)  # `env: {VAR: KEY}`: a tuple of EnvFromKey in the model


def _manual_values(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Only the shape: secretName → keys. Values are Pulumi secrets, read under `pulumi up`; no
    message here ever shows one."""
    if not isinstance(value, Mapping):
        raise fail(f"must be a mapping, not {kind(value)}")
    out = []
    for secret_name, values in value.items():
        name = str(secret_name)
        problem = v.dns_subdomain(name)
        if problem:
            raise fail(problem, [name])
        if not isinstance(values, Mapping):
            raise fail(f"must be a mapping of keys to secret values, not {kind(values)}", [name])
        for key in values:
            problem = v.secret_key(str(key))
            if problem:
                raise fail(problem, [name, str(key)])
        out.append((name, tuple(sorted(str(k) for k in values))))
    return tuple(sorted(out))


manual_values = _raw_only(_manual_values)


def _connection_url(value: Any) -> str:
    url = _text(value)
    # A password in the URL would put a secret into Git; Vault fills {{password}} itself.
    if "{{password}}" not in url:
        raise fail("must use {{username}} and {{password}} templates, never a literal password")
    return url


connection_url = _raw_only(_connection_url)


def http_url(value: str) -> str | None:
    if not value.startswith(("https://", "http://")) or " " in value or "#" in value:
        return f"{value!r} is not an http(s) URL without a #fragment"
    return None


def http_path(value: str) -> str | None:
    if not value.startswith("/") or any(c.isspace() for c in value) or "#" in value:
        return f"{value!r} is not an HTTP path like /healthz"
    return None


# Strings by what they name. Every name that becomes part of a Vault request path is one of the
# Vault* types (Vault's own name rule, `validate.vault_name`/`vault_path`/`vault_mount`).
Text = Annotated[str, text()]
DnsLabel = Annotated[str, text(v.dns_label)]
DnsSubdomain = Annotated[str, text(v.dns_subdomain)]
Duration = Annotated[str, text(v.duration)]
Cron = Annotated[str, text(v.cron)]
Quantity = Annotated[str, text(v.quantity)]
Image = Annotated[str, text(v.image)]
ChartVersion = Annotated[str, text(v.chart_version)]
SecretKey = Annotated[str, text(v.secret_key)]
AgeRecipient = Annotated[str, text(v.age_recipient)]
HttpUrl = Annotated[str, text(http_url)]
HttpPath = Annotated[str, text(http_path)]
VaultName = Annotated[str, text(v.vault_name)]
VaultPath = Annotated[str, text(v.vault_path)]
VaultMount = Annotated[str, text(v.vault_mount)]
Flag = Annotated[bool, flag]
Seconds = Annotated[int, seconds]
Port = Annotated[int, whole(1, 65535)]
# Never 0: root is what runAsNonRoot refuses. Linux uids are 32-bit.
Uid = Annotated[int, whole(1, 2**31 - 1)]

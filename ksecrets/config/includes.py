"""Big structured keys in files of their own: `k8s-secrets:sealed: stacks/staging/sealed.yaml`.

Why: the Pulumi engine hands the program the whole stack config in ONE environment variable
(`PULUMI_CONFIG`), and Linux refuses any single environment string over 128 KiB
(MAX_ARG_STRLEN: `fork/exec ... argument list too long`, pulumi/pulumi#8680). A sealed stack of
~50 apps crosses it. A key of `INCLUDABLE` whose value is a string is a path (relative to the
project root, inside it, `.yaml`) to a YAML file that holds exactly what the inline value would
hold. The engine then passes only the path; the loader reads the file, under `ksecrets export`
and under `pulumi up` alike (the program runs with the project folder as its working directory).

`resolving` wraps the one `parse`: it replaces each reference by the file's content, and an error
inside that content names the included file, its line and the key path (never a value).
`engine_config_size` measures a stack file as the engine passes it (`PULUMI_CONFIG`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar, cast

from ksecrets.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
INCLUDABLE = ("sealed", "apps")  # the keys that grow with the number of apps and Secrets
# Linux: one "NAME=value" string of argv/envp, with its NUL, is at most 32 pages (MAX_ARG_STRLEN).
MAX_ARG_STRLEN = 32 * 4096
ENV_NAME = "PULUMI_CONFIG"
# The largest PULUMI_CONFIG value (bytes) the kernel lets through: "PULUMI_CONFIG=" + value + NUL.
ENGINE_CONFIG_LIMIT = MAX_ARG_STRLEN - len(ENV_NAME) - 2

# Texts of included files not yet written (a writer validates the edit before it commits it).
_pending: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "ksecrets_pending_includes", default=None
)


@contextlib.contextmanager
def pending(texts: Mapping[str, str]) -> Iterator[None]:
    """While validating an edit: read these (real path → text) instead of the files on disk."""
    token = _pending.set({**(_pending.get() or {}), **texts})
    try:
        yield
    finally:
        _pending.reset(token)


def is_reference(key: str, value: Any) -> bool:
    return key in INCLUDABLE and isinstance(value, str) and not isinstance(value, bool)


def target(ref: str, *, key: str, source: str, root: str | os.PathLike[str]) -> Path:
    """The real path a reference names, checked: relative, `.yaml`, inside the project root."""

    def bad(problem: str) -> ConfigError:
        return ConfigError(source, key, f"{ref!r}: {problem}")

    if not ref or ref != ref.strip() or "\x00" in ref:
        raise bad("not a file path (a path to a .yaml file holding this key's value)")
    if os.path.isabs(ref) or ref.startswith("~"):
        raise bad("must be relative to the project folder (the folder of Pulumi.yaml)")
    if not ref.endswith(".yaml") or Path(ref).name.startswith("Pulumi."):
        raise bad("must name a .yaml file that is not a Pulumi stack or project file")
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, ref))
    if os.path.commonpath([base, real]) != base:
        raise bad("leaves the project folder")
    return Path(real)


# Stack file (real path, mtime, size, inode) -> the files its `sealed`/`apps` name: (key, real path).
_refs_cache: dict[tuple[str, int, int, int], tuple[tuple[str, str], ...]] = {}


def _references(stack_file: Path, root: str | os.PathLike[str]) -> tuple[tuple[str, str], ...]:
    """(key, real path) of each file a stack file's `sealed`/`apps` name; () when it cannot be
    read (its own loading reports that)."""
    from ksecrets import yamlio
    from ksecrets.errors import KsecretsError
    from ksecrets.fileio import read_regular

    try:
        st = stack_file.stat()
        ident = (os.path.realpath(stack_file), st.st_mtime_ns, st.st_size, st.st_ino)
        if ident in _refs_cache:
            return _refs_cache[ident]
        text = read_regular(stack_file).decode("utf-8")
        found: list[tuple[str, str]] = []
        if any(f"k8s-secrets:{k}" in text for k in INCLUDABLE):
            doc = yamlio.load(text.removeprefix("\ufeff"), stack_file.name)
            config = doc.get("config") if isinstance(doc, Mapping) else None
            for key in INCLUDABLE:
                ref = config.get(f"k8s-secrets:{key}") if isinstance(config, Mapping) else None
                if isinstance(ref, str) and is_reference(key, ref):
                    with contextlib.suppress(ConfigError):
                        found.append((key, str(target(ref, key=key, source=stack_file.name, root=root))))
    except (OSError, UnicodeDecodeError, KsecretsError):
        return ()
    _refs_cache[ident] = tuple(found)
    return _refs_cache[ident]


def check_not_shared(path: Path, *, key: str, source: str, root: str | os.PathLike[str]) -> None:
    """Refuse a file that another stack of the project (or this stack's other key) also names:
    a write through one stack would land in the other, under a lock that covers only one."""
    from ksecrets.config.names import stack_files

    here = os.path.realpath(os.path.join(root, source))
    shown = os.path.relpath(path, os.path.realpath(root))
    for other in stack_files(root):
        if os.path.realpath(other) == here and other.name != source:
            continue  # this stack file under another name (a symlink to it)
        for other_key, other_path in _references(other, root):
            if other_path != str(path) or (other.name == source and other_key == key):
                continue
            whom = f"{other.name} ({other_key})" if other.name != source else f"its own {other_key}"
            raise ConfigError(
                source,
                key,
                f"{shown!r} is also named by {whom}; stacks cannot share an included file "
                f"(a write through one would change the other): give each its own file",
            )


def read_text(path: Path, *, shown: str, key: str, source: str) -> str:
    texts = _pending.get() or {}
    if str(path) in texts:
        return texts[str(path)]
    from ksecrets.fileio import NotRegularFile, read_regular

    try:
        data = read_regular(path)  # a FIFO or a device is refused before it can block the read
    except FileNotFoundError:
        raise ConfigError(source, key, f"{shown!r}: no such file") from None
    except (IsADirectoryError, NotRegularFile) as exc:
        what = exc.strerror if isinstance(exc, NotRegularFile) else "a directory"
        raise ConfigError(source, key, f"{shown!r}: is {what}, not a regular file") from None
    except OSError as exc:
        raise ConfigError(source, key, f"{shown!r}: cannot read it ({exc.strerror})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(shown, "", "not UTF-8 text") from None


def resolve(
    raw: Mapping[str, Any], *, source: str, root: str | os.PathLike[str]
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """`raw` with each reference replaced by its file's content; key → (file as written, its text)."""
    from ksecrets import yamlio

    out = dict(raw)
    files: dict[str, tuple[str, str]] = {}
    for key in INCLUDABLE:
        ref = raw.get(key)
        if not isinstance(ref, str) or not is_reference(key, ref):
            continue
        path = target(ref, key=key, source=source, root=root)
        check_not_shared(path, key=key, source=source, root=root)
        shown = os.path.normpath(ref)
        text = read_text(path, shown=shown, key=key, source=source)
        out[key] = yamlio.load(text, shown)
        files[key] = (shown, text)
    return out, files


def inline(config: Mapping[str, Any], *, source: str, root: str | os.PathLike[str]) -> dict[str, Any]:
    """A stack file's `config:` map (prefixed keys) with each reference replaced by its content."""
    prefix = "k8s-secrets:"
    raw = {
        k[len(prefix) :]: v for k, v in config.items() if str(k).startswith(prefix) and k[len(prefix) :] in INCLUDABLE
    }
    resolved, _ = resolve(raw, source=source, root=root)
    return {**config, **{prefix + k: v for k, v in resolved.items()}}


def resolving(parse: F) -> F:
    """Decorate `parse(raw, *, stack, source, root)`: references resolved, errors in an included
    file re-raised naming that file and the line of the key path."""

    @functools.wraps(parse)
    def wrapper(raw: Mapping[str, Any], *, stack: str, source: str, root: str = ".", **kw: Any) -> Any:
        resolved, files = resolve(raw, source=source, root=root) if isinstance(raw, Mapping) else (raw, {})
        try:
            return parse(resolved, stack=stack, source=source, root=root, **kw)
        except ConfigError as exc:
            if exc.source != source:
                raise
            for key, (shown, text) in files.items():
                if exc.path == key or exc.path.startswith((key + "[", key + ".")):
                    line = line_of(text, exc.path[len(key) :])
                    raise ConfigError(f"{shown}: line {line}" if line else shown, exc.path, exc.problem) from None
            raise

    return cast(F, wrapper)


_INDEX = re.compile(r"\[(\d+)\]")


def line_of(text: str, path: str) -> int | None:
    """The 1-based line of `path` (`[3].encryptedData.API_KEY`) in a YAML text: of the deepest
    part of the path that exists (a missing key is reported where its parent is)."""
    from ksecrets import yamlio

    node = yamlio.compose(text, "included file")
    if node is None:
        return None
    line = node.start_mark.line + 1
    rest = path
    while rest and node is not None:
        if isinstance(node, yamlio.SequenceNode):
            m = _INDEX.match(rest)
            if not m or int(m.group(1)) >= len(node.value):
                break
            node, rest = node.value[int(m.group(1))], rest[m.end() :]
        elif isinstance(node, yamlio.MappingNode):
            rest = rest.removeprefix(".")
            best = None
            for k, v in node.value:
                name = str(k.value)
                if (
                    rest.startswith(name)
                    and rest[len(name) : len(name) + 1] in ("", ".", "[")
                    and (best is None or len(name) > len(str(best[0].value)))
                ):
                    best = (k, v)
            if best is None:
                break
            line = best[0].start_mark.line + 1
            node, rest = best[1], rest[len(str(best[0].value)) :]
            continue
        else:
            break
        line = node.start_mark.line + 1
    return line


# --- the engine's view: how big PULUMI_CONFIG is ---------------------------------------------------


def _go_json(value: Any) -> str:
    """`encoding/json.Marshal`: compact, map keys sorted, `<`, `>`, `&`, U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _plaintext_length(value: Mapping[str, Any]) -> int:
    """A `secure:` value reaches the program decrypted. The passphrase provider's ciphertext is
    `v1:<nonce>:<base64 of AES-GCM output>`, 16 bytes of tag longer than the plaintext; other
    providers' formats count as their ciphertext (an upper bound)."""
    import base64
    import binascii

    secure = str(value.get("secure", ""))
    parts = secure.split(":")
    if len(parts) == 3 and parts[0] == "v1":
        try:
            return max(len(base64.b64decode(parts[2], validate=True)) - 16, 0)
        except (binascii.Error, ValueError):
            pass
    return len(secure)


def _engine_value(value: Any) -> tuple[str, int]:
    """(the string the engine passes for one key, extra bytes of plaintext not in it)."""
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        return "", _plaintext_length(value)
    if isinstance(value, str):
        return value, 0
    if isinstance(value, bool):
        return "true" if value else "false", 0
    if isinstance(value, (int, float)):
        return json.dumps(value), 0
    # A structured value: JSON text; secure leaves inside it are decrypted (counted as plaintext).
    extra = 0

    def walk(v: Any) -> Any:
        nonlocal extra
        if isinstance(v, Mapping):
            if set(v) == {"secure"}:
                extra += _plaintext_length(v)
                return ""
            return {str(k): walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return _go_json(walk(value)), extra


def engine_config_sizes(config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Bytes each key adds to PULUMI_CONFIG (the stack file's `config:` map, keys as written; the
    project's declared defaults for keys the stack does not set). Sum + 2 = the whole value."""
    project = "k8s-secrets"
    full: dict[str, Any] = {}
    for k, v in (defaults or {}).items():
        full[f"{project}:{k}"] = v
    for k, v in config.items():
        full[k if ":" in str(k) else f"{project}:{k}"] = v
    sizes = {}
    for k in sorted(full):
        text, extra = _engine_value(full[k])
        # "key":"value", with its comma; the value escaped once more as a JSON string.
        sizes[k] = len(_go_json(k).encode()) + 1 + len(_go_json(text).encode()) + extra + 1
    return sizes


def engine_config_size(config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> int:
    """The length in bytes of PULUMI_CONFIG for this config (`{` + entries, commas + `}`)."""
    sizes = engine_config_sizes(config, defaults)
    return 2 + sum(sizes.values()) - (1 if sizes else 0)


def project_defaults(root: str | os.PathLike[str]) -> dict[str, Any]:
    """`config:` defaults declared in the project's Pulumi.yaml (the engine passes them too)."""
    from ksecrets import yamlio

    path = Path(root) / "Pulumi.yaml"
    try:
        doc = yamlio.load(path.read_text(encoding="utf-8"), "Pulumi.yaml")
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for key, spec in ((doc or {}).get("config") or {}).items():
        if isinstance(spec, Mapping) and "default" in spec:
            out[str(key)] = spec["default"]
    return out


def size_problem(stack_file: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> str | None:
    """One line when the stack's config, as the engine passes it, is over the kernel's limit."""
    from ksecrets import yamlio

    p = Path(stack_file)
    doc = yamlio.load(p.read_text(encoding="utf-8"), p.name) or {}
    config = doc.get("config") or {} if isinstance(doc, Mapping) else {}
    if not isinstance(config, Mapping):
        return None
    sizes = engine_config_sizes(config, project_defaults(root or p.parent))
    total = 2 + sum(sizes.values()) - (1 if sizes else 0)
    if total <= ENGINE_CONFIG_LIMIT:
        return None
    biggest = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    movable = [
        k.split(":", 1)[1] for k, _ in biggest if k.split(":", 1)[-1] in INCLUDABLE and k.startswith("k8s-secrets:")
    ]
    hint = (
        f"move {' and '.join('k8s-secrets:' + k for k in movable)} into a file "
        f'(`ksecrets stack split --stack {p.name[len("Pulumi.") : -len(".yaml")]}`; README "Large stacks")'
        if movable
        else 'make these keys smaller (README "Large stacks")'
    )
    return (
        f"{p.name}: the config the Pulumi engine passes in {ENV_NAME} is {_kib(total)} "
        f"({total:,} bytes), over Linux's {_kib(ENGINE_CONFIG_LIMIT)} for one environment variable "
        f'(pulumi preview/up fail with "argument list too long"); biggest keys: '
        + ", ".join(f"{k} {_kib(n)}" for k, n in biggest)
        + f"; {hint}"
    )


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"

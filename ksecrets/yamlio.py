"""The one home of YAML reading (and deterministic writing) in the project.

Dumping keeps the insertion order of each dict (builders write keys in Kubernetes' usual order:
apiVersion, kind, metadata, spec/data) and never folds long lines, so the same objects always
give the same bytes. Loading refuses duplicate keys and names the source and line on error,
without echoing the document (it may hold a secret).

Hostile files get bounded work: before any reader builds a document, `check` refuses a text
over MAX_BYTES, nested deeper than MAX_DEPTH, or whose aliases expand it to more than
`MAX_EXPANDED + ALIAS_RATIO x` its own nodes (a "billion laughs" bomb is a few hundred bytes that
expand to 10^9 nodes: every walk of it, by pydantic, json or `scan`, hangs). What passes is at
most linear in its size for every reader. Every reader goes through here: `load`, `load_all`,
`compose_all` (node graphs, `scan`), `load_round_trip` (ruamel, in-place edits of stack files);
`tests/test_yaml_readers.py` checks that no other module imports a YAML library to read.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import yaml

from ksecrets.errors import KsecretsError


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter when present (several times faster), never anchors or aliases: a
    builder may share one dict between two places, and `&id001` helps no reader of a diff."""

    def ignore_aliases(self, data: object) -> bool:
        return True


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading (libyaml's parser when present) that rejects duplicate mapping keys, which
    PyYAML otherwise resolves silently by keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # `? [a, b]: x` (a "complex key"): no Kubernetes or Pulumi key is a list or a map.
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or a mapping", key_node.start_mark
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def dump(obj: Any) -> str:
    """One YAML document, deterministic bytes."""
    return yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
    )


def dump_all(objs: Iterable[Any]) -> str:
    return "---\n".join(dump(o) for o in objs)


def dump_quoting(obj: Any, quote: Callable[[str], bool]) -> str:
    """One YAML document like `dump`, for a reader that resolves plain scalars by other rules than
    PyYAML's YAML 1.1 (Go's yaml.v3 reads `0o17` and `1e5` as numbers): every string for which
    `quote` is true is double-quoted, a string of several lines is a literal block (`|`) where
    the emitter allows it."""

    class _Quoting(_Dumper):
        pass

    def represent_str(dumper: Any, data: str) -> Any:
        style = '"' if quote(data) else ("|" if "\n" in data else None)
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Quoting.add_representer(str, represent_str)
    return yaml.dump(
        obj,
        Dumper=_Quoting,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
    )


def _problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    # `problem` is the parser's own words ("found duplicate key", "could not find expected ':'");
    # never include the snippet, which may be a secret.
    problem = getattr(exc, "problem", None) or exc.__class__.__name__
    return f"{where}invalid YAML: {problem}"


MAX_DEPTH = 100  # Kubernetes objects and stack files nest about 15 levels
# Under this many brackets and columns of indentation a document cannot nest deep enough to
# harm the parser (libyaml's composer recurses in C; 10,000 levels are fine, 30,000 crash), and
# no code here walks user values recursively, so the exact count is skipped: it costs a second
# parse (0.6 s for a 2.5 MB stack file).
_SCAN_ABOVE = 2000


def _may_be_deep(text: str) -> bool:
    """A cheap upper bound: nesting needs a bracket, or indentation and block indicators."""
    if text.count("[") + text.count("{") > _SCAN_ABOVE:
        return True
    return any(len(line) - len(line.lstrip(" -?:")) > _SCAN_ABOVE for line in text.splitlines())


MAX_BYTES = 64 << 20  # the bench's 1000-app stack file is 2.5 MB
MAX_EXPANDED = 100_000  # nodes aliases may add whatever the size of the text ...
ALIAS_RATIO = 10  # ... plus this many times the nodes the text itself holds


def _may_have_aliases(text: str) -> bool:
    return "&" in text and "*" in text  # an alias needs an anchor (`&a`) and a reference (`*a`)


def check(text: str, source: str) -> None:
    """Refuse, in one line naming `source`, a text too big, too deep or whose aliases expand too
    far, before any reader builds it (work linear in the text; the event walk runs only when the
    text may nest deeply or holds `&` and `*`)."""
    if len(text) > MAX_BYTES:
        raise KsecretsError(f"{source}: {len(text):,} characters of YAML, over the limit of {MAX_BYTES:,}")
    if not (_may_be_deep(text) or _may_have_aliases(text)):
        return
    depth = 0
    nodes = 0
    anchors: dict[str, int] = {}
    sizes: list[list] = [[None, 0]]  # per open collection: [anchor, expanded nodes in it]
    try:
        for event in yaml.parse(text, Loader=_StrictLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise KsecretsError(f"{source}: line {line}: nested more than {MAX_DEPTH} levels deep")
                sizes.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                anchor, size = sizes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                anchor, size = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, anchors.get(event.anchor or "", 1)
            else:
                continue
            if anchor is not None:
                anchors[anchor] = size
            sizes[-1][1] += size
            if sizes[-1][1] > MAX_EXPANDED + ALIAS_RATIO * nodes:  # a collection only grows here
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise KsecretsError(
                    f"{source}: line {line}: aliases expand the document beyond "
                    f"{MAX_EXPANDED:,} + {ALIAS_RATIO} x its own nodes (an alias bomb?); refused"
                )
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None


def check_depth(text: str, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than `limit` before building them: libyaml's composer
    recurses in C and overflows the stack (a crash, not an exception) near 20,000 levels."""
    check(text, source)


def load(text: str, source: str) -> Any:
    """Parse one YAML (or JSON, a YAML subset) document."""
    check(text, source)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None


def load_all(text: str, source: str) -> list[Any]:
    check(text, source)
    try:
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None


# --- node graphs (scan) and round-trip documents (in-place edits) ---------------------------------

Node = yaml.Node
MappingNode = yaml.MappingNode
SequenceNode = yaml.SequenceNode
ScalarNode = yaml.ScalarNode
YAMLError = yaml.YAMLError


def compose_all(text: str, source: str) -> list[Any]:
    """The node graph of every document (lines kept, nothing constructed), checked first. A text
    that does not parse raises `YAMLError` (callers fall back to a line heuristic); one over the
    bounds raises `KsecretsError`."""
    check(text, source)
    return [n for n in yaml.compose_all(text, Loader=_StrictLoader) if n is not None]


_IMPLICIT = yaml.resolver.Resolver()


def explicit_tag(node: Any) -> bool:
    """A scalar node whose tag was written in the text (`!!int "5"`, `!custom x`), not resolved
    from its value: the node graph keeps only the tag, so compare with what resolution gives."""
    plain = not node.style  # None (PyYAML) or "" (libyaml) for a plain scalar
    return node.tag != _IMPLICIT.resolve(yaml.ScalarNode, node.value, (plain, not plain))


def compose_checked(text: str, source: str) -> Any:
    """One document's node graph, checked first (size, depth, aliases): raises `YAMLError` when it
    does not parse and `KsecretsError` when it is over the bounds (the merge driver's block finder)."""
    check(text, source)
    return yaml.compose(text, Loader=_StrictLoader)


def compose(text: str, source: str) -> Any:
    """One document's node graph (None when it does not parse): for finding a key's line."""
    try:
        check(text, source)
        return yaml.compose(text, Loader=_StrictLoader)
    except (KsecretsError, yaml.YAMLError):
        return None


def round_trip_yaml() -> Any:
    """A ruamel.yaml round-trip (comments, order and quoting kept) loader and dumper."""
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16  # never fold long lines (ciphertexts, comments)
    return y


def load_round_trip(y: Any, text: str, source: str) -> Any:
    """`y.load(text)` (a `round_trip_yaml()`), checked first; errors one line naming `source`."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError as RuamelError

    check(text, source)
    try:
        return y.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise KsecretsError(f"{source}: {where}invalid YAML: {exc.problem or type(exc).__name__}") from None
    except (RuamelError, RecursionError) as exc:
        raise KsecretsError(f"{source}: invalid YAML: {type(exc).__name__}") from None

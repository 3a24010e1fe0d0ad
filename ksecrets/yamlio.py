"""Deterministic YAML in and out for manifests.

Dumping keeps the insertion order of each dict (builders write keys in Kubernetes' usual order:
apiVersion, kind, metadata, spec/data) and never folds long lines, so the same objects always
give the same bytes. Loading refuses duplicate keys and names the source and line on error,
without echoing the document (it may hold a secret).
"""

from __future__ import annotations

from typing import Any, Iterable

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


def check_depth(text: str, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than `limit` before building them: libyaml's composer
    recurses in C and overflows the stack (a crash, not an exception) near 20,000 levels."""
    if not _may_be_deep(text):
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_StrictLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > limit:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise KsecretsError(f"{source}: line {line}: nested more than {limit} levels deep")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None


def load(text: str, source: str) -> Any:
    """Parse one YAML (or JSON, a YAML subset) document."""
    check_depth(text, source)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None


def load_all(text: str, source: str) -> list[Any]:
    check_depth(text, source)
    try:
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise KsecretsError(f"{source}: {_problem(exc)}") from None

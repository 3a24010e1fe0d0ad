"""`adopt`, by properties (Hypothesis): generated trees of Secret manifests, env files and templates,
adopted into a generated stack (sealed values inline or in an included file, the stack file and
the included file plain or symlinked, entries already sealed), with a failure injected at a random
write (or none). Then either every non-template value is in the stack and decrypts with its
entry's label (the vectors' key), the entries sealed before keep theirs, metadata is kept, the
templates are untouched and the adopted files are gone; or adopt failed and every file has its
bytes and its type back.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from ksecrets.sealing import crypto

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "fixtures" / "vectors" / "sealed-secrets-v1.json"
EXAMPLES = int(os.environ.get("KSECRETS_ADOPT_EXAMPLES", "60"))
NS = "my-app"
NAMES = ["my-app-secrets", "other-a", "other-b"]
ENV_NAME = "env-secrets"
# Shrinking an adopt run is slow (each example seals and decrypts): KSECRETS_ADOPT_SHRINK=1 turns it on.
PHASES = tuple(Phase) if os.environ.get("KSECRETS_ADOPT_SHRINK") else (Phase.explicit, Phase.reuse, Phase.generate)

keys = st.sampled_from(["API_KEY", "DATABASE_URL", "TOKEN", "tls.crt", "x-1"])
env_keys = st.sampled_from(["API_KEY", "DATABASE_URL", "TOKEN", "X_1"])
values = st.text(alphabet="abcXYZ0189-_:/@.+=", min_size=1, max_size=24)
meta_maps = st.dictionaries(
    st.sampled_from(["team", "example.com/owner", "app.kubernetes.io/part-of"]), values, max_size=2
)


@st.composite
def manifests(draw):
    name = draw(st.sampled_from(NAMES))
    vals = draw(st.dictionaries(keys, values, min_size=1, max_size=3))
    if name == "my-app-secrets":  # the demo app's Deployment reads these two keys
        vals.update(API_KEY=draw(values), DATABASE_URL=draw(values))
    return {
        "name": name,
        "values": vals,
        "labels": draw(meta_maps),
        "annotations": draw(meta_maps),
        "immutable": draw(st.sampled_from([None, True, False])),
        "string_data": draw(st.booleans()),
    }


@st.composite
def trees(draw):
    return {
        "included": draw(st.booleans()),
        "link_stack": draw(st.booleans()),
        "link_included": draw(st.booleans()),
        "existing": draw(
            st.dictionaries(
                st.sampled_from(NAMES[1:]), st.dictionaries(keys, values, min_size=1, max_size=2), max_size=2
            )
        ),
        "manifests": draw(st.lists(manifests(), max_size=3)),
        "env": draw(st.one_of(st.none(), st.dictionaries(env_keys, values, min_size=1, max_size=3))),
        "templates": draw(
            st.lists(
                st.sampled_from([".env.example", ".env.sample", "s.yaml.template", ".env.dist"]),
                unique=True,
                max_size=2,
            )
        ),
        "fail_at": draw(st.one_of(st.none(), st.integers(1, 4))),
        "fail_what": draw(st.sampled_from(["write", "remove"])),
    }


def _manifest_text(m: dict) -> str:
    import base64

    meta: dict = {"name": m["name"], "namespace": NS}
    if m["labels"]:
        meta["labels"] = m["labels"]
    if m["annotations"]:
        meta["annotations"] = m["annotations"]
    doc: dict = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
    if m["immutable"] is not None:
        doc["immutable"] = m["immutable"]
    if m["string_data"]:
        doc["stringData"] = m["values"]
    else:
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in m["values"].items()}
    return yaml.safe_dump(doc, sort_keys=False)


def _snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p).encode())
        elif p.is_file():
            out[rel] = ("file", p.read_bytes())
    return out


def _entries(root: Path) -> list[dict]:
    cfg = yaml.safe_load((root / "Pulumi.qa.yaml").read_text())["config"]
    sealed = cfg.get("k8s-secrets:sealed") or []
    return yaml.safe_load((root / sealed).read_text()) or [] if isinstance(sealed, str) else sealed


def _build(root: Path, t: dict, cert) -> None:
    from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack

    (root / "certs").mkdir(parents=True)
    (root / "certs" / "qa.pem").write_text(json.loads(VECTORS.read_text())["certificate_pem"])
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("certs/staging.pem", "certs/qa.pem")
    text = text[: text.index("  k8s-secrets:sealed:")]
    if t["included"]:
        text += "  k8s-secrets:sealed: stacks/qa/sealed.yaml\n"
        real = root / ("store/sealed.yaml" if t["link_included"] else "stacks/qa/sealed.yaml")
        real.parent.mkdir(parents=True)
        real.write_text("[]\n")
        if t["link_included"]:
            (root / "stacks" / "qa").mkdir(parents=True)
            (root / "stacks" / "qa" / "sealed.yaml").symlink_to("../../store/sealed.yaml")
    if t["link_stack"]:
        (root / "config").mkdir()
        (root / "config" / "Pulumi.qa.yaml").write_text(text)
        (root / "Pulumi.qa.yaml").symlink_to("config/Pulumi.qa.yaml")
    else:
        (root / "Pulumi.qa.yaml").write_text(text)
    for name, vals in t["existing"].items():
        seal_into_stack(
            root, "qa", SealRequest(name=name, namespace=NS, values={k: v.encode() for k, v in vals.items()})
        )
    leak = root / "leak"
    leak.mkdir()
    for i, m in enumerate(t["manifests"]):
        (leak / f"s{i}.yaml").write_text(_manifest_text(m))
    if t["env"] is not None:
        (leak / ".env.leak").write_text("".join(f"{k}={v}\n" for k, v in t["env"].items()))
    for name in t["templates"]:
        (leak / name).write_text(
            "API_KEY=changeme\nTOKEN=changeme\n"
            if name.startswith(".env")
            else _manifest_text(
                {
                    "name": "my-app-secrets",
                    "values": {"API_KEY": "changeme"},
                    "labels": {},
                    "annotations": {},
                    "immutable": None,
                    "string_data": True,
                }
            )
        )


@contextlib.contextmanager
def _failing(t: dict):
    """Raise at the fail_at-th stack/included write, or at the fail_at-th rename of a removal."""
    from ksecrets import fileio

    if t["fail_at"] is None:
        yield
        return
    count = [0]
    if t["fail_what"] == "write":
        real = fileio.atomic_write_bytes

        def write(path, data, mode=0o644, **kw):
            count[0] += 1
            if count[0] == t["fail_at"]:
                raise OSError(28, "No space left on device")
            return real(path, data, mode, **kw)

        with mock.patch("ksecrets.config.stackfile.atomic_write_bytes", write):
            yield
    else:
        real_rename = os.rename

        def rename(src, dst):
            count[0] += 1
            if count[0] == t["fail_at"]:
                raise OSError(13, "Permission denied")
            return real_rename(src, dst)

        with mock.patch("ksecrets.usecases.adopt.os.rename", rename):
            yield


@pytest.fixture(scope="module")
def vector_key():
    from ksecrets.sealing.keys import parse_private_key_pem

    return parse_private_key_pem(json.loads(VECTORS.read_text())["private_key_pem"].encode(), "vectors")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(t=trees())
def test_adopt_keeps_every_value_or_changes_nothing(vector_key, t):
    from ksecrets.usecases.adopt import adopt
    from ksecrets.errors import KsecretsError

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        _build(root, t, None)
        before = _snapshot(root)
        try:
            with _failing(t):
                adopt(root / "leak", root, "qa", name=ENV_NAME, namespace=NS, seal_key=b"k" * 32)
        except (KsecretsError, OSError) as exc:
            event(f"refused: {type(exc).__name__}")
            assert _snapshot(root) == before  # nothing changed: bytes and types
            return
        event("adopted")
        after = _snapshot(root)
        # Templates untouched; the adopted files gone; the symlinks still symlinks.
        for name in t["templates"]:
            assert after[f"leak/{name}"] == before[f"leak/{name}"]
        assert not [k for k in after if k.startswith("leak/") and not any(k == f"leak/{n}" for n in t["templates"])]
        assert (root / "Pulumi.qa.yaml").is_symlink() == t["link_stack"]
        if t["included"]:
            assert (root / "stacks/qa/sealed.yaml").is_symlink() == t["link_included"]
        # Every value: what was sealed before, updated by what was adopted, decrypts with its label.
        expected: dict[str, dict[str, str]] = {n: dict(v) for n, v in t["existing"].items()}
        metadata: dict[str, dict] = {}
        for m in t["manifests"]:
            expected.setdefault(m["name"], {}).update(m["values"])
            metadata[m["name"]] = m
        if t["env"]:
            expected.setdefault(ENV_NAME, {}).update(t["env"])
        entries = {e["name"]: e for e in _entries(root)}
        assert set(entries) == set(expected)
        for name, vals in expected.items():
            e = entries[name]
            label = f"{NS}/{name}".encode()
            got = {k: crypto.decrypt_value([vector_key], c, label).decode() for k, c in e["encryptedData"].items()}
            assert got == vals, name
            m = metadata.get(name)
            if m is not None:
                assert e.get("labels", {}) == m["labels"] or (not m["labels"] and "labels" not in e)
                assert e.get("annotations", {}) == m["annotations"] or (not m["annotations"] and "annotations" not in e)
                if m["immutable"] is not None:
                    assert e["immutable"] is m["immutable"]

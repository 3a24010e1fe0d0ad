"""The pydantic model (issue 14): the stack file's spelling only (camelCase, no field the loader sets),
one set of defaults for files and code, and every error in the project's words, never pydantic's
and never a value."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml
from pydantic import ValidationError

from ksecrets.config.load import parse, stack_files
from ksecrets.config.model import (
    App,
    FluxConfig,
    MonitoringConfig,
    RotationConfig,
    SealedSecretsConfig,
    StackConfig,
    VaultConfig,
)
from ksecrets.errors import ConfigError
from tests.conftest import ROOT

MINIMAL = {"backend": "manual", "apps": [{"name": "web", "namespace": "web"}]}


def error(raw: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(raw, stack="test", source="Pulumi.test.yaml")
    return str(exc.value)


def test_snake_case_keys_are_not_the_files_spelling():
    raw = copy.deepcopy(MINIMAL)
    raw["apps"][0]["secret_name"] = "web-secrets"
    assert error(raw) == 'Pulumi.test.yaml: apps[0].secret_name: unknown key (did you mean "secretName"?)'
    assert error({**MINIMAL, "external_namespaces": ["x"]}) == (
        'Pulumi.test.yaml: external_namespaces: unknown key (did you mean "externalNamespaces"?)'
    )


@pytest.mark.parametrize("key", ["stack", "source", "root"])
def test_fields_the_loader_sets_cannot_come_from_the_file(key):
    assert error({**MINIMAL, key: "elsewhere"}) == f"Pulumi.test.yaml: {key}: unknown key"


def test_one_set_of_defaults_for_files_and_code():
    cfg = parse(
        {
            "backend": "vault",
            "flux": {},
            "sealedSecrets": {},
            "rotation": {},
            "monitoring": {},
            "apps": [{"name": "web", "namespace": "web", "vault": {}}],
        },
        stack="test",
        source="Pulumi.test.yaml",
    )
    assert (cfg.flux, cfg.sealed_secrets, cfg.rotation, cfg.monitoring, cfg.vault) == (
        FluxConfig(),
        SealedSecretsConfig(),
        RotationConfig(),
        MonitoringConfig(),
        VaultConfig(),
    )
    # Defaults that follow from another value are the model's too, in code as from a file.
    app = App(name="web", namespace="web", vault={})
    assert cfg.apps[0] == app
    assert (app.service_account, app.secret_name, app.vault.path, app.vault.role) == (
        "web",
        "web-secrets",
        "web",
        "web",
    )


def test_a_rotation_without_a_schedule_runs_on_the_stacks_default():
    raw = {
        "backend": "vault",
        "rotation": {"defaultSchedule": "0 4 * * *"},
        "apps": [
            {
                "name": "web",
                "namespace": "web",
                "keys": ["A", "B"],
                "vault": {},
                "rotation": [{"key": "A"}, {"key": "B", "schedule": "@daily"}],
            }
        ],
    }
    cfg = parse(raw, stack="test", source="Pulumi.test.yaml")
    assert [r.schedule for r in cfg.apps[0].rotation] == ["0 4 * * *", "@daily"]
    assert raw["apps"][0]["rotation"][0] == {"key": "A"}, "the caller's mapping is not changed"


def test_code_builds_the_model_by_field_name_without_the_files_rules():
    """Constructing in code (tests, the Pulumi layer's inputs) checks types, not stack-file rules."""
    cfg = parse(MINIMAL, stack="test", source="Pulumi.test.yaml")
    moved = dataclasses.replace(cfg, namespaces=["kube-system"])  # a rule parse() refuses
    assert moved.namespaces == ("kube-system",)
    with pytest.raises(ValidationError):
        dataclasses.replace(cfg, apps="web")


def test_a_validation_error_never_shows_the_input():
    canary = "canary-value-4f1d"
    with pytest.raises(ValidationError) as exc:
        StackConfig(stack="s", source="Pulumi.s.yaml", root=".", backend="manual", manual_keys=(("web", canary),))
    assert canary not in str(exc.value) and canary not in repr(exc.value)


MANUAL = {"backend": "manual", "apps": [{"name": "web", "namespace": "web", "secretName": "web-secrets"}]}


@pytest.mark.parametrize(
    "values,message",
    [
        (
            {"web-secrets": {"bad key!": "canary-value-4f1d"}},
            "manualValues.web-secrets.bad key!: \"bad key!\" is not a valid Secret key (letters, digits, '-', '_' and '.')",
        ),
        (
            {"web-secrets": "canary-value-4f1d"},
            "manualValues.web-secrets: must be a mapping of keys to secret values, not a string",
        ),
        (
            {"Web_Secrets": {"PASSWORD": "canary-value-4f1d"}},
            'manualValues.Web_Secrets: "Web_Secrets" is not a valid Kubernetes name',
        ),
    ],
)
def test_manual_values_errors_name_the_key_never_the_value(values, message):
    got = error({**MANUAL, "manualValues": values})
    assert got == f"Pulumi.test.yaml: {message}"
    assert "canary" not in got


# Anything YAML can hold, in every place of every stack file in the repository.
WRONG = [None, 0, 70000, -1, True, 1.5, "", "X_Y", "soon", [], ["a"], [None], {}, {"a": "b"}, {1: "a"}]
PYDANTIC_WORDS = ("Input should", "Field required", "Unexpected keyword", "validation error", "Value error")


def _places(node, path=()):
    if path:
        yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _places(value, (*path, key))


def _config(path):
    doc = yaml.safe_load(path.read_text())
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items() if k.startswith("k8s-secrets:")}


FIXTURES = [
    *stack_files(ROOT),
    ROOT / "tests/fixtures/full-vault-stack.yaml",
    ROOT / "tests/fixtures/minimal-stack.yaml",
    ROOT / "tests/vault/fixtures/Pulumi.vaultdb.yaml",
    ROOT / "tests/jobs/rotate/fixtures/Pulumi.rotating.yaml",
    ROOT / "tests/manifests/monitoring/fixtures/Pulumi.sealedmon.yaml",
]


@pytest.mark.parametrize("stack_file", FIXTURES, ids=lambda p: p.stem)
def test_every_wrong_value_anywhere_is_one_line_in_the_projects_words(stack_file):
    base = _config(stack_file)
    seen = 0
    for place in _places(base):
        for value in WRONG:
            raw = copy.deepcopy(base)
            node = raw
            for key in place[:-1]:
                node = node[key]
            node[place[-1]] = value
            try:
                parse(raw, stack="test", source="Pulumi.test.yaml")
            except ConfigError as exc:
                text = str(exc)
                seen += 1
                assert text.startswith("Pulumi.test.yaml: ") and "\n" not in text, text
                assert not any(w in text for w in PYDANTIC_WORDS), (place, value, text)
    assert seen > 100

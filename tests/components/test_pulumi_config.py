"""The same model from Pulumi config (under `pulumi up`) as from the stack file (export), and
manual-backend values that stay secret Outputs all the way into the registered Secret."""

from __future__ import annotations

import dataclasses

import pulumi
import pytest
import yaml

from components.platform import Platform
from ksecrets.config import load_stack_file, stack_files
from components.pulumi_source import load_from_pulumi, manual_value_outputs
from tests.conftest import ROOT
from tests.pulumi_harness import run_program


def _pulumi_config(stack_file):
    """What the Pulumi engine hands the program: the stack file's config, values as JSON strings."""
    doc = yaml.safe_load(stack_file.read_text())
    return dict(doc["config"])


@pytest.mark.parametrize("stack_file", stack_files(ROOT), ids=lambda p: p.stem)
def test_pulumi_config_and_stack_file_give_the_same_model(stack_file):
    from_file = load_stack_file(stack_file)
    stack = from_file.stack
    holder = {}
    run_program(lambda: holder.setdefault("cfg", load_from_pulumi()[0]), stack=stack, config=_pulumi_config(stack_file))
    from_pulumi = holder["cfg"]
    assert dataclasses.replace(from_pulumi, root=from_file.root) == from_file


MANUAL = {
    "k8s-secrets:backend": "manual",
    "k8s-secrets:apps": [
        {
            "name": "web",
            "namespace": "web",
            "secretName": "web-secrets",
            "deployments": [{"name": "web", "image": "ghcr.io/example/web:1.0.0"}],
        }
    ],
    # What the engine passes for a secure value: the decrypted JSON (marked secret).
    "k8s-secrets:manualValues": {"web-secrets": {"PASSWORD": "canary-4a1f-manual", "USER": "app"}},
}


def test_manual_values_register_as_secret_outputs(monkeypatch):
    import components.kube as kube

    holder = {"opts": []}
    real_secret = kube._TYPED[("v1", "Secret")]  # noqa: SLF001

    def recording_secret(name, opts=None, **kwargs):
        holder["opts"].append(opts)
        return real_secret(name, opts=opts, **kwargs)

    monkeypatch.setitem(kube._TYPED, ("v1", "Secret"), recording_secret)  # noqa: SLF001

    def program():
        cfg, manual = load_from_pulumi()
        values = manual_value_outputs(cfg, manual)
        holder["values"] = values
        holder["platform"] = Platform(cfg.stack, cfg, manual_values=values)

    mocks, _ = run_program(program, stack="dev", config=MANUAL)
    secrets = [r for r in mocks.resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) == 1
    assert secrets[0].inputs["metadata"]["name"] == "web-secrets"
    # The values reach the provider only inside Pulumi's secret envelope (its signature key),
    # which the engine encrypts in state.
    SECRET_SIG = "4dabf18193072939515e22adb298388d"
    string_data = secrets[0].inputs["stringData"]
    assert string_data[SECRET_SIG] == "1b47061264138c4ac30d75fd1eb44270"
    assert string_data["value"] == {"PASSWORD": "canary-4a1f-manual", "USER": "app"}
    out = holder["values"]["web-secrets"]["PASSWORD"]
    is_secret = pulumi.runtime.sync_await._sync_await(out.is_secret())
    assert is_secret is True
    # The Secret resource marks its data outputs secret in state as well.
    (opts,) = holder["opts"]
    assert {"data", "stringData"} <= set(opts.additional_secret_outputs)


def test_model_from_pulumi_never_holds_manual_values():
    holder = {}
    run_program(lambda: holder.setdefault("cfg", load_from_pulumi()[0]), stack="dev", config=MANUAL)
    assert "canary-4a1f-manual" not in repr(holder["cfg"])
    assert dict(holder["cfg"].manual_keys) == {"web-secrets": ("PASSWORD", "USER")}


def test_a_misspelt_key_fails_under_pulumi_as_in_export(tmp_path):
    """The engine delivers every key of the stack file; one the model does not know fails with
    the same one line as `ksecrets export` (the file loader), not silently ignored."""
    from ksecrets.errors import KsecretsError

    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("k8s-secrets:monitoring:", "k8s-secrets:monitorng:")
    bad = tmp_path / "Pulumi.staging.yaml"
    bad.write_text(text)
    with pytest.raises(KsecretsError) as from_file:
        load_stack_file(bad)
    holder = {}

    def program():
        try:
            load_from_pulumi()
        except KsecretsError as exc:
            holder["exc"] = exc

    run_program(program, stack="staging", config=_pulumi_config(bad))
    assert "exc" in holder, "a misspelt k8s-secrets: key was accepted under Pulumi"
    assert str(holder["exc"]) == str(from_file.value)
    assert "monitorng" in str(holder["exc"]) and "did you mean" in str(holder["exc"])


def test_each_stack_names_its_own_cluster():
    """No stack follows the current kubeconfig context: the explicit provider takes the stack's
    own `kubernetes:context`, and a stack without one stops with one line naming the key."""
    from components.cluster import cluster_provider
    from ksecrets.errors import ConfigError

    for stack_file in stack_files(ROOT):
        config = _pulumi_config(stack_file)
        assert config.get("kubernetes:context"), f"{stack_file.name}: no kubernetes:context"
        mocks, _ = run_program(
            lambda: cluster_provider(stack_file.stem.split(".", 1)[1]),
            stack=stack_file.stem.split(".", 1)[1],
            config=config,
        )
        providers = [r for r in mocks.resources if r.type == "pulumi:providers:kubernetes"]
        assert [p.inputs.get("context") for p in providers] == [config["kubernetes:context"]]

    holder = {}

    def program():
        try:
            cluster_provider("staging")
        except ConfigError as exc:
            holder["exc"] = exc

    config = {k: v for k, v in _pulumi_config(ROOT / "Pulumi.staging.yaml").items() if not k.startswith("kubernetes:")}
    run_program(program, stack="staging", config=config)
    assert str(holder["exc"]).startswith("Pulumi.staging.yaml: kubernetes:context: is required")

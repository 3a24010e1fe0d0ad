"""Issue 22 item 7: the version distances (README "Running it with Pulumi", versions), and what they
could break.

The SDK (pulumi-kubernetes 4.34.2, from PyPI) is nine minor versions ahead of the provider the
module proxy serves (4.25.0, tools/pulumi-kubernetes). What the SDK knows and the provider does
not only matters if the program sends it: every resource type and every field, at every depth,
that the program registers for each stack (under mocks, as tests/components do) must be in the
real provider's own schema (`pulumi package get-schema` of the built binary), and so must the
provider config the program passes. CRD kinds (SealedSecret, HelmRelease...) are CustomResources:
the provider takes any, with no schema of their fields, so they are left out. CI runs provider
4.34.2 itself (the plugin the SDK asks for); this is about the suite's 4.25.0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.platform import Platform
from ksecrets.config import load_stack_file, stack_files
from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.pulumi_harness import run_program


def _schema(e2e_dir: Path) -> dict:
    from tests.e2e.harness.pulumi import PulumiProject

    bins = require("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
    project = PulumiProject(e2e_dir / "pulumi-schema", bins, "staging")
    out = project.run(
        "package", "get-schema", str(project.bin / "pulumi-resource-kubernetes"), stack=False, timeout=600
    )
    return json.JSONDecoder().raw_decode(out.out[out.out.index("{") :])[0]  # warnings may surround it


def _crd_types() -> set[str]:
    """The type tokens of the CRD kinds the program registers as CustomResources (vendored CRDs)."""
    import yaml

    out = set()
    for path in sorted((ROOT / "ksecrets" / "schemas" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                out |= {f"kubernetes:{spec['group']}/{v['name']}:{spec['names']['kind']}" for v in spec["versions"]}
    return out


def _unknown(value: Any, spec: dict, schema: dict, where: str) -> list[str]:
    """Paths in `value` that the schema's property spec does not describe."""
    if value is None:
        return []
    ref = spec.get("$ref", "")
    if ref.startswith("#/types/"):
        spec = schema["types"][ref[len("#/types/") :]]
    if spec.get("type") == "object" and "properties" in spec:
        if not isinstance(value, dict):
            return []
        out = []
        for key, sub in value.items():
            if key not in spec["properties"]:
                out.append(f"{where}.{key}")
            else:
                out += _unknown(sub, spec["properties"][key], schema, f"{where}.{key}")
        return out
    if spec.get("type") == "array" and isinstance(value, list):
        return [u for i, v in enumerate(value) for u in _unknown(v, spec.get("items", {}), schema, f"{where}[{i}]")]
    return []  # maps (additionalProperties), strings, numbers, any


def test_the_provider_knows_every_type_and_field_the_program_sends(e2e_dir: Path):
    schema = _schema(e2e_dir)
    assert schema["name"] == "kubernetes" and schema["version"].startswith("4.25."), schema.get("version")
    problems, checked = [], 0
    crds = _crd_types()
    for stack_file in stack_files(ROOT):
        cfg = load_stack_file(stack_file)
        mocks, _ = run_program(lambda cfg=cfg: Platform(cfg.stack, cfg), stack=cfg.stack)
        for r in mocks.resources:
            if r.type == "pulumi:providers:kubernetes":
                spec = {"type": "object", "properties": schema["provider"]["inputProperties"]}
            elif r.type in crds:
                continue  # a CustomResource: the provider takes any CRD kind, its fields unchecked
            elif r.type.startswith("kubernetes:"):
                if r.type not in schema["resources"]:
                    problems.append(f"{stack_file.name}: {r.type}: not a resource of provider {schema['version']}")
                    continue
                spec = {"type": "object", "properties": schema["resources"][r.type]["inputProperties"]}
            else:
                continue  # components, the dynamic Vault bootstrap
            checked += 1
            problems += [f"{stack_file.name}: {r.type} {r.name}: {u}" for u in _unknown(r.inputs, spec, schema, "")]
    assert checked > 10  # every built-in object of both stacks and their providers (17 on this tree)
    assert problems == [], "\n".join(problems)
    # The provider config the program sets (components/cluster.py).
    assert {"context", "kubeconfig"} <= set(schema["provider"]["inputProperties"])


def test_the_checker_finds_a_field_the_provider_lacks(e2e_dir: Path):
    """The oracle is alive: a field 4.25's Deployment spec does not have is reported."""
    schema = _schema(e2e_dir)
    spec = {"type": "object", "properties": schema["resources"]["kubernetes:apps/v1:Deployment"]["inputProperties"]}
    value = {"spec": {"replicas": 1, "notAField": 1, "template": {"spec": {"containers": [{"name": "a", "nope": 1}]}}}}
    assert _unknown(value, spec, schema, "") == [".spec.notAField", ".spec.template.spec.containers[0].nope"]

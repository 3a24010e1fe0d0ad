"""Every exported object against real oracles: kubernetes-validate (strict) for core kinds, the
upstream CRD schemas for CRD kinds, and `kubectl kustomize` for every layer of every stack."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ksecrets.config import load_stack_file, stack_files
from ksecrets.usecases.export import render
from ksecrets.manifests import sealed_secrets
from ksecrets.validation import KUBERNETES_VERSION
from tests.conftest import CHARTS, FIXTURES, ROOT, SHARED
from tests.conftest import CRDS as CRD_DIR

STACKS = stack_files(ROOT)


def _crd_schemas():
    out = {}
    for path in CRD_DIR.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for v in crd["spec"]["versions"]:
                out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"][
                    "openAPIV3Schema"
                ]
    return out


CRDS = _crd_schemas()


def _exported(stack_file):
    cfg = load_stack_file(stack_file)
    rendered = render(cfg)
    for rel, data in rendered.files.items():
        if rel.endswith("/kustomization.yaml"):
            continue
        yield rel, yaml.safe_load(data)


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.stem)
def test_every_exported_object_validates_against_its_real_schema(stack_file):
    checked = 0
    for rel, obj in _exported(stack_file):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRDS:
            errors = sorted(e.message for e in jsonschema.Draft7Validator(CRDS[key]).iter_errors(obj))
            assert errors == [], f"{rel}: {errors}"
        else:
            # Raises SchemaNotFoundError for a kind it does not know: an unknown kind fails.
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def test_strict_validation_rejects_unknown_fields():
    """The oracle is real: it does fail on a misspelt field."""
    cfg = load_stack_file(ROOT / "Pulumi.staging.yaml")
    deployment = next(obj for obj in render(cfg).objects["apps"] if obj["kind"] == "Deployment")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(
            {**bad, "apiVersion": "example.com/v1", "kind": "Widget"}, KUBERNETES_VERSION, strict=True
        )


@pytest.mark.oracle
@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("layer", ["infrastructure", "apps"])
def test_kubectl_kustomize_builds_every_layer(stack_file, layer, tmp_path):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (bash .ci/tools.sh installs it)"
    cfg = load_stack_file(stack_file)
    rendered = render(cfg)
    for rel, data in rendered.files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    proc = subprocess.run([kubectl, "kustomize", str(tmp_path / layer)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    expected = rendered.objects[layer]
    assert len(built) == len(expected)
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, expected))
    if layer == "infrastructure":
        assert built[0]["kind"] == "Namespace"  # kustomize puts namespaces first


@pytest.mark.parametrize(
    "shared_dir,vendored,pattern",
    [
        ("schemas/crds", CRD_DIR, "*.yaml"),
        ("schemas/charts", CHARTS, "*"),
        ("vectors", FIXTURES / "vectors", "*"),
    ],
)
def test_vendored_copies_equal_the_shared_originals(shared_dir, vendored, pattern):
    """The vendored data (CRDs shipped with the package, chart values and vectors under
    tests/fixtures/) byte for byte equal the project's shared originals, when those are beside
    this checkout; a user's clone has no ../shared and the tests run on the vendored copies."""
    shared = SHARED / shared_dir
    if not shared.is_dir():
        pytest.skip(f"../shared/{shared_dir} is not beside this checkout")
    names = sorted(p.name for p in shared.glob(pattern) if p.is_file())
    assert sorted(p.name for p in vendored.glob(pattern) if p.is_file()) == names
    match, mismatch, errors = filecmp.cmpfiles(shared, vendored, names, shallow=False)
    assert (mismatch, errors) == ([], [])


def _keys(values, prefix=""):
    for k, v in values.items():
        yield f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _keys(v, f"{prefix}{k}.")


def test_sealed_secrets_values_exist_in_the_chart():
    values_file = CHARTS / "sealed-secrets-values.yaml"
    chart = yaml.safe_load(values_file.read_text())
    chart_keys = set(_keys(chart))
    for stack_file in STACKS:
        cfg = load_stack_file(stack_file)
        ours = sealed_secrets.controller_values(cfg)
        for key in _keys(ours):
            top = key.split(".")
            # Free-form maps (labels, resources) may hold any key below their own.
            if any(".".join(top[:i]) in {"resources", "metrics.serviceMonitor.labels"} for i in range(1, len(top))):
                continue
            assert key in chart_keys, f"{stack_file.name}: sealed-secrets value {key} is not in the chart"
        assert ours["fullnameOverride"] == "sealed-secrets-controller"
    release = next(
        o
        for o in render(load_stack_file(ROOT / "Pulumi.staging.yaml")).objects["infrastructure"]
        if o["kind"] == "HelmRelease" and o["metadata"]["name"] == "sealed-secrets"
    )
    assert release["spec"]["chart"]["spec"]["version"].startswith("2.18.")
    assert release["spec"]["targetNamespace"] == "kube-system"

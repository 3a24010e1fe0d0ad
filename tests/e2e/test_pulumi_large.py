"""A stack too large for the engine's PULUMI_CONFIG, run by the real engine with its big keys in
files (README "Large stacks").

Real: the Pulumi CLI, engine, Python host and Kubernetes provider (tools/), the kernel's refusal
of an environment string over 128 KiB, kube-apiserver + controllers. Simulated: helm-controller
(HelmReleases marked Ready, tests/e2e/harness/pulumi.py).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from bench.export import stack_doc
from ksecrets import yamlio
from ksecrets.config import load_stack_file
from ksecrets.config.includes import ENGINE_CONFIG_LIMIT, engine_config_size, project_defaults
from ksecrets.usecases.export import render
from ksecrets.manifests.plan import object_id
from ksecrets.usecases.stack_facts import plan_stack
from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import bootstrap_flux
from tests.e2e.harness.pulumi import HelmReleaseReady, PulumiProject
from tests.e2e.test_pulumi import PULUMI, PULUMI_ONLY, _differences, _path

APPS = 60  # ~155 KiB of config inline: over the limit, and few objects (~360) for a quick up


def ks(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    return subprocess.run([sys.executable, "-m", "ksecrets", *args], cwd=cwd, capture_output=True, text=True, env=env)


def _exported(stack_file: Path) -> list[dict]:
    cfg = load_stack_file(stack_file)
    flux_only = {object_id(p.obj) for p in plan_stack(cfg) if not p.pulumi}
    rendered = render(cfg)
    return [o for layer in ("infrastructure", "apps") for o in rendered.objects[layer] if object_id(o) not in flux_only]


def test_a_stack_over_the_limit_runs_with_its_sealed_values_in_a_file(cluster_factory, e2e_dir: Path):
    bins = require(*PULUMI)
    cluster = cluster_factory("pulumi-large")
    bootstrap_flux(cluster)
    doc = stack_doc(APPS)
    doc["config"]["kubernetes:context"] = "e2e"
    defaults = project_defaults(ROOT)
    assert engine_config_size(doc["config"], defaults) > ENGINE_CONFIG_LIMIT
    project = PulumiProject(
        e2e_dir / "pulumi-large", bins, "big", kubeconfig=cluster.kubeconfig, stack_file=yamlio.dump(doc), context=None
    ).init()
    stack_file = project.project / "Pulumi.big.yaml"

    # Inline: the engine cannot even start the program, and doctor says why first.
    inline = project.run("preview", check=False)
    assert not inline.ok and "argument list too long" in inline.out, inline.out[-2000:]
    res = ks("doctor", "--stack", "big", cwd=project.project)
    assert res.returncode == 1 and "PULUMI_CONFIG" in res.stdout and "ksecrets stack split --stack big" in res.stdout

    # Sealed values (and apps) in files beside the stack file: the same model, a small config.
    before = load_stack_file(stack_file)
    res = ks("stack", "split", "--stack", "big", cwd=project.project)
    assert res.returncode == 0, res.stderr
    assert load_stack_file(stack_file) == before
    config = yaml.safe_load(stack_file.read_text())["config"]
    assert config["k8s-secrets:sealed"] == "stacks/big/sealed.yaml"
    assert engine_config_size(config, defaults) < 4096
    assert ks("doctor", "--stack", "big", cwd=project.project).returncode == 0

    preview = project.run("preview")
    assert preview.ok
    with HelmReleaseReady(cluster):
        project.run("up", "--yes", "--skip-preview", timeout=1800)
    assert project.run("preview", "--expect-no-changes", timeout=1800).ok

    problems = []
    objects = _exported(stack_file)
    assert sum(o["kind"] == "SealedSecret" for o in objects) == APPS
    for obj in objects:
        live = cluster.get(_path(obj))
        if live is None:
            problems.append(f"{_path(obj)}: not on the server")
            continue
        live = copy.deepcopy(live)
        annotations = live["metadata"].get("annotations") or {}
        for key in PULUMI_ONLY:
            annotations.pop(key, None)
        problems += [f"{_path(obj)}{d}" for d in _differences(obj, live)]
    assert problems == [], "\n".join(problems[:20])


def test_the_measure_equals_the_real_pulumi_config(e2e_dir: Path):
    """A program that records PULUMI_CONFIG as the engine set it: its length is what doctor measures
    (secure values decrypted, structured values as JSON, Pulumi.yaml's defaults included)."""
    bins = require(*PULUMI)
    doc = stack_doc(3)
    doc["config"]["k8s-secrets:apps"][0]["deployments"][0]["env"] = {"A_B": "DATABASE_URL"}
    doc["config"]["k8s-secrets:note"] = {"text": "<&> é ü", "n": 3, "ok": True, "f": 1.5}
    project = PulumiProject(e2e_dir / "pulumi-measure", bins, "measure", stack_file=yamlio.dump(doc), context=None)
    seen = e2e_dir / "pulumi-measure" / "seen.json"
    (project.project / "__main__.py").write_text(
        "import json, os\n"
        f"open({str(seen)!r}, 'w').write(json.dumps({{'n': len(os.environ['PULUMI_CONFIG'].encode()), "
        "'keys': json.loads(os.environ.get('PULUMI_CONFIG_SECRET_KEYS') or '[]')}))\n"
    )
    project.init()
    project.run("config", "set", "--secret", "k8s-secrets:token", "not-a-real-token-0123456789")
    project.run("config", "set", "--secret", "--path", "k8s-secrets:manualValues.web-secrets.PASSWORD", "pw-42")
    project.run("preview")
    real = json.loads(seen.read_text())
    assert sorted(real["keys"]) == ["k8s-secrets:manualValues", "k8s-secrets:token"]
    config = yaml.safe_load((project.project / "Pulumi.measure.yaml").read_text())["config"]
    assert engine_config_size(config, project_defaults(ROOT)) == real["n"]

"""The CrossGuard policies, on the resources the program registers under Pulumi mocks.

Each policy: the program's own resources pass (and the check is not vacuous: the resource kinds
it looks at are there), and a violating variant of a registered resource fails with the exact
message. `pack.evaluate` runs the ResourceValidationPolicy objects the PolicyPack serves.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from components.platform import Platform
from ksecrets.config import load_stack_file
from components.pulumi_source import load_from_pulumi, manual_value_outputs
from policy import pack, rules
from tests.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[2]
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HELM_RELEASE = "kubernetes:helm.toolkit.fluxcd.io/v2:HelmRelease"
SECRET_POLICY = "no-secret-data-in-gitops-stack"


@pytest.fixture(autouse=True)
def _clean_pulumi_config():
    """The harness sets process-wide Pulumi config; the backend lookup must not see a stale one."""
    pulumi.runtime.set_all_config({})
    yield
    pulumi.runtime.set_all_config({})


def registered(stack: str) -> list:
    cfg = load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    mocks, _ = run_program(lambda: Platform(cfg.stack, cfg), stack=cfg.stack)
    pulumi.runtime.set_all_config({})
    return [r for r in mocks.resources if r.custom]


def urn(stack: str, r) -> str:
    return f"urn:pulumi:{stack}::k8s-secrets::{r.type}::{r.name}"


def one(resources, type_: str):
    found = [r for r in resources if r.type == type_]
    assert found, f"the program registers no {type_}"
    return found[0]


MANUAL_CONFIG = {
    "k8s-secrets:backend": "manual",
    "k8s-secrets:apps": [
        {
            "name": "my-app",
            "namespace": "my-app",
            "serviceAccount": "my-app",
            "secretName": "my-app-secrets",
            "deployments": [{"name": "my-app", "image": "ghcr.io/stefanprodan/podinfo:6.7.1"}],
        }
    ],
    "k8s-secrets:manualValues": {"my-app-secrets": {"API_KEY": "policy-test-value-1"}},
}


@pytest.fixture(scope="module")
def manual_resources():
    """A manual-backend stack (`dev`), as __main__.py runs it: the program registers a v1 Secret."""

    def program():
        cfg, manual = load_from_pulumi()
        return Platform(cfg.stack, cfg, manual_values=manual_value_outputs(cfg, manual))

    mocks, _ = run_program(program, stack="dev", config=MANUAL_CONFIG)
    pulumi.runtime.set_all_config({})
    return [r for r in mocks.resources if r.custom]


# --- the program's own resources pass -------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_registered_resources_pass_every_policy(stack):
    resources = registered(stack)
    for r in resources:
        assert pack.evaluate(r.type, r.inputs, urn=urn(stack, r), name=r.name) == {}, r.name
    # Not vacuous: each resource-specific policy had something to look at.
    roles = [r for r in resources if r.type == ROLE]
    assert roles and all(any(rules._touches_secrets(x) for x in r.inputs["rules"]) for r in roles)
    spec = rules.pod_spec(DEPLOYMENT, one(resources, DEPLOYMENT).inputs)
    assert any(rules.reads_secrets(c, set()) for c in spec["containers"])
    assert len([r for r in resources if r.type == HELM_RELEASE]) >= 1


FIXTURE_STACKS = [
    ROOT / "tests/jobs/rotate/fixtures/Pulumi.rotating.yaml",
    ROOT / "tests/vault/fixtures/Pulumi.vaultdb.yaml",
]
CRONJOB = "kubernetes:batch/v1:CronJob"


def registered_file(path: Path) -> list:
    cfg = load_stack_file(path)
    mocks, _ = run_program(lambda: Platform(cfg.stack, cfg), stack=cfg.stack)
    pulumi.runtime.set_all_config({})
    return [r for r in mocks.resources if r.custom]


@pytest.mark.parametrize("path", FIXTURE_STACKS, ids=lambda p: p.name)
def test_fixture_stacks_with_rotation_cronjobs_pass(path):
    resources = registered_file(path)
    config = {SECRET_POLICY: {"backend": "vault"}}
    for r in resources:
        assert pack.evaluate(r.type, r.inputs, name=r.name, config=config) == {}, r.name
    assert any(r.type == CRONJOB for r in resources)


def test_registered_rotation_cronjob_as_root_fails():
    (cron,) = [r for r in registered_file(FIXTURE_STACKS[0]) if r.type == CRONJOB and r.name.endswith("api-key")]
    obj = copy.deepcopy(cron.inputs)
    spec = rules.pod_spec(CRONJOB, obj)
    assert rules.reads_secrets(spec["containers"][0], rules._secret_volumes(spec))
    # As registered, numbers are floats (protobuf): runAsUser 10001.0 with runAsNonRoot.
    assert spec["securityContext"]["runAsUser"] == 10001.0
    del spec["securityContext"]["runAsNonRoot"], spec["containers"][0]["securityContext"]["runAsNonRoot"]
    assert rules.non_root_violations(CRONJOB, obj) == []  # a non-zero uid alone is non-root
    spec["containers"][0]["securityContext"]["runAsUser"] = 0.0
    assert pack.evaluate(CRONJOB, obj) == {
        "secret-readers-run-as-non-root": [
            "CronJob my-app/my-app-rotate-api-key: containers[0] (rotate) reads a Secret but may run as root "
            "(set runAsNonRoot: true, or a non-zero runAsUser)"
        ]
    }


def test_backend_comes_from_the_stack_file_by_urn():
    assert pack.stack_from_urn("urn:pulumi:staging::k8s-secrets::kubernetes:core/v1:Secret::x") == "staging"
    assert pack.backend_from_stack_file("staging") == "sealed-secrets"
    assert pack.backend_from_stack_file("production") == "vault"
    assert pack.backend_from_stack_file("no-such-stack") is None


# --- 1. Secret data in GitOps stacks ------------------------------------------------------------


def test_manual_secret_passes_in_a_manual_stack(manual_resources):
    secret = one(manual_resources, rules.SECRET)
    assert rules.secret_data_violations(secret.type, secret.inputs, "manual") == []
    config = {SECRET_POLICY: {"backend": "manual"}}
    assert pack.evaluate(secret.type, secret.inputs, urn=urn("dev", secret), config=config) == {}


def test_manual_secret_backend_from_stack_config(manual_resources):
    """The Pulumi CLI hands the policy process the stack's config; the pack reads the backend there."""
    secret = one(manual_resources, rules.SECRET)
    pulumi.runtime.set_all_config({"k8s-secrets:backend": "manual"})
    assert pack.evaluate(secret.type, secret.inputs, urn=urn("dev", secret)) == {}


@pytest.mark.parametrize(
    "stack,backend,remedy",
    [
        ("staging", "sealed-secrets", "seal them (ksecrets seal) or push them to Vault (ksecrets vault push)"),
        ("production", "vault", "seal them (ksecrets seal) or push them to Vault (ksecrets vault push)"),
    ],
)
def test_secret_with_data_fails_in_gitops_stacks(manual_resources, stack, backend, remedy):
    secret = one(manual_resources, rules.SECRET)
    got = pack.evaluate(secret.type, secret.inputs, urn=urn(stack, secret))
    assert got == {
        SECRET_POLICY: [
            f"Secret my-app/my-app-secrets has stringData in a {backend} stack: its values would leave the "
            f"{backend} backend; {remedy}"
        ]
    }
    assert "policy-test-value-1" not in str(got)


def test_secret_without_data_passes_and_unknown_backend_fails(manual_resources):
    secret = copy.deepcopy(one(manual_resources, rules.SECRET).inputs)
    assert pack.evaluate(rules.SECRET, secret, urn="urn:pulumi:nowhere::p::t::n") == {
        SECRET_POLICY: [
            "Secret my-app/my-app-secrets has stringData, and the stack's backend is unknown "
            "(set k8s-secrets:backend, or the policy's `backend` config)"
        ]
    }
    secret["stringData"] = {}
    secret["data"] = {"a": ""}
    assert pack.evaluate(rules.SECRET, secret, urn="urn:pulumi:staging::p::t::n") == {}


# --- 2. Roles on secrets ----------------------------------------------------------------------


def test_role_violations():
    role = copy.deepcopy(one(registered("staging"), ROLE).inputs)
    name = "my-app/my-app-secret-reader"
    listing = copy.deepcopy(role)
    listing["rules"][0]["verbs"] = ["get", "list", "watch"]
    assert rules.role_violations(ROLE, listing) == [f"Role {name}: rules[0] grants list, watch on secrets"]

    star = copy.deepcopy(role)
    star["rules"][0]["verbs"] = ["*"]
    del star["rules"][0]["resourceNames"]
    assert rules.role_violations(ROLE, star) == [
        f"Role {name}: rules[0] touches secrets without resourceNames",
        f"Role {name}: rules[0] grants * on secrets",
    ]

    wildcard = copy.deepcopy(role)
    wildcard["rules"].append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]})
    assert pack.evaluate(ROLE, wildcard) == {
        "secret-roles-least-privilege": [f"Role {name}: rules[1] touches secrets without resourceNames"]
    }

    other = copy.deepcopy(role)
    other["rules"] = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["secrets"], "verbs": ["list"]},
    ]
    assert rules.role_violations(ROLE, other) == []

    cluster = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
    assert rules.role_violations(cluster, {"metadata": {"name": "r"}, "rules": listing["rules"]}) == [
        "ClusterRole r: rules[0] grants list, watch on secrets"
    ]


# --- 3. non-root secret readers -----------------------------------------------------------------


def _deployment():
    return copy.deepcopy(one(registered("staging"), DEPLOYMENT).inputs)


def test_secret_reader_running_as_root_fails():
    message = (
        "Deployment my-app/my-app: containers[0] (my-app) reads a Secret but may run as root "
        "(set runAsNonRoot: true, or a non-zero runAsUser)"
    )
    d = _deployment()
    spec = d["spec"]["template"]["spec"]
    del spec["securityContext"]["runAsNonRoot"]
    del spec["containers"][0]["securityContext"]["runAsNonRoot"]
    del spec["securityContext"]["runAsUser"]  # a non-zero uid alone is non-root (see below)
    assert pack.evaluate(DEPLOYMENT, d) == {"secret-readers-run-as-non-root": [message]}

    d = _deployment()
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    assert rules.non_root_violations(DEPLOYMENT, d) == [message]

    d = _deployment()
    spec = d["spec"]["template"]["spec"]
    spec["securityContext"] = {"runAsUser": 1000}
    spec["containers"][0]["securityContext"] = {}
    assert rules.non_root_violations(DEPLOYMENT, d) == []  # a non-zero uid from the pod is non-root


def test_root_container_that_reads_no_secret_is_not_this_policys_business():
    d = _deployment()
    spec = d["spec"]["template"]["spec"]
    spec["securityContext"] = {}
    c = spec["containers"][0]
    c["securityContext"] = {}
    del c["envFrom"], c["env"]
    assert rules.non_root_violations(DEPLOYMENT, d) == []


def test_cronjob_and_pod_that_mount_secrets():
    cron = {
        "metadata": {"name": "rotate", "namespace": "my-app"},
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "volumes": [{"name": "creds", "secret": {"secretName": "my-app-secrets"}}],
                            "containers": [
                                {
                                    "name": "rotator",
                                    "image": "x",
                                    "volumeMounts": [{"name": "creds", "mountPath": "/s"}],
                                }
                            ],
                        }
                    }
                }
            }
        },
    }
    assert rules.non_root_violations("kubernetes:batch/v1:CronJob", cron) == [
        "CronJob my-app/rotate: containers[0] (rotator) reads a Secret but may run as root "
        "(set runAsNonRoot: true, or a non-zero runAsUser)"
    ]
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    assert rules.non_root_violations("kubernetes:batch/v1:CronJob", cron) == []

    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "s"}}]}}],
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "containers": [{"name": "main"}],
        },
    }
    assert rules.non_root_violations("kubernetes:core/v1:Pod", pod) == [
        "Pod p: initContainers[0] (init) reads a Secret but may run as root "
        "(set runAsNonRoot: true, or a non-zero runAsUser)"
    ]


# --- 4. pinned charts ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["~2.18.5", ">=2.0.0", "2.x", "2.18", "v2.18.5", "*", "2.18.5 || 3.0.0"])
def test_helm_release_with_a_range_fails(version):
    hr = copy.deepcopy(one(registered("staging"), HELM_RELEASE).inputs)
    hr["spec"]["chart"]["spec"]["version"] = version
    assert pack.evaluate(HELM_RELEASE, hr) == {
        "helm-chart-version-pinned": [
            f"HelmRelease flux-system/sealed-secrets: spec.chart.spec.version {version!r} is not an exact version "
            "(x.y.z, no range)"
        ]
    }


def test_helm_release_without_version_fails_and_exact_prerelease_passes():
    hr = copy.deepcopy(one(registered("staging"), HELM_RELEASE).inputs)
    assert hr["spec"]["chart"]["spec"]["version"] == "2.18.5"
    del hr["spec"]["chart"]["spec"]["version"]
    assert rules.helm_version_violations(HELM_RELEASE, hr) == [
        "HelmRelease flux-system/sealed-secrets: spec.chart.spec.version is not set (Helm would take the latest chart)"
    ]
    hr["spec"]["chart"]["spec"]["version"] = "2.18.5-rc.1"
    assert rules.helm_version_violations(HELM_RELEASE, hr) == []


# --- the pack itself ----------------------------------------------------------------------------


def test_policies_are_mandatory_and_named():
    from pulumi_policy import EnforcementLevel

    assert [p.name for p in pack.POLICIES] == [
        SECRET_POLICY,
        "secret-roles-least-privilege",
        "secret-readers-run-as-non-root",
        "helm-chart-version-pinned",
        "run-as-numeric-user",
    ]
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in pack.POLICIES)


def test_policy_pack_process_starts_and_serves():
    """`policy/__main__.py` as the Pulumi CLI runs it: it prints the port of its analyzer server."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "policy" / "__main__.py")],
        cwd=ROOT / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit() and int(line) > 0, proc.stderr.read1().decode() if proc.poll() is not None else line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- 5. runAsNonRoot with a numeric user and group ----------------------------------------------


def test_run_as_non_root_without_a_numeric_user_fails():
    """The kubelet refuses runAsNonRoot for an image whose USER is a name (podinfo's is `app`)
    unless runAsUser is numeric: what the program registered before issue 11."""
    d = _deployment()
    spec = d["spec"]["template"]["spec"]
    assert rules.numeric_user_violations(DEPLOYMENT, d) == []
    del spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
    assert pack.evaluate(DEPLOYMENT, d) == {
        "run-as-numeric-user": [
            "Deployment my-app/my-app: containers[0] (my-app) sets runAsNonRoot without a numeric non-zero runAsUser "
            "and runAsGroup: the kubelet refuses an image whose user is a name"
        ]
    }
    spec["containers"][0]["securityContext"]["runAsUser"] = 1000.0  # container over pod, as floats
    assert rules.numeric_user_violations(DEPLOYMENT, d) == [
        "Deployment my-app/my-app: containers[0] (my-app) sets runAsNonRoot without a numeric non-zero runAsGroup: "
        "the kubelet refuses an image whose user is a name"
    ]
    spec["securityContext"]["runAsGroup"] = 1000.0
    assert rules.numeric_user_violations(DEPLOYMENT, d) == []


@pytest.mark.parametrize("path", FIXTURE_STACKS, ids=lambda p: p.name)
def test_every_registered_workload_has_a_numeric_user(path):
    checked = 0
    for r in registered_file(path) + registered("staging"):
        if rules.pod_spec(r.type, r.inputs) is not None:
            assert rules.numeric_user_violations(r.type, r.inputs) == [], r.name
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize(
    "version", ["2.18.5", "1.0.0-rc.1", "1.0.0+build.5", "v2.18.5", "2.018.5", "2.18", "~2.18.5", "2.18.5-", "latest"]
)
def test_config_and_policy_share_one_pinned_version_rule(tmp_path, version):
    """A chartVersion the stack file accepts renders a HelmRelease the policy passes; one it rejects,
    the policy would reject too (`v2.18.5` used to load and then fail `pulumi preview`)."""
    from ksecrets.errors import ConfigError
    from ksecrets.usecases.stack_facts import plan_stack

    text = (ROOT / "Pulumi.staging.yaml").read_text()
    assert "chartVersion: 2.18.5" in text
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "staging.pem").write_bytes((ROOT / "certs" / "staging.pem").read_bytes())
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(text.replace("chartVersion: 2.18.5", f'chartVersion: "{version}"', 1))
    hr = one(registered("staging"), HELM_RELEASE).inputs
    hr = copy.deepcopy(hr)
    hr["spec"]["chart"]["spec"]["version"] = version
    policy_ok = rules.helm_version_violations(HELM_RELEASE, hr) == []
    try:
        cfg = load_stack_file(stack_file)
    except ConfigError as exc:
        assert "sealedSecrets.chartVersion" in str(exc) and not policy_ok, str(exc)
    else:
        assert policy_ok
        release = next(
            p.obj
            for p in plan_stack(cfg)
            if p.obj["kind"] == "HelmRelease" and p.obj["metadata"]["name"] == "sealed-secrets"
        )
        assert release["spec"]["chart"]["spec"]["version"] == version
        assert rules.helm_version_violations(HELM_RELEASE, release) == []
    assert policy_ok == (version in {"2.18.5", "1.0.0-rc.1", "1.0.0+build.5"})

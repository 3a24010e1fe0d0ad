"""Issue 21 §5, first bullet: a fleet of two clusters end to end, on both backends.

Two API servers, A and B, each with its own real sealed-secrets controller (its own key, made by
the controller itself at its first start). The workspace is a copy of the repository's ``staging`` stack plus what
`ksecrets` writes:

- sealed-secrets, environment ``staging``: ``staging`` (cluster A, the repository's stack) and
  ``stg-b`` (cluster B), made by ``ksecrets stack new stg-b --env staging``, which also writes
  environments/staging.yaml from Pulumi.staging.yaml (README: Fleets). Each stack's certificate is
  its own controller's; a ``seal --env staging`` whose env file lacks a key staging's committed
  entry holds (sealed for the repository's certificate) is refused with one line and changes
  neither file; then ONE ``ksecrets seal --env staging`` seals the env file into both stacks,
  ``ksecrets export --env staging`` writes each cluster's SealedSecret, and each controller
  unseals its own into a Secret byte-equal to what ``kubectl create secret --from-env-file``
  makes of the file, while the other cluster's copy is refused by the controller itself
  (``Synced=False``, its own message), no Secret made.
  The Vault half (one Vault, an operator per cluster) follows once its programs are built.

Simulated or adjusted, and why:
- two API servers stand for two clusters; the stacks' ``kubernetes:context`` names no kubeconfig
  here: the test addresses each API server itself;
- no kubelet: no Pod runs. The controllers run as local processes (harness/sealed_secrets.py),
  and no workload reads a Secret;
- ``kubeseal --fetch-cert > certs/<stack>.pem`` goes through the API server's service proxy to
  the controller's Pod, which does not exist: each certificate is read from the same handler,
  the controller's ``/v1/cert.pem``, on its 127.0.0.1 port;
- only the SealedSecret of each exported stack is applied (server-side, kustomize-controller's
  field manager), not its whole ``k8s/<stack>/``.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import FIELD_MANAGER
from tests.e2e.harness.kube import Cluster
from tests.e2e.harness.procs import wait_for
from tests.e2e.harness.sealed_secrets import (
    SealedSecretsController,
    chart_flags,
    kubectl_secret_data,
    ksecrets_run,
    secret_data,
    synced,
)

SEALED = {"a": "staging", "b": "stg-b"}  # environment staging, sealed-secrets
OTHER = {"a": "b", "b": "a"}
SECRET, APP_NS = "my-app-secrets", "my-app"

# kubectl's env-file rules: `=` inside a value, UTF-8, quotes and inner spaces kept, an empty value.
ENV_FILE = (
    "API_KEY=ak-fleet-0123456789\n"
    "DATABASE_URL=postgres://app:p4ss=w0rd@db.example:5432/app?sslmode=require\n"
    "GREETING=grüße aus A und B ✓\n"
    'QUOTED="kept as written"\n'
    "FEATURE_FLAGS=\n"
)
ENV_VALUES = {
    "API_KEY": "ak-fleet-0123456789",
    "DATABASE_URL": "postgres://app:p4ss=w0rd@db.example:5432/app?sslmode=require",
    "GREETING": "grüße aus A und B ✓",
    "QUOTED": '"kept as written"',
    "FEATURE_FLAGS": "",
}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(folder: Path, pattern: str) -> dict:
    (path,) = sorted(folder.glob(pattern))
    (doc,) = _docs(path)
    return doc


# --- the fleet ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(cluster_factory, e2e_dir: Path, sealed_run_env):
    """The two API servers and the workspace (a copy of the repository's staging stack)."""
    work = e2e_dir / "fleet-two"
    root = work / "repo"
    (root / "certs").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy2(ROOT / name, root / name)
    shutil.copy2(ROOT / "certs" / "staging.pem", root / "certs" / "staging.pem")  # replaced by A's below
    started = time.monotonic()
    clusters: dict[str, Cluster] = {}
    try:
        for c in ("a", "b"):
            clusters[c] = cluster_factory(f"fleet-{c}")
        print(f"\nfleet: 2 API servers up in {time.monotonic() - started:.1f} s")
        yield {"root": root, "work": work, "clusters": clusters, "env": dict(sealed_run_env)}
    finally:
        for cluster in clusters.values():  # by PID, now rather than at the session's end
            cluster.stop()


@pytest.fixture(scope="module")
def controllers(fleet):
    """The real sealed-secrets controller on each API server, each with the key it makes itself."""
    from ksecrets.config.load import load_stack
    from ksecrets.manifests.sealed_secrets import controller_values

    binary = require("sealed-secrets-controller")["sealed-secrets-controller"]
    flags = chart_flags(controller_values(load_stack("staging", fleet["root"])))
    made: dict[str, SealedSecretsController] = {}
    try:
        for c, cluster in fleet["clusters"].items():
            # no key Secret applied: the controller makes its own sealing key at its first start
            ctl = SealedSecretsController(cluster, fleet["work"] / f"sealed-{c}", binary, flags=flags)
            ctl.install_rbac()
            made[c] = ctl
            ctl.start()
        yield made
    finally:
        for ctl in made.values():
            ctl.stop()


def _ksecrets(fleet, *args: str):
    return ksecrets_run(*args, cwd=fleet["root"], env=fleet["env"])


# --- sealed-secrets: one seal --env, each cluster its own key -----------------------------------


def test_one_seal_env_reaches_both_clusters_and_each_controller_unseals_only_its_own(fleet, controllers):
    root, clusters = fleet["root"], fleet["clusters"]

    new = _ksecrets(fleet, "stack", "new", SEALED["b"], "--env", "staging").stdout
    assert f"Pulumi.{SEALED['b']}.yaml: written" in new, new
    assert "environments/staging.yaml: written from Pulumi.staging.yaml" in new, new
    own = yaml.safe_load((root / f"Pulumi.{SEALED['b']}.yaml").read_text())["config"]
    assert own["k8s-secrets:extends"] == "environments/staging.yaml"
    assert own["k8s-secrets:sealedSecrets"] == {"certificate": f"certs/{SEALED['b']}.pem"}

    # Each stack's certificate is its own controller's (README: kubeseal --fetch-cert > certs/<stack>.pem).
    certs = {}
    for c, stack in SEALED.items():
        pem = controllers[c].cert_pem()
        assert pem is not None and b"BEGIN CERTIFICATE" in pem
        (root / "certs" / f"{stack}.pem").write_bytes(pem)
        certs[c] = pem
    assert certs["a"] != certs["b"]

    env_file = fleet["work"] / ".env.staging"
    # staging's committed entry holds API_KEY, sealed for the repository's certificate: a run that
    # does not give it is refused, and neither cluster's file changes (one transaction).
    env_file.write_text(ENV_FILE.replace("API_KEY=ak-fleet-0123456789\n", ""), encoding="utf-8")
    files = {p.name: p.read_bytes() for p in sorted(root.glob("Pulumi.*.yaml"))}
    res = ksecrets_run(
        "seal",
        "--env",
        "staging",
        "--name",
        SECRET,
        "--from-env-file",
        str(env_file),
        cwd=root,
        env=fleet["env"],
        expect_ok=False,
    )
    assert res.returncode != 0 and res.stderr.strip() == (
        "ksecrets: Pulumi.staging.yaml: k8s-secrets:sealed[0]: API_KEY not in the input but sealed for another "
        "certificate or scope; give their values, pass --prune to drop them, or run `ksecrets reseal`"
    ), res.stderr
    assert {p.name: p.read_bytes() for p in sorted(root.glob("Pulumi.*.yaml"))} == files
    env_file.write_text(ENV_FILE, encoding="utf-8")
    started = time.monotonic()
    res = _ksecrets(fleet, "seal", "--env", "staging", "--name", SECRET, "--from-env-file", str(env_file))
    seal_s = time.monotonic() - started
    out = res.stdout + res.stderr
    for stack in SEALED.values():
        assert f"Pulumi.{stack}.yaml" in out, out
    for value in ENV_VALUES.values():
        assert not value or value not in out, "a value in seal's output"
    _ksecrets(fleet, "export", "--env", "staging")
    exported = {c: _one(root / "k8s" / stack / "apps", "sealedsecret-*.yaml") for c, stack in SEALED.items()}
    for c, ss in exported.items():
        assert ss["metadata"]["name"] == SECRET and ss["metadata"]["namespace"] == APP_NS
        assert sorted(ss["spec"]["encryptedData"]) == sorted(ENV_VALUES), c
    assert exported["a"]["spec"]["encryptedData"] != exported["b"]["spec"]["encryptedData"]

    for cluster in clusters.values():
        cluster.ensure_namespace(APP_NS)

    # The SealedSecret exported for one cluster, applied to the other: its controller refuses it.
    for c, cluster in clusters.items():
        cluster.apply([exported[OTHER[c]]], field_manager=FIELD_MANAGER)
    refusals = {}
    for c, cluster in clusters.items():
        wait_for(
            f"cluster {c}: the other cluster's SealedSecret Synced=False",
            lambda cl=cluster: (synced(cl, APP_NS, SECRET) or {}).get("status") == "False",
            60,
            controllers[c].proc,
        )
        cond = synced(cluster, APP_NS, SECRET)
        assert cond is not None
        refusals[c] = cond["message"]
        assert cond["message"].startswith("no key could decrypt secret"), cond
        for key in ENV_VALUES:
            assert key in cond["message"], cond
        assert secret_data(cluster, APP_NS, SECRET) is None, f"cluster {c}: a Secret from the other cluster's copy"
        unseal_errors = controllers[c].metric("sealed_secrets_controller_unseal_errors_total", reason="unseal")
        assert unseal_errors and unseal_errors >= 1, unseal_errors

    # Its own SealedSecret: unsealed into exactly what kubectl makes of the env file.
    expected = {k: _b64(v) for k, v in ENV_VALUES.items()}
    took = {}
    for c, cluster in clusters.items():
        cluster.apply([exported[c]], field_manager=FIELD_MANAGER)
    for c, cluster in clusters.items():
        started = time.monotonic()
        wait_for(
            f"cluster {c}: Secret {APP_NS}/{SECRET} unsealed by its own controller",
            lambda cl=cluster: secret_data(cl, APP_NS, SECRET) is not None,
            60,
            controllers[c].proc,
        )
        took[c] = time.monotonic() - started
        data = secret_data(cluster, APP_NS, SECRET)
        assert data == expected, (
            f"cluster {c}: keys that differ: {sorted(k for k in expected if data.get(k) != expected[k])}"
        )
        assert data == kubectl_secret_data(cluster, SECRET, APP_NS, env_file)
        assert (synced(cluster, APP_NS, SECRET) or {}).get("status") == "True"
    print(
        f"seal --env staging: {seal_s:.1f} s for 2 clusters; unsealed in "
        + ", ".join(f"{c}: {t:.1f} s" for c, t in took.items())
        + "".join(f"\ncluster {c} refused the other's copy: {m}" for c, m in refusals.items())
    )

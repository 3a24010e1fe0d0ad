"""Issue 9, flow 2: the guide's sealed flow against the real sealed-secrets controller.

Real: kube-apiserver + kube-controller-manager (1.33, built from k8s.io/kubernetes), the
sealed-secrets controller v0.36.6 (built from its module, run as a local process with in-cluster
config: tests/e2e/harness/sealed_secrets.py), its key made by `ksecrets keygen`, the `ksecrets`
CLI (seal --stack, export, reseal), `kubectl create secret --from-env-file` as the oracle of the
expected bytes, `kubectl kustomize` + server-side apply.
Simulated: kustomize-controller and helm-controller (tests/e2e/harness/gitops.py: what they would
apply, applied in their order); the controller's Pod (a local process in a private mount
namespace, not a Pod a kubelet runs). The stack is a copy of the repository's own sealed stack
(unchanged config) whose certificate is replaced by this run's key.

The tests of this module run in order on one controller; the last one renews its key.
"""

from __future__ import annotations

import copy
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ksecrets.config.load import load_stack
from ksecrets.sealing.certs import load_certificate
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import apply_stack
from tests.e2e.harness.sealed_secrets import (
    kubectl_secret_data,
    secret_data,
    sealed_secret,
    synced,
    wait_secret,
)

ELSEWHERE = "ksecrets-e2e-elsewhere"
SCOPES = ("strict", "namespace-wide", "cluster-wide")


def env_text(seed: str) -> str:
    """An env file with what kubectl's rules treat specially: comments, blank lines, leading
    whitespace, '=' and quotes in values, an empty value, UTF-8; fresh random values per run."""
    return "\n".join(
        [
            "# the guide's app secrets",
            f"DATABASE_URL=postgres://app:{seed}=x@db.example:5432/app?sslmode=require",
            "",
            f"   API_KEY=ak-{secrets.token_hex(16)}",
            f'QUOTED="{secrets.token_urlsafe(12)}"',
            "EMPTY=",
            f"UNICODE=héllo wörld ✓ {secrets.token_hex(4)}",
            f"TRAILING=value with trailing spaces {seed}   ",
            "",
        ]
    )


def write_env(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def flow(sealed):
    """Seal one env file per scope into the stack, export it, apply it as Flux would."""
    repo = sealed.repo("flow")
    cfg = load_stack(sealed.stack, repo.root)
    app = cfg.apps[0]
    ns = app.namespace
    names = {"strict": app.secret_name, "namespace-wide": f"{app.name}-shared", "cluster-wide": f"{app.name}-global"}
    envs: dict[str, Path] = {}
    for scope in SCOPES:
        envs[scope] = write_env(sealed.workdir / "env" / f"{scope}.env", env_text(secrets.token_hex(8)))
        repo.seal(names[scope], envs[scope], namespace=ns, scope=scope)
    repo.export()
    started = time.monotonic()
    results = apply_stack(sealed.cluster, repo.k8s_dir)
    applied = time.monotonic()
    expected = {s: kubectl_secret_data(sealed.cluster, names[s], ns, envs[s]) for s in SCOPES}
    for scope in SCOPES:
        wait_secret(sealed.cluster, ns, names[scope], expected[scope], timeout=60, proc=sealed.controller.proc)
    done = time.monotonic()
    print(
        f"\nfigure: sealed flow: apply {applied - started:.2f} s, controller unsealed 3 Secrets "
        f"{done - applied:.2f} s after the apply returned"
    )
    return dict(repo=repo, ns=ns, names=names, envs=envs, expected=expected, results=results)


def test_controller_serves_the_stacks_certificate(sealed):
    """`/v1/cert.pem` of the real controller is exactly certs/<stack>.pem that `ksecrets keygen`
    wrote: the controller took the key Secret we applied and made none of its own.

    kubeseal's `--fetch-cert` reads the same endpoint through the API server's service proxy
    (/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:/proxy/v1/cert.pem).
    That path cannot work here, and the test shows why rather than assuming it: no kubelet runs the
    controller's Pod, so its Service has no endpoint (the proxy finds nothing to reach), and the API server
    refuses an Endpoints object pointing at the controller's real address, 127.0.0.1 ("may not be
    in the loopback range")."""
    ctl = sealed.controller
    served = ctl.cert_pem()
    assert served == sealed.template.cert_path.read_bytes()
    assert load_certificate(sealed.template.cert_path).fingerprint  # a valid, unexpired sealing cert
    keys = ctl.key_secrets()
    assert len(keys) == 1 and yaml.safe_load(sealed.key_manifest)["metadata"]["name"] == keys[0]["metadata"]["name"]

    cluster = sealed.cluster
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sealed-secrets-controller", "namespace": "kube-system"},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": ctl.port}]},
    }
    cluster.apply([svc])
    r = cluster.raw("GET", "/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:/proxy/v1/cert.pem")
    assert r.status_code in (404, 503), (r.status_code, r.text[:200])  # no endpoint behind the Service
    eps = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "sealed-secrets-controller", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": ctl.port}]}],
    }
    res = cluster.apply([eps], check=False)
    assert res.returncode != 0 and "may not be in the loopback range" in res.stderr, res.stderr
    cluster.kubectl("delete", "-n", "kube-system", "service/sealed-secrets-controller")


def test_env_file_to_secret_in_all_three_scopes(sealed, flow):
    """env file → `ksecrets seal --stack` (strict, namespace-wide, cluster-wide) → `ksecrets export`
    (what `make render` runs) → applied as Flux applies it → the real controller writes each Secret with exactly the data
    `kubectl create secret generic --from-env-file` gives for that file, and marks it Synced."""
    cluster, ns = sealed.cluster, flow["ns"]
    assert all(w == [] for r in flow["results"].values() for w in [r.warnings]), "the API server warned"
    for scope in SCOPES:
        name = flow["names"][scope]
        s = cluster.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
        assert s["data"] == flow["expected"][scope]
        assert s["type"] == "Opaque"
        owner = s["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("SealedSecret", name)
        cond = synced(cluster, ns, name)
        assert cond and cond["status"] == "True", cond
        ss = sealed_secret(cluster, ns, name)
        want_annotation = {
            "strict": None,
            "namespace-wide": "sealedsecrets.bitnami.com/namespace-wide",
            "cluster-wide": "sealedsecrets.bitnami.com/cluster-wide",
        }[scope]
        if want_annotation:
            assert ss["metadata"]["annotations"].get(want_annotation) == "true"
    assert flow["repo"].errors == []


def test_changing_one_value_changes_only_that_key(sealed, flow):
    """Per scope: one value changed in the env file and sealed again (KSECRETS_SEAL_KEY set, so the
    other ciphertexts stay byte-identical in the export) → the controller changes that key of the
    Secret and no other."""
    cluster, ns, repo = sealed.cluster, flow["ns"], flow["repo"]
    before_ss = {s: repo.sealed_secret(flow["names"][s])["spec"]["encryptedData"] for s in SCOPES}
    changed_key = {"strict": "API_KEY", "namespace-wide": "DATABASE_URL", "cluster-wide": "EMPTY"}
    for scope in SCOPES:
        env = flow["envs"][scope]
        lines = env.read_text(encoding="utf-8").splitlines()
        key = changed_key[scope]
        lines = [f"{key}=new-{secrets.token_hex(6)}" if l.strip().startswith(f"{key}=") else l for l in lines]
        env.write_text("\n".join(lines) + "\n", encoding="utf-8")
        res = repo.seal(flow["names"][scope], env, namespace=ns)
        assert f"changed: {key}" in res.stderr, res.stderr
    repo.export()
    for scope in SCOPES:
        after = repo.sealed_secret(flow["names"][scope])["spec"]["encryptedData"]
        diff = sorted(k for k in after if after[k] != before_ss[scope].get(k))
        assert diff == [changed_key[scope]], f"{scope}: the export changed {diff}"
    apply_stack(cluster, repo.k8s_dir)
    for scope in SCOPES:
        name = flow["names"][scope]
        new = kubectl_secret_data(cluster, name, ns, flow["envs"][scope])
        wait_secret(cluster, ns, name, new, timeout=60, proc=sealed.controller.proc)
        old = flow["expected"][scope]
        assert sorted(k for k in new if new[k] != old.get(k)) == [changed_key[scope]]
        assert set(new) == set(old)
        flow["expected"][scope] = new


def _copy_to(ss: dict, namespace: str, name: str) -> dict:
    moved = copy.deepcopy(ss)
    moved["metadata"] = {
        "name": name,
        "namespace": namespace,
        "annotations": dict(ss["metadata"].get("annotations") or {}),
    }
    moved["spec"]["template"]["metadata"].update(name=name, namespace=namespace)
    return moved


def test_copied_sealed_secrets_unseal_only_where_their_scope_allows(sealed, flow):
    """A SealedSecret copied elsewhere: strict → refused in another namespace and under another
    name; namespace-wide → unseals under another name, refused in another namespace;
    cluster-wide → unseals anywhere. Refused ones get Synced=False 'no key could decrypt secret'
    from the real controller and no Secret; the controller's metrics count each refusal with
    reason and namespace (`sealed_secrets_controller_unseal_errors_total`, which the
    SealedSecretsUnsealErrors alert reads) and set `condition_info` to -1 (SealedSecretNotSynced)."""
    cluster, ns, repo, ctl = sealed.cluster, flow["ns"], flow["repo"], sealed.controller
    cluster.ensure_namespace(ELSEWHERE)
    errors_before = {
        n: ctl.metric("sealed_secrets_controller_unseal_errors_total", reason="unseal", namespace=n) or 0
        for n in (ns, ELSEWHERE)
    }
    cases = [  # (scope, namespace, name, unseals?)
        ("strict", ELSEWHERE, flow["names"]["strict"], False),
        ("strict", ns, "renamed-strict", False),
        ("namespace-wide", ns, "renamed-shared", True),
        ("namespace-wide", ELSEWHERE, flow["names"]["namespace-wide"], False),
        ("cluster-wide", ELSEWHERE, "renamed-global", True),
    ]
    docs = [_copy_to(repo.sealed_secret(flow["names"][scope]), where, name) for scope, where, name, _ in cases]
    cluster.apply(docs, field_manager="e2e-copy")
    for scope, where, name, unseals in cases:
        label = f"{scope} copy as {where}/{name}"
        if unseals:
            wait_secret(cluster, where, name, flow["expected"][scope], timeout=60, proc=ctl.proc)
            continue
        cluster.wait(f"{label}: Synced=False", lambda: (synced(cluster, where, name) or {}).get("status") == "False")
        cond = synced(cluster, where, name)
        assert "no key could decrypt secret" in cond["message"], f"{label}: {cond}"
        assert secret_data(cluster, where, name) is None, f"{label}: a Secret was written"
        assert (
            ctl.metric("sealed_secrets_controller_condition_info", namespace=where, name=name, condition="Synced") == -1
        ), label
    refused = {n: sum(1 for _, w, _, ok in cases if w == n and not ok) for n in (ns, ELSEWHERE)}
    for n, count in refused.items():
        cluster.wait(
            f"unseal_errors_total{{reason=unseal,namespace={n}}} +{count}",
            lambda n=n, count=count: (
                (ctl.metric("sealed_secrets_controller_unseal_errors_total", reason="unseal", namespace=n) or 0)
                >= errors_before[n] + count
            ),
        )
    # The originals were not disturbed.
    for scope in SCOPES:
        assert secret_data(cluster, ns, flow["names"][scope]) == flow["expected"][scope]
    flow["scrape"] = ctl.metrics()  # for the alert test below (deleting a SealedSecret drops its series)
    flow["refused"] = [(where, name) for _, where, name, ok in cases if not ok]
    for _, where, name, _ in cases:
        cluster.kubectl("delete", "sealedsecret", name, "-n", where)


def _samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)$", line)
        if m and m.group(1) == metric:
            out.append(
                (dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2))), float(m.group(3)))
            )
    return out


def test_the_controllers_real_metrics_fire_the_stacks_alerts(sealed, flow, tmp_path):
    """The series the real controller exposed after the refusals above, fed to `promtool test rules`
    with the stack's exported PrometheusRule: SealedSecretsUnsealErrors fires for each namespace
    with a refusal (reason `unseal`), SealedSecretNotSynced for each refused SealedSecret and for
    no synced one.
    Real: the controller's label names and values, the exported rules, promtool's evaluation.
    Simulated: Prometheus' scrape through the chart's ServiceMonitor (no Prometheus runs): the
    target labels it adds (`namespace` of the controller's Service, `job`) and the rename of the
    controller's own `namespace` label to `exported_namespace` (honorLabels false)."""
    promtool = shutil.which("promtool") or str(ROOT / ".tools" / "bin" / "promtool")
    if not Path(promtool).is_file():
        pytest.fail("promtool not found (run `make tools`)", pytrace=False)
    assert "scrape" in flow, "runs after test_copied_sealed_secrets_unseal_only_where_their_scope_allows"
    ns, ctl_ns = flow["ns"], sealed.controller.namespace
    rule = yaml.safe_load(next((flow["repo"].k8s_dir / "apps").glob("prometheusrule-*.yaml")).read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))

    def series(metric: str, labels: dict[str, str]) -> str:
        labels = dict(labels)
        labels["exported_namespace"] = labels.pop("namespace")
        labels.update(namespace=ctl_ns, job="sealed-secrets-controller-metrics")
        return metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    inputs = []
    for labels, value in _samples(flow["scrape"], "sealed_secrets_controller_unseal_errors_total"):
        inputs.append(
            {"series": series("sealed_secrets_controller_unseal_errors_total", labels), "values": f"0x5 {value:g}x20"}
        )
    conditions = _samples(flow["scrape"], "sealed_secrets_controller_condition_info")
    for labels, value in conditions:
        inputs.append({"series": series("sealed_secrets_controller_condition_info", labels), "values": f"{value:g}x25"})
    assert any(l["condition"] == "Synced" and v == 1 for l, v in conditions), "no synced SealedSecret in the scrape"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}

    def expect(alert: str, **labels: str) -> dict:
        r = rules[alert]
        labels = {**r["labels"], **labels}
        render = lambda t: re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], t)  # noqa: E731
        return {"exp_labels": labels, "exp_annotations": {k: render(v) for k, v in r["annotations"].items()}}

    unseal = [
        expect("SealedSecretsUnsealErrors", exported_namespace=n, reason="unseal")
        for n in sorted({w for w, _ in flow["refused"]})
    ]
    not_synced = [expect("SealedSecretNotSynced", exported_namespace=w, name=n) for w, n in sorted(flow["refused"])]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"alertname": "SealedSecretsUnsealErrors", "eval_time": "15m", "exp_alerts": unseal},
                    {"alertname": "SealedSecretNotSynced", "eval_time": "15m", "exp_alerts": not_synced},
                ],
            }
        ],
    }
    assert ns in {w for w, _ in flow["refused"]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_after_a_key_renewal_reseal_output_unseals_with_the_new_key(sealed, flow):
    """The controller renews its key (SIGUSR1: the trigger its --key-renew-period job calls; the real
    `generateKey` writes a new key Secret and serves the new certificate). The operator fetches the
    new certificate and runs `ksecrets reseal --stack S --backup <keygen backup> --cert new.pem
    --set-certificate`; the resealed values no longer decrypt with the old key (checked with
    `ksecrets unseal`), and the real controller unseals them, values unchanged.

    Last in this module: the controller's current certificate changes here."""
    cluster, ns, repo, ctl = sealed.cluster, flow["ns"], flow["repo"], sealed.controller
    old_cert = ctl.cert_pem()
    new_key = ctl.renew_key()
    new_cert = ctl.cert_pem()
    assert new_cert != old_cert
    assert len(ctl.key_secrets()) == 2
    new_pem = repo.root / "certs" / f"{sealed.stack}-renewed.pem"
    new_pem.write_bytes(new_cert)
    res = repo.ksecrets(
        "reseal", "--stack", sealed.stack, "--backup", str(sealed.backup), "--cert", str(new_pem), "--set-certificate"
    )
    assert "re-sealed 3 Secret(s)" in res.stderr, res.stderr
    repo.export()
    fp = load_certificate(new_pem).fingerprint
    for scope in SCOPES:
        ss = repo.sealed_secret(flow["names"][scope])
        assert ss["metadata"]["annotations"]["ksecrets.io/sealing-certificate"] == fp
        # Only the new key opens it now:
        res = repo.ksecrets("unseal", "--backup", str(sealed.backup), input=yaml.safe_dump(ss), expect_ok=False)
        assert res.returncode == 2 and "cannot decrypt: wrong key" in res.stderr, res.stderr
    new_key_file = sealed.workdir / "keys" / "renewed.yaml"
    new_key_file.write_text(yaml.safe_dump(new_key))
    new_key_file.chmod(0o600)
    ss = repo.sealed_secret(flow["names"]["strict"])
    res = repo.ksecrets("unseal", "--recovery-private-key", str(new_key_file), input=yaml.safe_dump(ss))
    assert res.returncode == 0
    generations = {}
    for scope in SCOPES:
        generations[scope] = sealed_secret(cluster, ns, flow["names"][scope])["metadata"]["generation"]
    apply_stack(cluster, repo.k8s_dir)
    for scope in SCOPES:
        name = flow["names"][scope]
        live = sealed_secret(cluster, ns, name)
        assert live["metadata"]["generation"] > generations[scope], f"{name}: the resealed object was not applied"
        cluster.kubectl("delete", "secret", name, "-n", ns)
    for scope in SCOPES:
        name = flow["names"][scope]
        # The controller recreates a deleted managed Secret (it watches them) from the resealed data.
        wait_secret(cluster, ns, name, flow["expected"][scope], timeout=60, proc=ctl.proc)
        cluster.wait(
            f"{name}: Synced=True at the new generation",
            lambda name=name: (
                (synced(cluster, ns, name) or {}).get("status") == "True"
                and sealed_secret(cluster, ns, name).get("status", {}).get("observedGeneration")
                == sealed_secret(cluster, ns, name)["metadata"]["generation"]
            ),
        )
    assert len(repo.errors) == len(SCOPES)  # the three expected refusals above, one line each

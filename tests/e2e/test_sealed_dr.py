"""Issue 12, the sealed-secrets disaster-recovery drill, with the real components.

Real: two independent control planes (etcd + kube-apiserver + kube-controller-manager, each with
its own CA, service-account keys and etcd data), the sealed-secrets controller v0.36.6 on each (a
local process with in-cluster config), its key renewal (SIGUSR1 → its own `generateKey`), the
`ksecrets` CLI (keygen, seal --stack, export, backup, restore), and the real kubectl for
`kubectl get secret ... -o yaml | ksecrets backup` and `ksecrets restore | kubectl apply -f -`.
Simulated: kustomize-controller/helm-controller (tests/e2e/harness/gitops.py), the controller's Pod.
"The cluster is gone" is the old control plane and its controller stopped by PID and its etcd
data deleted before the recovery starts; nothing of it is reachable afterwards.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time

from ksecrets.config.load import load_stack
from ksecrets.sealing.certs import load_certificate
from tests.e2e.harness import ROOT
from tests.e2e.harness.gitops import apply_stack
from tests.e2e.harness.sealed_secrets import (
    KEY_LABEL,
    StackRepo,
    keygen,
    kubectl_secret_data,
    sealed_secret,
    secret_data,
    synced,
    wait_secret,
)

SCOPES = ("strict", "namespace-wide", "cluster-wide")


def test_sealed_secrets_drill_new_api_server_restores_every_value(
    cluster_factory, sealed_controller_factory, sealed_run_env, sealed_stack, e2e_dir
):
    """Old cluster: `ksecrets keygen` key, values sealed into the stack in all three scopes, the
    controller renews its key (now two keys), more values sealed with the renewed certificate,
    all applied and unsealed. Backup: the old cluster's key Secrets through `ksecrets backup`.
    Then the old cluster is destroyed. A stale backup (keygen's, taken before the renewal) restored
    into a new API server unseals only the values of the first key: the real controller refuses
    the others. Recovery with the current backup, timed: a new API server, `ksecrets restore |
    kubectl apply -f -`, the controller started, the unchanged stack applied as Flux would; the
    real controller unseals every SealedSecret of the stack with exactly the values the env files
    hold, serves the renewed certificate (so certs/<stack>.pem stays valid), and records no
    unseal error. Prints the recovery time; data lost must be none."""
    work = e2e_dir / "sealed-dr"
    repo = StackRepo.copy(ROOT, work / "repo", sealed_stack, sealed_run_env)
    safe = work / "offline"  # where backups live: outside the repo and outside both clusters
    safe.mkdir(parents=True)
    key_yaml = keygen(repo, safe / "keygen.ksbackup")

    old = cluster_factory("dr-old")
    old_ctl = sealed_controller_factory(old, work / "old-controller", key_yaml, sealed_stack)
    app = load_stack(sealed_stack, repo.root).apps[0]
    ns = app.namespace
    envs = {}

    def seal(name: str, scope: str) -> None:
        env = work / "env" / f"{name}.env"
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text(
            f"DATABASE_URL=postgres://app:{secrets.token_hex(10)}@db/app\nAPI_KEY={secrets.token_hex(16)}\n"
            f"NOTE=sealed with scope {scope}\n"
        )
        env.chmod(0o600)
        repo.seal(name, env, namespace=ns, scope=scope)
        envs[name] = env

    for scope in SCOPES:
        seal(f"{app.name}-dr-{scope}" if scope != "strict" else app.secret_name, scope)
    repo.export()
    apply_stack(old, repo.k8s_dir)
    expected = {n: kubectl_secret_data(old, n, ns, e) for n, e in envs.items()}
    for n in envs:
        wait_secret(old, ns, n, expected[n], proc=old_ctl.proc)

    # The controller renews its key (its 30-day job); new values are sealed with the new certificate.
    old_ctl.renew_key()
    renewed_cert = old_ctl.cert_pem()
    repo.cert_path.write_bytes(renewed_cert)  # `kubeseal --fetch-cert > certs/<stack>.pem`
    for scope in SCOPES:
        seal(f"{app.name}-dr-renewed-{scope}", scope)
    repo.export()
    apply_stack(old, repo.k8s_dir)
    expected = {n: kubectl_secret_data(old, n, ns, e) for n, e in envs.items()}
    for n in envs:
        wait_secret(old, ns, n, expected[n], proc=old_ctl.proc)
    fps = {
        ss["metadata"]["annotations"]["ksecrets.io/sealing-certificate"] for ss in (repo.sealed_secret(n) for n in envs)
    }
    assert len(fps) == 2, f"the stack should hold values sealed for both keys: {fps}"

    # Backup, as the README says.
    keys = old.kubectl("get", "secret", "-n", "kube-system", "-l", KEY_LABEL, "-o", "yaml").stdout
    assert len(old_ctl.key_secrets()) == 2
    backup = safe / "keys.ksbackup"
    res = repo.ksecrets("backup", "--out", str(backup), input=keys)
    assert "2 key(s) backed up" in res.stderr, res.stderr

    # The old cluster is gone.
    old_ctl.stop()
    old.stop()
    shutil.rmtree(old.workdir / "etcd")
    assert not old_ctl.alive() and not old.apiserver.alive() and not old.etcd.alive()

    # First, what a stale backup (the one keygen wrote, before the renewal) gets you on a new
    # cluster: the values sealed for the renewed key are refused by the real controller.
    stale = cluster_factory("dr-stale")
    stale.kubectl("apply", "-f", "-", input=repo.ksecrets("restore", "--backup", str(safe / "keygen.ksbackup")).stdout)
    stale_ctl = sealed_controller_factory(stale, work / "stale-controller", None, sealed_stack)
    apply_stack(stale, repo.k8s_dir)
    renewed_fp = load_certificate(repo.cert_path).fingerprint
    refused = 0
    for n in envs:
        if repo.sealed_secret(n)["metadata"]["annotations"]["ksecrets.io/sealing-certificate"] != renewed_fp:
            wait_secret(stale, ns, n, expected[n], proc=stale_ctl.proc)
            continue
        stale.wait(
            f"{n}: refused with a stale backup", lambda n=n: (synced(stale, ns, n) or {}).get("status") == "False"
        )
        assert "no key could decrypt secret" in synced(stale, ns, n)["message"]
        assert secret_data(stale, ns, n) is None
        refused += 1
    assert refused == len(SCOPES)
    print(f"\nfigure: a backup taken before the key renewal: {refused} of {len(envs)} Secrets refused on a new cluster")
    stale_ctl.stop()
    stale.stop()

    # Recovery with the current backup, timed.
    t0 = time.monotonic()
    new = cluster_factory("dr-new")
    t_cluster = time.monotonic()
    restored = repo.ksecrets("restore", "--backup", str(backup)).stdout
    new.kubectl("apply", "-f", "-", input=restored)
    t_restore = time.monotonic()
    new_ctl = sealed_controller_factory(new, work / "new-controller", None, sealed_stack)  # keys applied above
    t_ctl = time.monotonic()
    apply_stack(new, repo.k8s_dir)
    t_apply = time.monotonic()
    for n in envs:
        wait_secret(new, ns, n, expected[n], timeout=120, proc=new_ctl.proc)
    t_done = time.monotonic()
    print(
        f"\nfigure: sealed-secrets DR: recovered {len(envs)} Secrets in {t_done - t0:.1f} s "
        f"(new control plane {t_cluster - t0:.1f} s, restore+apply keys {t_restore - t_cluster:.1f} s, "
        f"controller start {t_ctl - t_restore:.1f} s, stack apply {t_apply - t_ctl:.1f} s, "
        f"unseal {t_done - t_apply:.1f} s); values lost: 0 of {sum(len(v) for v in expected.values())}"
    )

    # Nothing lost, nothing refused, and sealing goes on with the same certificate.
    for n in envs:
        assert secret_data(new, ns, n) == expected[n]
        assert (synced(new, ns, n) or {}).get("status") == "True", synced(new, ns, n)
        assert sealed_secret(new, ns, n)["spec"]["encryptedData"] == repo.sealed_secret(n)["spec"]["encryptedData"]
    assert new_ctl.cert_pem() == renewed_cert == repo.cert_path.read_bytes()
    assert sorted(s["metadata"]["name"] for s in new_ctl.key_secrets()) == sorted(
        d["metadata"]["name"]
        for d in json.loads(repo.ksecrets("restore", "--backup", str(backup), "-o", "json").stdout)["items"]
    )
    assert not (new_ctl.metric("sealed_secrets_controller_unseal_errors_total") or 0)
    assert load_certificate(repo.cert_path).fingerprint in fps
    assert repo.errors == []

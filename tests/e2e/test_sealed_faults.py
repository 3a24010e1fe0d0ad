"""Issue 9, faults (the sealed-secrets share): the real controller killed mid-flow.

Real: kube-apiserver + kube-controller-manager, the sealed-secrets controller v0.36.6 (a local
process with in-cluster config, killed with SIGKILL by its PID and started again), the `ksecrets`
CLI, `kubectl create secret --from-env-file` as the oracle of the expected bytes.
Simulated: kustomize-controller's apply (tests/e2e/harness/gitops.py); the controller's Pod
(a Deployment would restart it; here the test does, by PID).
"""

from __future__ import annotations

import secrets
import time

from ksecrets.config.load import load_stack
from tests.e2e.harness.gitops import apply_stack
from tests.e2e.harness.sealed_secrets import kubectl_secret_data, sealed_secret, secret_data, synced, wait_secret

COUNT = 8  # each `ksecrets seal --stack` is a process of its own (~1-2 s here)


def _env(seed: str) -> str:
    return f"DATABASE_URL=postgres://app:{seed}@db:5432/app\nAPI_KEY=ak-{secrets.token_hex(12)}\nTOKEN={seed}\n"


def test_controller_killed_mid_flow_converges_with_no_value_lost(sealed):
    """COUNT SealedSecrets of the stack change at once; the controller is SIGKILLed as soon as it
    has written the first new Secret, SIGKILLed again right after its restart, then started for good.
    While it is down: the stack keeps being sealed and exported offline, `ksecrets` fed the empty
    certificate a dead controller's /v1/cert.pem gives (and a broken env file) fails with one line,
    and every Secret keeps a value (old or new, never none). In the end every Secret holds exactly
    what `kubectl create secret --from-env-file` gives for its latest env file, every SealedSecret
    is Synced at its latest generation, and no ksecrets error was more than one line."""
    cluster, ctl = sealed.cluster, sealed.controller
    repo = sealed.repo("faults")
    app = load_stack(sealed.stack, repo.root).apps[0]
    ns = app.namespace
    names = [f"{app.name}-fault-{i:02d}" for i in range(COUNT)]
    envdir = sealed.workdir / "env" / "faults"
    envdir.mkdir(parents=True, exist_ok=True)

    def seal_all(round_: int) -> dict[str, dict[str, str]]:
        expected = {}
        for name in names:
            env = envdir / f"{name}.env"
            env.write_text(_env(f"{round_}-{secrets.token_hex(8)}"))
            repo.seal(name, env, namespace=ns)
            expected[name] = kubectl_secret_data(cluster, name, ns, env)
        repo.export()
        return expected

    first = seal_all(1)
    apply_stack(cluster, repo.k8s_dir)
    for name in names:
        wait_secret(cluster, ns, name, first[name], timeout=90, proc=ctl.proc)

    second = seal_all(2)
    apply_stack(cluster, repo.k8s_dir)
    done_at_kill = 0

    def some_done() -> bool:
        nonlocal done_at_kill
        done_at_kill = sum(secret_data(cluster, ns, n) == second[n] for n in names)
        return done_at_kill > 0

    cluster.wait("the controller's first new Secret", some_done, timeout=60)
    ctl.kill()
    killed_at = time.monotonic()
    assert not ctl.alive()
    done_at_kill = sum(secret_data(cluster, ns, n) == second[n] for n in names)
    print(f"\nfigure: controller SIGKILLed with {done_at_kill}/{COUNT} Secrets converged")
    # Mid-flow: its client is rate-limited (5 requests/s, burst 10), so it cannot have finished.
    assert done_at_kill < COUNT, "the controller had finished before the kill: not a mid-flow crash"

    # While it is down: no Secret is lost, each holds the old or the new values.
    for n in names:
        assert secret_data(cluster, ns, n) in (first[n], second[n]), f"{n}: a value was lost"
    # The operator keeps working offline; what fails, fails in one line.
    empty_cert = repo.root / "fetched.pem"
    empty_cert.write_bytes(ctl.cert_pem() or b"")  # the dead controller answers nothing
    res = repo.ksecrets(
        "seal",
        "--cert",
        str(empty_cert),
        "--format",
        "yaml",
        expect_ok=False,
        input=cluster.kubectl(
            "create", "secret", "generic", "x", "-n", ns, "--from-literal=a=b", "--dry-run=client", "-o", "yaml"
        ).stdout,
    )
    assert res.returncode == 2 and "fetched.pem" in res.stderr, res.stderr
    bad = envdir / "broken.env"
    bad.write_text("GOOD=1\nthis line has no equals sign and no such variable\n")
    res = repo.ksecrets(
        "seal",
        "--stack",
        sealed.stack,
        "--name",
        names[0],
        f"--from-env-file={bad}",
        "--namespace",
        ns,
        expect_ok=False,
    )
    assert res.returncode == 2 and "broken.env" in res.stderr, res.stderr
    third = seal_all(3)
    apply_stack(cluster, repo.k8s_dir)
    for n in names:
        assert secret_data(cluster, ns, n) in (first[n], second[n]), f"{n}: changed with no controller running"

    # Restart, crash again at once, restart for good.
    ctl.start()
    ctl.kill()
    ctl.start()
    restarted = time.monotonic()
    for n in names:
        wait_secret(cluster, ns, n, third[n], timeout=120, proc=ctl.proc)
    converged = time.monotonic()
    for n in names:
        cluster.wait(
            f"{n}: Synced=True at its latest generation",
            lambda n=n: (
                (synced(cluster, ns, n) or {}).get("status") == "True"
                and (sealed_secret(cluster, ns, n).get("status") or {}).get("observedGeneration")
                == sealed_secret(cluster, ns, n)["metadata"]["generation"]
            ),
            timeout=60,
        )
    print(
        f"figure: after the restart all {COUNT} Secrets converged in {converged - restarted:.2f} s "
        f"({converged - killed_at:.2f} s after the first kill, including the offline work)"
    )
    assert len(repo.errors) == 2 and all(e.startswith("ksecrets: ") and "\n" not in e for e in repo.errors)
    for n in names:  # the test's own objects go away (the garbage collector removes their Secrets)
        cluster.kubectl("delete", "sealedsecret", n, "-n", ns)


def test_api_server_restarted_mid_flow_converges(sealed):
    """The API server stops while the controller and kube-controller-manager run, and starts again
    on the same address and etcd. Real: all of it; the restart is the test's (by PID). While it is
    down the stack is re-sealed and exported offline, and the apply (what Flux would retry) fails;
    after it is back, the controllers reconnect by themselves (no restart), the value written before
    is still there, and the new value converges. No value is lost on the way."""
    cluster, ctl = sealed.cluster, sealed.controller
    repo = sealed.repo("apiserver-restart")
    app = load_stack(sealed.stack, repo.root).apps[0]
    ns, name = app.namespace, f"{app.name}-apiserver-restart"
    env = sealed.workdir / "env" / "apiserver-restart.env"
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text(_env(f"before-{secrets.token_hex(6)}"))
    repo.seal(name, env, namespace=ns)
    repo.export()
    before = kubectl_secret_data(cluster, name, ns, env)
    apply_stack(cluster, repo.k8s_dir)
    wait_secret(cluster, ns, name, before, timeout=90, proc=ctl.proc)

    cluster.apiserver.stop()
    stopped = time.monotonic()
    env.write_text(_env(f"after-{secrets.token_hex(6)}"))
    repo.seal(name, env, namespace=ns)  # offline: needs only the committed certificate
    repo.export()
    down = cluster.kubectl("get", "namespaces", check=False, timeout=30)
    assert down.returncode != 0, "the API server answered while stopped"

    cluster.start_apiserver()
    back = time.monotonic()
    assert secret_data(cluster, ns, name) == before, "the Secret written before the restart was lost"
    after = kubectl_secret_data(cluster, name, ns, env)
    apply_stack(cluster, repo.k8s_dir)
    wait_secret(cluster, ns, name, after, timeout=120, proc=ctl.proc)
    converged = time.monotonic()
    assert ctl.alive(), "the controller died with the API server instead of reconnecting"
    assert cluster.kcm is not None and cluster.kcm.alive(), "kube-controller-manager died with the API server"
    print(
        f"\nfigure: API server down {back - stopped:.1f} s; the new value converged "
        f"{converged - back:.2f} s after it was back"
    )
    cluster.kubectl("delete", "sealedsecret", name, "-n", ns)

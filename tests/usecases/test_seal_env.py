"""One value, every cluster: `ksecrets seal --env E` seals for each cluster stack of E with that
cluster's own certificate, in one run, one lock order and one transaction; `verify --env E` names
every entry sealed for a certificate a cluster no longer has; `reseal --stack S` after one cluster's
key renewal touches only that cluster's file.

The fleet is real: three cluster stacks extending environments/production.yaml, each with its own
RSA key pair (the private key is the recovery key `unseal` opens its values with), and a staging
stack of another environment that no `--env production` run may touch."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets.sealing import churn
from tests.conftest import ROOT, distinct_rsa_key, ksecrets_in_process

SEAL_KEY = "dGVzdC1mbGVldC1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A="
CLUSTERS = ("prod-a", "prod-b", "prod-c")
NAME = "my-app-secrets"
NOW = dt.datetime.now(dt.timezone.utc)

ENVIRONMENT = """\
backend: sealed-secrets
apps:
  - name: my-app
    namespace: my-app
    secretName: my-app-secrets
"""
CLUSTER = """\
# {stack}: this cluster's own
config:
  k8s-secrets:extends: environments/production.yaml
  k8s-secrets:sealedSecrets:
    certificate: certs/{stack}.pem
"""
STAGING = """\
config:
  k8s-secrets:backend: sealed-secrets
  k8s-secrets:sealedSecrets:
    certificate: certs/staging.pem
  k8s-secrets:apps:
    - name: my-app
      namespace: my-app
      secretName: my-app-secrets
"""


def _keypair(root: Path, stack: str, *, not_after: dt.datetime | None = None, tag: str = "", key=None) -> Path:
    """A fresh key for `stack`: its certificate at certs/<stack>.pem (the default path), and the
    private key (the recovery key) at keys/<stack><tag>.key, outside what the stack reads. The key
    is one this test has not had yet (tests/conftest.py: distinct_rsa_key); a fixture that outlives
    the test passes its own `key`."""
    not_after = not_after or NOW + dt.timedelta(days=3650)
    key = key or distinct_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sealed-secret-{stack}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(NOW, not_after) - dt.timedelta(days=30))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    (root / "certs" / f"{stack}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path = root / "keys" / f"{stack}{tag}.key"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture
def fleet(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "certs").mkdir()
    (root / "keys").mkdir()
    shutil.copy2(ROOT / "Pulumi.yaml", root)
    (root / "environments" / "production.yaml").write_text(ENVIRONMENT)
    for stack in CLUSTERS:
        (root / f"Pulumi.{stack}.yaml").write_text(CLUSTER.format(stack=stack))
        _keypair(root, stack)
    (root / "Pulumi.staging.yaml").write_text(STAGING)
    _keypair(root, "staging")
    return root


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSECRETS_", "SEALED_SECRETS_"))}
    env[churn.ENV_VAR] = SEAL_KEY
    env.update(extra)
    return env


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("Pulumi.*.yaml"))}


def _entry(root: Path, stack: str) -> dict:
    (entry,) = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())["config"]["k8s-secrets:sealed"]
    return entry


def _unseal(root: Path, stack: str, key: Path) -> subprocess.CompletedProcess:
    return ksecrets_in_process(
        "unseal", "--stack", stack, "--name", NAME, "--recovery-private-key", str(key), "--root", str(root)
    )


def _seal_env(root: Path, *selector: str, values: str) -> subprocess.CompletedProcess:
    env_file = root.parent / "values.env"
    env_file.write_text(values)
    return ksecrets_in_process(
        "seal", *selector, "--name", NAME, "--from-env-file", str(env_file), "--root", str(root), env=_env()
    )


def _fail_the_second_write(monkeypatch) -> list[str]:
    """Stack files are written as before, but the second write fails as a full disk does; returns
    the names of the files written to, in order."""
    from ksecrets.config import stackfile

    real_write = stackfile.atomic_write_bytes
    writes: list[str] = []

    def failing(path, *args, **kwargs):
        writes.append(Path(path).name)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(stackfile, "atomic_write_bytes", failing)
    return writes


def test_seal_env_seals_each_cluster_with_its_own_certificate_and_leaves_no_drift(fleet):
    staging = (fleet / "Pulumi.staging.yaml").read_bytes()
    res = _seal_env(fleet, "--env", "production", values="API_KEY=canary-one-0001\nTOKEN=canary-two-0002\n")
    assert res.returncode == 0, res.stderr
    assert "canary" not in res.stdout + res.stderr
    for stack in CLUSTERS:
        assert any(line.startswith(f"Pulumi.{stack}.yaml: my-app/{NAME}") for line in res.stderr.splitlines())
    assert (fleet / "Pulumi.staging.yaml").read_bytes() == staging  # another environment: untouched
    fingerprints = {_entry(fleet, s)["certificateFingerprint"] for s in CLUSTERS}
    assert len(fingerprints) == 3  # three clusters, three certificates
    for stack in CLUSTERS:
        opened = _unseal(fleet, stack, fleet / "keys" / f"{stack}.key")
        assert opened.returncode == 0, opened.stderr
        secret = yaml.safe_load(opened.stdout)
        assert secret["metadata"]["name"] == NAME
        assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
            "API_KEY": b"canary-one-0001",
            "TOKEN": b"canary-two-0002",
        }
        for other in CLUSTERS:
            if other != stack:  # each ciphertext opens only with its own cluster's key
                refused = _unseal(fleet, stack, fleet / "keys" / f"{other}.key")
                assert refused.returncode != 0, (stack, other)
                assert "canary" not in refused.stdout + refused.stderr
    # one fleet digest per value on every cluster: drift compares them without a key
    assert len({tuple(sorted(_entry(fleet, s)["fleetDigests"].items())) for s in CLUSTERS}) == 1
    res = ksecrets_in_process("drift", "--env", "production", "--root", str(fleet))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "3 cluster(s) in 1 environment(s): 0 finding(s)"
    res = ksecrets_in_process("verify", "--env", "production", "--root", str(fleet))
    assert res.returncode == 0, res.stdout + res.stderr


def test_repeated_env_and_stack_selectors_add_up(fleet):
    res = _seal_env(fleet, "--env", "production", "--env", "staging", values="API_KEY=canary-x\n")
    assert res.returncode == 0, res.stderr
    for stack in (*CLUSTERS, "staging"):
        assert set(_entry(fleet, stack)["encryptedData"]) == {"API_KEY"}
    res = _seal_env(fleet, "--env", "nope", values="API_KEY=canary-x\n")
    assert res.returncode == 2 and res.stderr.startswith("ksecrets: --env nope: no stack of that environment")
    res = _seal_env(fleet, "--env", "production", "--all-stacks", values="API_KEY=canary-x\n")
    assert res.returncode == 2 and "not both" in res.stderr


@pytest.mark.parametrize("broken", ["expired", "missing"])
def test_one_cluster_that_cannot_be_sealed_for_writes_no_file(fleet, broken):
    res = _seal_env(fleet, "--env", "production", values="API_KEY=canary-first\n")
    assert res.returncode == 0, res.stderr
    if broken == "expired":
        _keypair(fleet, "prod-b", not_after=NOW - dt.timedelta(days=1), tag="-expired")
    else:
        (fleet / "certs" / "prod-b.pem").unlink()
    before = _files(fleet)
    res = _seal_env(fleet, "--env", "production", values="API_KEY=canary-second\nTOKEN=canary-third\n")
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.splitlines()
    # the error names the stack's file and its certificate's, never a value
    assert line.startswith("ksecrets: Pulumi.prod-b.yaml: k8s-secrets:sealedSecrets.certificate: certs/prod-b.pem")
    assert ("expired" if broken == "expired" else "not found") in line
    assert "canary" not in line
    assert _files(fleet) == before  # prod-a sorts first, prod-c last: neither written


def test_a_write_that_fails_midway_restores_every_stack_file(fleet, monkeypatch):
    """The transaction, not only the checks before it: the second file's write fails after the
    first was renamed into place; the first gets its bytes back."""
    from ksecrets.errors import KsecretsError
    from ksecrets.usecases.seal_stack import SealRequest, seal_into_stacks

    assert _seal_env(fleet, "--env", "production", values="API_KEY=canary-first\n").returncode == 0
    before = _files(fleet)
    writes = _fail_the_second_write(monkeypatch)
    with pytest.raises(KsecretsError, match=r"^Pulumi\.prod-b\.yaml: cannot write it \(No space left on device\)"):
        request = SealRequest(name=NAME, values={"API_KEY": b"canary-second"}, seal_key=SEAL_KEY.encode())
        seal_into_stacks(fleet, CLUSTERS, request)
    assert len(writes) == 2, writes  # the injection did hit the second file
    assert _files(fleet) == before


# --- two runs at once ------------------------------------------------------------------------------


def _lock_lines(pid: int) -> list[str]:
    """This process's lines of /proc/locks: held flocks, and `->` lines for the ones it waits on."""
    return [line for line in Path("/proc/locks").read_text().splitlines() if f" {pid} " in line]


def _wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start_seal(root: Path, stacks: list[str], values: str, tag: str) -> subprocess.Popen:
    env_file = root.parent / f"{tag}.env"
    env_file.write_text(values)
    args = [a for s in stacks for a in ("--stack", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "ksecrets", "seal", *args, "--name", NAME, "--from-env-file", str(env_file)],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            out.append((p.returncode, err.decode()))
    finally:
        for p in procs:  # a deadlock: stopped by PID, then the test fails
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def test_overlapping_runs_in_opposite_orders_both_finish_and_lose_nothing(fleet):
    """Forces the interleaving that deadlocks runs taking locks in their arguments' order: this
    test holds prod-b's lock; run 1 (a, b, c) takes a and waits on b; run 2 (c, b, a) starts and
    waits; then b is released. In argument order run 2 would hold c and wait on b while run 1,
    given b, waits on c. In the one global order both finish, and both runs' keys are in every
    stack they share (the later run wins a key both set)."""
    import fcntl

    fd = os.open(fleet / "Pulumi.prod-b.yaml", os.O_RDONLY)
    procs: list[subprocess.Popen] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        one = _start_seal(fleet, ["prod-a", "prod-b", "prod-c"], "ONE=canary-1\nBOTH=canary-from-1\n", "one")
        procs.append(one)
        _wait_for(lambda: any("->" in line for line in _lock_lines(one.pid)), "run 1 to wait on prod-b")
        two = _start_seal(fleet, ["prod-c", "prod-b", "prod-a"], "TWO=canary-2\nBOTH=canary-from-2\n", "two")
        procs.append(two)
        _wait_for(lambda: any("->" in line for line in _lock_lines(two.pid)), "run 2 to wait on a lock")
    except BaseException:
        _finish(procs, 0.1)
        raise
    finally:
        os.close(fd)  # releases prod-b
    results = _finish(procs, timeout=120)
    assert [code for code, _ in results] == [0, 0], results
    for stack in CLUSTERS:
        opened = _unseal(fleet, stack, fleet / "keys" / f"{stack}.key")
        assert opened.returncode == 0, opened.stderr
        data = {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(opened.stdout)["data"].items()}
        # run 1 waited first and got every lock first: run 2, the later, wins BOTH
        assert data == {"ONE": "canary-1", "TWO": "canary-2", "BOTH": "canary-from-2"}, stack
    assert ksecrets_in_process("drift", "--env", "production", "--root", str(fleet)).returncode == 0


# --- a key renewal on one cluster -------------------------------------------------------------------


def test_verify_names_the_renewed_clusters_entries_and_reseal_touches_only_that_cluster(fleet):
    assert _seal_env(fleet, "--env", "production", values="API_KEY=canary-one\nTOKEN=canary-two\n").returncode == 0
    # a second Secret, so "every entry" means two
    (fleet / "environments" / "production.yaml").write_text(
        ENVIRONMENT + "  - name: billing\n    namespace: billing\n    secretName: billing-secrets\n"
    )
    env_file = fleet.parent / "billing.env"
    env_file.write_text("STRIPE=canary-three\n")
    res = ksecrets_in_process(
        "seal", "--env", "production", "--name", "billing-secrets", "--from-env-file", str(env_file),
        "--root", str(fleet), env=_env(),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    # prod-b's controller renews its key: the repository gets the new certificate
    _keypair(fleet, "prod-b", tag="-renewed")
    res = ksecrets_in_process("verify", "--env", "production", "--root", str(fleet))
    assert res.returncode == 1, res.stdout + res.stderr
    stale = [line for line in res.stdout.splitlines() if "STALE" in line]
    assert [line.split(": ")[:3] for line in stale] == [
        ["prod-b", "STALE", "Pulumi.prod-b.yaml"],
        ["prod-b", "STALE", "Pulumi.prod-b.yaml"],
    ]
    assert f"k8s-secrets:sealed[0] my-app/{NAME}" in stale[0] and "sealed[1] billing/billing-secrets" in stale[1]
    assert "prod-a: 2 sealed Secret(s), all sealed for the current certificate" in res.stdout
    assert "prod-c: 2 sealed Secret(s), all sealed for the current certificate" in res.stdout

    others = {s: (fleet / f"Pulumi.{s}.yaml").read_bytes() for s in ("prod-a", "prod-c", "staging")}
    res = ksecrets_in_process(
        "reseal", "--stack", "prod-b", "--recovery-private-key", str(fleet / "keys" / "prod-b.key"),
        "--cert", str(fleet / "certs" / "prod-b.pem"), "--root", str(fleet), env=_env(),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "re-sealed 2 Secret(s)" in res.stderr
    assert {s: (fleet / f"Pulumi.{s}.yaml").read_bytes() for s in others} == others  # byte for byte
    res = ksecrets_in_process("verify", "--env", "production", "--root", str(fleet))
    assert res.returncode == 0, res.stdout
    res = ksecrets_in_process("drift", "--env", "production", "--root", str(fleet))
    assert res.returncode == 0, res.stdout  # the re-sealed values keep their fleet digests
    assert _unseal(fleet, "prod-b", fleet / "keys" / "prod-b-renewed.key").returncode == 0
    assert _unseal(fleet, "prod-b", fleet / "keys" / "prod-b.key").returncode != 0


# --- overlapping runs, any orders: a property ------------------------------------------------------

_FOUR = ("prod-a", "prod-b", "prod-c", "prod-d")


@pytest.fixture(scope="module")
def four_clusters(tmp_path_factory) -> Path:
    """A fleet of four, its keys made once; each example copies it."""
    root = tmp_path_factory.mktemp("four") / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "certs").mkdir()
    (root / "keys").mkdir()
    shutil.copy2(ROOT / "Pulumi.yaml", root)
    (root / "environments" / "production.yaml").write_text(ENVIRONMENT)
    for stack in _FOUR:
        (root / f"Pulumi.{stack}.yaml").write_text(CLUSTER.format(stack=stack))
        _keypair(root, stack, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return root


_run = st.tuples(
    st.lists(st.sampled_from(_FOUR), min_size=1, max_size=4, unique=True),  # stacks, in the order named
    st.sets(st.sampled_from(["K1", "K2", "K3"]), min_size=1),  # the keys the run sets
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.tuples(_run, _run))
def test_two_overlapping_runs_in_any_order_lose_no_update(four_clusters, tmp_path, runs):
    """Two real `seal --stack ...` processes at once, over random overlapping stacks named in random
    orders, setting random keys: both finish; every stack holds every key any run set in it; where
    both runs set a key, one run (the later) wins it on every stack they share, never a mix."""
    from ksecrets.sealing import crypto

    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "repo"
    shutil.copytree(four_clusters, root)
    # The test holds every stack file until both runs wait on their first lock, then lets go of
    # all: the two runs start their lock taking at the same moment, every example.
    fds = [os.open(root / f"Pulumi.{stack}.yaml", os.O_RDONLY) for stack in _FOUR]
    procs: list[subprocess.Popen] = []
    try:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX)
        for i, (stacks, keys) in enumerate(runs):
            values = "".join(f"{k}=canary-{i}-{k}\n" for k in sorted(keys))
            procs.append(_start_seal(root, stacks, values, f"run{i}"))
        for p in procs:
            _wait_for(lambda: any("->" in line for line in _lock_lines(p.pid)), f"run {p.pid} to wait")  # noqa: B023
    except BaseException:
        _finish(procs, 0.1)
        raise
    finally:
        for fd in reversed(fds):  # the last in the global order first: runs that take locks in another order meet
            os.close(fd)
    results = _finish(procs, timeout=60)
    assert [code for code, _ in results] == [0, 0], results
    winners: dict[str, set[int]] = {}
    for stack in _FOUR:
        setting = [(i, keys) for i, (stacks, keys) in enumerate(runs) if stack in stacks]
        if not setting:
            assert "k8s-secrets:sealed" not in yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())["config"]
            continue
        key = serialization.load_pem_private_key((root / "keys" / f"{stack}.key").read_bytes(), None)
        entry = _entry(root, stack)
        got = {
            k: crypto.decrypt_value([key], v, b"my-app/my-app-secrets").decode()  # type: ignore[list-item]
            for k, v in entry["encryptedData"].items()
        }
        assert set(got) == set().union(*(keys for _, keys in setting)), stack
        for k, value in got.items():
            by = {i for i, keys in setting if k in keys}
            run = int(value.split("-")[1])
            assert run in by and value == f"canary-{run}-{k}"
            if len(by) == 2:
                winners.setdefault("both", set()).add(run)
    assert len(winners.get("both", set())) <= 1  # the same run won every key both set


# --- a fleet's reseal: each cluster for its own renewed certificate, in one run ----------------------


def _renew_and_seal_two(fleet: Path) -> dict[str, bytes]:
    assert _seal_env(fleet, "--env", "production", values="API_KEY=canary-one\nEMPTY=\nEQ=a=b\n").returncode == 0
    for stack in ("prod-a", "prod-c"):  # two controllers renewed their keys; prod-b did not
        _keypair(fleet, stack, tag="-renewed")
    return _files(fleet)


def _all_old_keys(fleet: Path) -> list[str]:
    return ["--recovery-private-key", ",".join(str(fleet / "keys" / f"{s}.key") for s in reversed(CLUSTERS))]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_fleet_reseal_reseals_each_cluster_for_its_own_certificate(fleet, jobs):
    before = _renew_and_seal_two(fleet)
    res = ksecrets_in_process(
        "reseal", "--env", "production", *_all_old_keys(fleet), "--jobs", jobs, "--root", str(fleet), env=_env()
    )
    assert res.returncode == 0, res.stderr
    assert "canary" not in res.stdout + res.stderr
    after = _files(fleet)
    assert after["Pulumi.staging.yaml"] == before["Pulumi.staging.yaml"]
    assert after["Pulumi.prod-b.yaml"] == before["Pulumi.prod-b.yaml"]  # already sealed for its certificate
    assert after["Pulumi.prod-a.yaml"] != before["Pulumi.prod-a.yaml"]
    assert after["Pulumi.prod-c.yaml"] != before["Pulumi.prod-c.yaml"]
    assert "Pulumi.prod-b.yaml: re-sealed 0 Secret(s)" in res.stderr
    assert ksecrets_in_process("verify", "--env", "production", "--root", str(fleet)).returncode == 0
    assert ksecrets_in_process("drift", "--env", "production", "--root", str(fleet)).returncode == 0
    for stack in ("prod-a", "prod-c"):
        res = _unseal(fleet, stack, fleet / "keys" / f"{stack}-renewed.key")
        assert res.returncode == 0, res.stderr
        data = yaml.safe_load(res.stdout)["data"]
        assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
            "API_KEY": "canary-one", "EMPTY": "", "EQ": "a=b"
        }  # fmt: skip
        assert _unseal(fleet, stack, fleet / "keys" / f"{stack}.key").returncode != 0


def test_fleet_reseal_decrypts_each_value_once_with_its_clusters_key(fleet, monkeypatch):
    """Every cluster's old key is given; each value is sealed for one of them: one RSA private
    operation per value, not one per key tried (the matching key is last in the order given)."""
    from ksecrets.sealing import crypto

    _renew_and_seal_two(fleet)
    calls = []
    real = crypto.hybrid_decrypt
    monkeypatch.setattr(crypto, "hybrid_decrypt", lambda *a: calls.append(1) or real(*a))
    res = ksecrets_in_process(
        "reseal", "--env", "production", *_all_old_keys(fleet), "--jobs", "1", "--root", str(fleet), env=_env()
    )
    assert res.returncode == 0, res.stderr
    assert len(calls) == 2 * 3  # two re-sealed clusters, three values each


def test_fleet_reseal_without_one_clusters_key_writes_nothing(fleet):
    before = _renew_and_seal_two(fleet)
    res = ksecrets_in_process(
        "reseal", "--env", "production", "--recovery-private-key", str(fleet / "keys" / "prod-a.key"),
        "--jobs", "2", "--root", str(fleet), env=_env(),
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.startswith("ksecrets: Pulumi.prod-c.yaml: k8s-secrets:sealed[0].encryptedData.")
    assert len(res.stderr.strip().splitlines()) == 1
    assert _files(fleet) == before


def test_fleet_reseal_refuses_one_certificate_for_several_clusters(fleet):
    before = _renew_and_seal_two(fleet)
    res = ksecrets_in_process(
        "reseal", "--env", "production", *_all_old_keys(fleet), "--cert", str(fleet / "certs" / "prod-a.pem"),
        "--root", str(fleet), env=_env(),
    )  # fmt: skip
    assert res.returncode == 2 and "--cert is one cluster's certificate: name one stack" in res.stderr
    assert _files(fleet) == before


# --- a fleet's reseal on every core: where the work runs, the same files, two runs at once ----------


def _renewed_key(fleet: Path, stack: str) -> Path:
    renewed = fleet / "keys" / f"{stack}-renewed.key"
    return renewed if renewed.exists() else fleet / "keys" / f"{stack}.key"


def _opened_text(fleet: Path, stack: str) -> str:
    """The stack file's text with each ciphertext replaced by what it decrypts to with the cluster's
    current key (sealing is randomised: a fresh session key and OAEP seed per value, so two runs
    never write the same ciphertext); everything else is the file's own bytes."""
    from ksecrets.sealing import crypto

    text = (fleet / f"Pulumi.{stack}.yaml").read_text()
    key = serialization.load_pem_private_key(_renewed_key(fleet, stack).read_bytes(), None)
    for entry in yaml.safe_load(text)["config"].get("k8s-secrets:sealed") or []:
        label = crypto.label_for(entry["scope"], entry["namespace"], entry["name"])
        for value in entry["encryptedData"].values():
            plain = crypto.decrypt_value([key], value, label)  # type: ignore[list-item]
            assert text.count(value) == 1
            text = text.replace(value, f"<sealed {plain!r}>")
    return text


@pytest.mark.parametrize("many", ["2", "4"])
def test_fleet_reseal_in_several_processes_writes_what_one_process_writes(fleet, tmp_path, many):
    """--jobs 1 and --jobs 2 (a stack per task) or 4 (more jobs than the three clusters: each
    stack's entries in slices) on copies of one fleet: every stack file is the same, byte for
    byte, but for the ciphertexts (random by design), which open to the same values with the
    renewed keys; the same lines are printed, in the same order."""
    _renew_and_seal_two(fleet)
    copies = {}
    for jobs in ("1", many):
        root = tmp_path / f"jobs{jobs}" / "repo"
        shutil.copytree(fleet, root)
        res = ksecrets_in_process(
            "reseal", "--env", "production", *_all_old_keys(root), "--jobs", jobs, "--root", str(root), env=_env()
        )
        assert res.returncode == 0, res.stderr
        copies[jobs] = (res.stderr, {s: _opened_text(root, s) for s in (*CLUSTERS, "staging")})
    assert copies["1"] == copies[many]
    assert "<sealed b'canary-one'>" in copies[many][1]["prod-a"]


def _three_secrets(fleet: Path) -> None:
    """prod-a renewed, with three Secrets sealed for its old key (one keeps a comment)."""
    (fleet / "environments" / "production.yaml").write_text(
        ENVIRONMENT
        + "".join(f"  - name: app{i}\n    namespace: app{i}\n    secretName: app{i}-secrets\n" for i in (1, 2))
    )
    env_file = fleet.parent / "v.env"
    for name in (NAME, "app1-secrets", "app2-secrets"):
        env_file.write_text(f"API_KEY=canary-{name}\nEQ=a=b\n")
        res = ksecrets_in_process(
            "seal", "--stack", "prod-a", "--name", name, "--from-env-file", str(env_file), "--root", str(fleet),
            env=_env(),
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
    path = fleet / "Pulumi.prod-a.yaml"
    text = path.read_text()
    assert "\n    - name: app1-secrets\n" in text
    path.write_text(
        text.replace("\n    - name: app1-secrets\n", "\n    # the billing team's\n    - name: app1-secrets\n")
    )
    _keypair(fleet, "prod-a", tag="-renewed")


def test_one_stack_is_resealed_on_every_core_and_written_as_by_one_process(fleet, tmp_path, monkeypatch):
    """One cluster with --jobs 2: its entries' RSA is cut into slices that run in the two workers,
    its file's round trip in a worker; the file is what --jobs 1 writes (but for the ciphertexts),
    its comment kept, the same lines printed."""
    from ksecrets.sealing import crypto
    from ksecrets.usecases import seal_stack

    _three_secrets(fleet)
    seen = tmp_path / "pids"
    real_decrypt, real_prepare = crypto.hybrid_decrypt, seal_stack.prepare_stack_update

    def note(what: str) -> None:
        with open(seen, "a") as f:  # the workers fork from this process: they note too
            f.write(f"{what} {os.getpid()}\n")

    monkeypatch.setattr(crypto, "hybrid_decrypt", lambda *a: note("decrypt") or real_decrypt(*a))
    monkeypatch.setattr(seal_stack, "prepare_stack_update", lambda *a, **k: note("prepare") or real_prepare(*a, **k))
    copies = {}
    for jobs in ("1", "2"):
        root = tmp_path / f"jobs{jobs}" / "repo"
        shutil.copytree(fleet, root)
        seen.unlink(missing_ok=True)
        res = ksecrets_in_process(
            "reseal", "--stack", "prod-a", *_all_old_keys(root), "--jobs", jobs, "--root", str(root), env=_env()
        )
        assert res.returncode == 0, res.stderr
        assert "re-sealed 3 Secret(s)" in res.stderr
        rows = [line.split() for line in seen.read_text().splitlines()]
        copies[jobs] = (res.stderr.replace(str(root), "ROOT"), _opened_text(root, "prod-a"))  # decrypts too
        assert sorted(what for what, _ in rows) == ["decrypt"] * 6 + ["prepare"]
        pids = {what: {pid for w, pid in rows if w == what} for what in ("decrypt", "prepare")}
        if jobs == "1":
            assert pids == {"decrypt": {str(os.getpid())}, "prepare": {str(os.getpid())}}
        else:
            assert len(pids["decrypt"]) == 2 and str(os.getpid()) not in pids["decrypt"] | pids["prepare"]
    assert copies["1"] == copies["2"]
    assert "\n    # the billing team's\n    - name: app1-secrets\n" in copies["2"][1]
    assert "<sealed b'canary-app2-secrets'>" in copies["2"][1]


def _record_pids(monkeypatch, module, name: str, log: Path, label) -> None:
    """`module.name` patched to append "<pid> <label(args)>" to `log` before each call. The reseal
    workers fork from this process, so their calls are recorded too."""
    real = getattr(module, name)

    def recording(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {label(*args, **kwargs)}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)


def test_one_stack_cut_into_slices_is_loaded_once_by_the_parent_not_by_each_worker(fleet, tmp_path, monkeypatch):
    """One cluster with --jobs 2: the stack's config is loaded once, in the process that holds the
    lock, and reaches the slices' workers by the fork (each worker loading the whole stack again
    was 0.17 s of CPU per slice of a 200-app stack: --jobs 2 cost more CPU than --jobs 1)."""
    from ksecrets.usecases import seal_stack

    _three_secrets(fleet)
    seen = tmp_path / "pids"
    _record_pids(monkeypatch, seal_stack, "load_stack", seen, lambda stack, *a, **k: stack)
    res = ksecrets_in_process(
        "reseal", "--stack", "prod-a", *_all_old_keys(fleet), "--jobs", "2", "--root", str(fleet), env=_env()
    )
    assert res.returncode == 0, res.stderr
    assert "re-sealed 3 Secret(s)" in res.stderr
    assert [line.split() for line in seen.read_text().splitlines()] == [[str(os.getpid()), "prod-a"]]


def test_fleet_reseal_reads_edits_and_checks_each_stack_file_in_the_workers(fleet, tmp_path, monkeypatch):
    """The stack files' round trip (ruamel's load and dump, and the config loader's check of the
    result) is most of a reseal's time: with --jobs 2 it runs in the worker processes, not in the
    process that holds the locks and writes."""
    from ksecrets.usecases import seal_stack

    before = _renew_and_seal_two(fleet)
    seen = tmp_path / "pids"
    _record_pids(monkeypatch, seal_stack, "prepare_stack_update", seen, lambda path, *a, **k: Path(path).name)
    res = ksecrets_in_process(
        "reseal", "--env", "production", *_all_old_keys(fleet), "--jobs", "2", "--root", str(fleet), env=_env()
    )
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in seen.read_text().splitlines()]
    # prod-b was already sealed for its certificate: its file is not even read for a round trip
    assert sorted(name for _, name in rows) == ["Pulumi.prod-a.yaml", "Pulumi.prod-c.yaml"]
    assert str(os.getpid()) not in {pid for pid, _ in rows}
    assert _files(fleet)["Pulumi.prod-b.yaml"] == before["Pulumi.prod-b.yaml"]


def test_what_a_reseal_worker_sends_back_holds_no_plaintext(fleet):
    """A worker's answer crosses a pipe as a pickle: ciphertexts, digests and file text only."""
    import pickle

    from ksecrets.usecases import seal_stack

    _renew_and_seal_two(fleet)
    ders = [
        serialization.load_pem_private_key((fleet / "keys" / f"{s}.key").read_bytes(), None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for s in CLUSTERS
    ]
    seal_stack._init_worker(ders)
    try:
        answer = seal_stack._worker_reseal((str(fleet), "prod-a", base64.b64decode(SEAL_KEY), False))
    finally:
        seal_stack._WORKER_KEYS.clear()
    assert answer is not None and answer[1] is not None and answer[1].changed
    data = pickle.dumps(answer)
    assert b"canary" not in data and b"a=b" not in data
    assert base64.b64decode(SEAL_KEY) not in data


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_fleet_reseal_whose_write_fails_midway_restores_every_stack_file(fleet, monkeypatch, jobs):
    before = _renew_and_seal_two(fleet)
    writes = _fail_the_second_write(monkeypatch)
    res = ksecrets_in_process(
        "reseal", "--env", "production", *_all_old_keys(fleet), "--jobs", jobs, "--root", str(fleet), env=_env()
    )
    assert res.returncode == 2
    assert res.stderr == "ksecrets: Pulumi.prod-c.yaml: cannot write it (No space left on device); nothing changed\n"
    assert writes == ["Pulumi.prod-a.yaml", "Pulumi.prod-c.yaml"]  # the stacks' order, whatever the jobs
    assert _files(fleet) == before


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_fleet_reseal_refuses_a_key_that_fails_rsas_checks(fleet, jobs):
    """With several jobs the keys are loaded unchecked and their RSA checks run in the workers:
    a damaged key (its CRT exponent changed) is still refused, in one line, and nothing changes."""
    before = _renew_and_seal_two(fleet)
    good = serialization.load_pem_private_key((fleet / "keys" / "prod-a.key").read_bytes(), None)
    n = good.private_numbers()  # type: ignore[union-attr]
    damaged = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers)
    bad = fleet.parent / "damaged.key"
    bad.write_bytes(
        damaged.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    keys = _all_old_keys(fleet)
    res = ksecrets_in_process(
        "reseal", "--env", "production", keys[0], f"{keys[1]},{bad}", "--jobs", jobs, "--root", str(fleet), env=_env()
    )
    assert (res.returncode, res.stderr) == (2, f"ksecrets: {bad}: not a PEM private key\n")
    assert _files(fleet) == before


def _start(root: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ksecrets", *argv],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_a_fleet_reseal_and_a_seal_env_at_once_lose_no_update(fleet):
    """Two real processes at once on a renewed fleet: `reseal --jobs 2` (its workers read the stack
    files while their parent holds the locks) and `seal --env` of every key with new values and a
    new key. The test holds every stack file until both wait on a lock. Whichever goes first, the
    end is the same: every cluster holds the seal's values (NEW too) sealed for its renewed
    certificate; a reseal that read a file before the seal's write and wrote after would lose NEW."""
    _renew_and_seal_two(fleet)
    values = fleet.parent / "new.env"
    values.write_text("API_KEY=canary-new\nEMPTY=\nEQ=c=d\nNEW=canary-added\n")
    stacks = sorted(CLUSTERS)
    fds = [os.open(fleet / f"Pulumi.{s}.yaml", os.O_RDONLY) for s in stacks]
    procs: list[subprocess.Popen] = []
    try:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX)
        procs.append(_start(fleet, "reseal", "--env", "production", *_all_old_keys(fleet), "--jobs", "2"))
        procs.append(_start(fleet, "seal", "--env", "production", "--name", NAME, "--from-env-file", str(values)))
        for p in procs:
            _wait_for(lambda: any("->" in line for line in _lock_lines(p.pid)), f"{p.args[3]} to wait")  # noqa: B023
    except BaseException:
        _finish(procs, 0.1)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    results = _finish(procs, timeout=120)
    assert [code for code, _ in results] == [0, 0], results
    for stack in CLUSTERS:
        opened = _unseal(fleet, stack, _renewed_key(fleet, stack))
        assert opened.returncode == 0, (stack, opened.stderr)
        data = {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(opened.stdout)["data"].items()}
        assert data == {"API_KEY": "canary-new", "EMPTY": "", "EQ": "c=d", "NEW": "canary-added"}, stack
    assert ksecrets_in_process("verify", "--env", "production", "--root", str(fleet)).returncode == 0
    assert ksecrets_in_process("drift", "--env", "production", "--root", str(fleet)).returncode == 0

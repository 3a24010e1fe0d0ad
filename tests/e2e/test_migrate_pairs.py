"""Issue 20 §3: `ksecrets migrate --stack S --to B` for every pair of sealed-secrets, sops and vault
(and manual as a source), property-tested: generated value sets migrated A -> B -> A come back equal,
every key included (empty values, `=`, newlines, UTF-8; bytes that are not UTF-8 between sealed-secrets
and sops, which both hold bytes).

Real: the sealing crypto (RSA-OAEP + AES-GCM of `ksecrets/sealing`, the shared known-answer key pair as
the controller's key), SOPS with age (pyrage, the project's SOPS format), a real Vault dev server
(v1.21.2 from the e2e tool cache, harness/vault.py, kv-v2 at secret/) and the real `ksecrets` command
line (in process) for every migration. The source is filled independently of `migrate` (`seal
--stack`'s use case, SOPS files encrypted directly, hvac writes), and every intermediate state is read
back with the backend's own reader. No cluster: that is test_flux_migrate*.py. Manual's values are read
through the real `pulumi` CLI (test_manual_source_through_the_real_pulumi_cli) and, for every target,
through a stand-in returning `pulumi config --show-secrets --json`'s format
(test_manual_source_reads_pulumi_config).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksecrets.config.load import load_stack
from ksecrets.sealing import sops
from ksecrets.usecases import migrate
from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack
from tests.conftest import VECTORS, ksecrets_in_process
from tests.e2e.harness import binaries, missing_binaries
from tests.e2e.harness.vault import DevVault

STACK = "mig"
APPS = (("web", "web", "web-secrets"), ("api", "api", "api-secrets"))  # (name, namespace, secretName)
BACKENDS = ("sealed-secrets", "sops", "vault")
PAIRS = [(a, b) for a in BACKENDS for b in BACKENDS if a != b]
KEY_NAMES = ("DATABASE_URL", "API_KEY", "EMPTY", "MULTI_EQUALS", "NOTE", "a.b-c_d", "X", "LONG_VALUE")
TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "=", "a=b=c", "line1\nline2\n", " spaced ", "ünïcode", "\t\r\n", "#not-a-comment"]),
)
BINARY = st.binary(max_size=48)
COUNTS: Counter[str] = Counter()


def value_sets(binary: bool):
    values = st.one_of(TEXT.map(str.encode), BINARY) if binary else TEXT.map(str.encode)
    one = st.dictionaries(st.sampled_from(KEY_NAMES), values, min_size=1, max_size=6)
    return st.fixed_dictionaries({sec: one for _, _, sec in APPS})


@pytest.fixture(scope="module")
def vault(e2e_dir: Path):
    if missing_binaries(["vault"]):
        pytest.skip("vault not built: run `make e2e-tools`")
    v = DevVault(e2e_dir / "migrate-pairs-vault", binaries()["vault"]).start()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    import json

    folder = tmp_path_factory.mktemp("keys")
    vec = json.loads(VECTORS.read_text())
    (folder / "sealing.pem").write_text(vec["private_key_pem"])
    (folder / "cert.pem").write_text(vec["certificate_pem"])
    age = sops.generate_age_key()
    (folder / "stack.agekey").write_text(age.key_file())
    return {"folder": folder, "age": age}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if COUNTS:
        print("\nmigrate pairs:", ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))


def stack_text(backend: str, recipient: str, vault_addr: str) -> str:
    doc: dict = {
        "config": {
            "kubernetes:context": STACK,
            "k8s-secrets:backend": backend,
            "k8s-secrets:monitoring": {"enabled": False},
            "k8s-secrets:apps": [{"name": n, "namespace": ns, "secretName": s} for n, ns, s in APPS],
        }
    }
    if backend == "sealed-secrets":
        doc["config"]["k8s-secrets:sealedSecrets"] = {"certificate": f"certs/{STACK}.pem"}
    if backend == "sops":
        doc["config"]["k8s-secrets:sops"] = {"recipients": [recipient]}
    if backend == "vault":
        doc["config"]["k8s-secrets:vault"] = {"address": vault_addr}
    return yaml.safe_dump(doc, sort_keys=False)


def seed(root: Path, backend: str, data: dict[str, dict[str, bytes]], keys, vault) -> None:
    """Put the values into the source backend without `migrate` (the backend's own writer)."""
    for name, ns, secret in APPS:
        values = data[secret]
        if backend == "sealed-secrets":
            seal_into_stack(root, STACK, SealRequest(name=secret, values=values, namespace=ns))
        elif backend == "sops":
            rel = f"secrets/{STACK}/{secret}.sops.yaml"
            manifest = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": ns},
                "type": "Opaque",
                "data": {k: base64.b64encode(v).decode() for k, v in values.items()},
            }
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(sops.encrypt_secret(manifest, [keys["age"].recipient], rel))
        else:
            vault.client().secrets.kv.v2.create_or_update_secret(
                path=f"{STACK}-{name}", secret={k: v.decode() for k, v in values.items()}, mount_point="secret"
            )
    if backend == "vault":  # the stack's apps read those paths
        path = root / f"Pulumi.{STACK}.yaml"
        doc = yaml.safe_load(path.read_text())
        for app in doc["config"]["k8s-secrets:apps"]:
            app["vault"] = {"path": f"{STACK}-{app['name']}"}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))


def read_back(root: Path, keys, vault) -> dict[str, dict[str, bytes]]:
    """Every Secret of the stack as its current backend holds it, decrypted with the real keys."""
    from ksecrets.sealing.keys import load_recovery_keys

    cfg = load_stack(STACK, root)
    material = migrate.Material(
        private_keys=load_recovery_keys((keys["folder"] / "sealing.pem").read_bytes(), "sealing.pem"),
        age_identities=[keys["age"].identity],
        vault_client=vault.client(),
    )
    return {s.name: dict(s.values) for s in migrate.read_values(cfg, material)}


def run_migrate(root: Path, to: str, keys, vault) -> str:
    args = ["migrate", "--stack", STACK, "--to", to, "--root", str(root)]
    args += ["--recovery-private-key", str(keys["folder"] / "sealing.pem")]
    args += ["--age-recipient", keys["age"].recipient]
    env = dict(os.environ, SOPS_AGE_KEY_FILE=str(keys["folder"] / "stack.agekey"), **vault.env())
    env.pop("KSECRETS_SEAL_KEY", None)
    res = ksecrets_in_process(*args, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout


def backend_of(root: Path) -> str:
    return load_stack(STACK, root).backend


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}->{b}->{a}" for a, b in PAIRS])
def test_round_trip_keeps_every_value(a: str, b: str, keys, vault):
    binary = "vault" not in (a, b)

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=value_sets(binary))
    def check(data):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "certs").mkdir()
            (root / "certs" / f"{STACK}.pem").write_bytes((keys["folder"] / "cert.pem").read_bytes())
            (root / f"Pulumi.{STACK}.yaml").write_text(stack_text(a, keys["age"].recipient, vault.address))
            seed(root, a, data, keys, vault)
            assert read_back(root, keys, vault) == data
            out = run_migrate(root, b, keys, vault)
            n = sum(len(v) for v in data.values())
            if (a, b) != ("sealed-secrets", "vault"):  # that pair runs vault_migrate (its own report)
                assert f"{n} values moved from {a} to {b}" in out, out
            else:
                assert "backend switched to vault" in out, out
            assert backend_of(root) == b
            assert read_back(root, keys, vault) == data, f"{a} -> {b}"
            run_migrate(root, a, keys, vault)
            assert backend_of(root) == a
            assert read_back(root, keys, vault) == data, f"{a} -> {b} -> {a}"
            COUNTS[f"{a}->{b}->{a} cases"] += 1
            COUNTS[f"{a}->{b}->{a} values"] += n

    check()


def test_manual_source_reads_pulumi_config(keys, vault, tmp_path):
    """manual -> sops/sealed/vault: the values of `pulumi config --show-secrets --json` (its
    format: `objectValue` of `k8s-secrets:manualValues`) move; manual cannot be a target."""
    data = {"web-secrets": {"API_KEY": b"a=b", "EMPTY": b"", "MULTI": b"x\ny"}, "api-secrets": {"X": b"1"}}
    pulumi_json = {
        "k8s-secrets:manualValues": {
            "objectValue": {s: {k: v.decode() for k, v in vals.items()} for s, vals in data.items()},
            "secret": True,
        }
    }
    for to in ("sops", "sealed-secrets", "vault"):
        root = tmp_path / to
        root.mkdir()
        (root / "certs").mkdir()
        (root / "certs" / f"{STACK}.pem").write_bytes((keys["folder"] / "cert.pem").read_bytes())
        (root / f"Pulumi.{STACK}.yaml").write_text(stack_text("manual", "", ""))
        material = migrate.Material(
            age_recipients=[keys["age"].recipient],
            age_identities=[keys["age"].identity],
            vault_client=vault.client(),
            pulumi_config=lambda cfg: pulumi_json,
        )
        report = migrate.migrate(root, STACK, to, material)
        assert report.switched and report.values == 4
        assert read_back(root, keys, vault) == data
        COUNTS[f"manual->{to} values"] += report.values
    res = ksecrets_in_process("migrate", "--stack", STACK, "--to", "manual", "--root", str(tmp_path / "sops"))
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_manual_source_through_the_real_pulumi_cli(keys, e2e_dir: Path):
    """manual -> sops with the real `pulumi` (v3.274, the tool cache): values set with `pulumi
    config set --secret --path` (passphrase provider, local file backend) are read by `ksecrets
    migrate` through `pulumi config --show-secrets --json` and land in the SOPS files."""
    from tests.e2e.harness.pulumi import PulumiProject

    if missing_binaries(["pulumi", "pulumi-language-python", "pulumi-resource-kubernetes"]):
        pytest.skip("pulumi not built: run `make e2e-tools`")
    project = PulumiProject(
        e2e_dir / "migrate-manual", binaries(), STACK, stack_file=stack_text("manual", "", ""), context=None
    ).init()
    data = {
        "web-secrets": {"API_KEY": "a=b=c", "MULTI": "line1\nline2", "UNICODE": "ünïcode", "SPACES": " x "},
        "api-secrets": {"TOKEN": "t0k3n"},
    }
    for secret, values in data.items():
        for key, value in values.items():
            project.run("config", "set", "--secret", "--path", f"k8s-secrets:manualValues.{secret}.{key}", value)
    stack_file = (project.project / f"Pulumi.{STACK}.yaml").read_text()
    assert "a=b=c" not in stack_file and "t0k3n" not in stack_file  # Pulumi encrypted them
    env = project.env({"SOPS_AGE_KEY_FILE": str(keys["folder"] / "stack.agekey")})
    res = ksecrets_in_process(
        "migrate", "--stack", STACK, "--to", "sops", "--age-recipient", keys["age"].recipient,
        "--root", str(project.project), env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "5 values moved from manual to sops; backend switched to sops" in res.stdout, res.stdout
    for secret, values in data.items():
        rel = project.project / "secrets" / STACK / f"{secret}.sops.yaml"
        got = sops.secret_values(rel.read_text(), [keys["age"].identity], secret)
        assert {k: v.decode() for k, v in got.items()} == values
    COUNTS["manual->sops values (real pulumi)"] += 5

"""`ksecrets migrate` between any two backends (issue 20 §3), the parts that need no Vault and no
cluster: each backend module's capabilities and switch, the `release` phase of a sealed-secrets
stack, and the refusals (nothing written). The round trips with the real crypto and a real Vault
are tests/e2e/test_migrate_pairs.py; through Git with the real Flux, test_flux_migrate_sops.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from ksecrets import backends
from ksecrets.config.load import load_stack
from ksecrets.sealing import sops
from ksecrets.usecases import migrate
from ksecrets.usecases.stack_facts import plan_stack

STACK = """\
config:
  kubernetes:context: dev
  k8s-secrets:backend: {backend}
  k8s-secrets:monitoring:
    enabled: false
  k8s-secrets:apps:
    - name: web
      namespace: web
      secretName: web-secrets
"""


def test_every_backend_says_what_migrate_can_do():
    can = {b.name: (b.migrate_out, b.migrate_in) for b in backends.all_specs()}
    assert can == {
        "manual": (True, False),
        "sealed-secrets": (True, True),
        "vault": (True, True),
        "sops": (True, True),
    }
    for b in backends.all_specs():
        assert b.migrate_material()  # what the source needs, for the errors


@pytest.mark.parametrize("to", ["sops", "vault", "sealed-secrets"])
def test_switch_makes_a_config_the_target_backend_and_keeps_the_old_values(to):
    config = yaml.safe_load(STACK.format(backend="manual"))["config"]
    config["k8s-secrets:sealed"] = [{"name": "x"}]
    backends.get(to).migrate_switch(config, "dev", "k8s-secrets:", {("web", "web"): ["A", "B"]})
    assert config["k8s-secrets:backend"] == to
    assert config["k8s-secrets:sealed"] == [{"name": "x"}]  # switching back is one line
    if to in ("vault", "sops"):  # until --finish
        assert config["k8s-secrets:vaultMigration"] == "handover"
    if to == "vault":
        assert config["k8s-secrets:apps"][0]["vault"] == {"path": "web"}
        assert config["k8s-secrets:apps"][0]["keys"] == ["A", "B"]
    if to == "sealed-secrets":
        assert "k8s-secrets:vaultMigration" not in config
    if to == "sealed-secrets":
        assert config["k8s-secrets:sealedSecrets"]["certificate"] == "certs/dev.pem"


def test_release_phase_adds_the_handover_annotations_and_no_vault(tmp_path, cli):
    (tmp_path / "Pulumi.dev.yaml").write_text(
        STACK.format(backend="sealed-secrets") + "  k8s-secrets:sealedSecrets:\n    certificate: certs/dev.pem\n"
    )
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--prepare", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert "vaultMigration: release: Pulumi.dev.yaml" in r.out
    cfg = load_stack("dev", tmp_path)
    assert cfg.vault_migration == "release" and cfg.vault is None
    # A second --prepare writes nothing.
    again = cli("migrate", "--stack", "dev", "--to", "sops", "--prepare", "--root", str(tmp_path))
    assert again.code == 0 and "nothing to change" in again.out


def test_release_annotations_on_the_sealed_secret(tmp_path, cert_pem_and_key):
    from ksecrets.manifests.sealed_secrets import HANDOVER_ANNOTATIONS, sealed_secret
    from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack

    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/dev.pem").write_bytes(cert_pem_and_key[0])
    text = STACK.format(backend="sealed-secrets") + "  k8s-secrets:sealedSecrets:\n    certificate: certs/dev.pem\n"
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    seal_into_stack(tmp_path, "dev", SealRequest(name="web-secrets", values={"A": b"1"}, namespace="web"))

    def annotations() -> dict:
        cfg = load_stack("dev", tmp_path)
        meta = sealed_secret(cfg, cfg.sealed[0])["spec"]["template"].get("metadata") or {}
        return meta.get("annotations") or {}

    # Without the phase the SealedSecret owns its Secret, as before.
    assert not HANDOVER_ANNOTATIONS.items() <= annotations().items()
    migrate.prepare(tmp_path, "dev", "sops")
    assert HANDOVER_ANNOTATIONS.items() <= annotations().items()


def test_release_phase_is_for_a_sealed_stack_only(tmp_path, cli):
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK.format(backend="sops") + "  k8s-secrets:vaultMigration: release\n")
    r = cli("doctor", "--stack", "dev", "--root", str(tmp_path))
    assert r.code != 0 and "phase release needs backend manual, sealed-secrets or vault, not sops" in (r.err + r.out)


def _sops_stack(root: Path) -> sops.AgeKey:
    key = sops.generate_age_key()
    (root / "Pulumi.dev.yaml").write_text(
        STACK.format(backend="sops") + f"  k8s-secrets:sops:\n    recipients: [{key.recipient}]\n"
    )
    rel = "secrets/dev/web-secrets.sops.yaml"
    (root / "secrets/dev").mkdir(parents=True)
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-secrets", "namespace": "web"},
        "type": "Opaque",
        "data": {"A": base64.b64encode(b"x=y\n").decode(), "EMPTY": "", "BIN": base64.b64encode(b"\xff\x00").decode()},
    }
    (root / rel).write_text(sops.encrypt_secret(manifest, [key.recipient], rel))
    return key


def test_sops_to_vault_refuses_bytes_vault_cannot_hold_before_writing(tmp_path):
    key = _sops_stack(tmp_path)
    before = (tmp_path / "Pulumi.dev.yaml").read_bytes()

    class NoVault:  # any call would be a write: there must be none
        def __getattr__(self, name):
            raise AssertionError(f"Vault called: {name}")

    material = migrate.Material(age_identities=[key.identity], vault_client=NoVault())
    with pytest.raises(Exception) as e:
        migrate.migrate(tmp_path, "dev", "vault", material)
    assert "key BIN: not UTF-8" in str(e.value) and "\\xff" not in str(e.value)
    assert (tmp_path / "Pulumi.dev.yaml").read_bytes() == before


def test_sops_source_without_the_age_key_says_which_key(tmp_path, cli, monkeypatch):
    _sops_stack(tmp_path)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    r = cli("migrate", "--stack", "dev", "--to", "sealed-secrets", "--root", str(tmp_path))
    assert r.code == 2 and r.err.count("\n") == 1 and "--age-key-file" in r.err


def test_sops_to_sealed_needs_the_certificate_and_writes_nothing(tmp_path, cli):
    key = _sops_stack(tmp_path)
    (tmp_path / "dev.agekey").write_text(key.key_file())
    before = (tmp_path / "Pulumi.dev.yaml").read_bytes()
    r = cli(
        "migrate", "--stack", "dev", "--to", "sealed-secrets", "--age-key-file", str(tmp_path / "dev.agekey"),
        "--root", str(tmp_path),
    )  # fmt: skip
    assert r.code == 2 and "certs/dev.pem does not exist" in r.err
    assert (tmp_path / "Pulumi.dev.yaml").read_bytes() == before


def test_sops_to_sealed_keeps_type_and_every_key(tmp_path, cli, cert_pem_and_key):
    cert, key_pem = cert_pem_and_key
    key = _sops_stack(tmp_path)
    (tmp_path / "dev.agekey").write_text(key.key_file())
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/dev.pem").write_bytes(cert)
    r = cli(
        "migrate", "--stack", "dev", "--to", "sealed-secrets", "--age-key-file", str(tmp_path / "dev.agekey"),
        "--root", str(tmp_path),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "3 values moved from sops to sealed-secrets; backend switched to sealed-secrets" in r.out
    assert "secrets/dev/web-secrets.sops.yaml: without `migrate --prepare`" in r.err  # a warning, not an error
    cfg = load_stack("dev", tmp_path)
    assert cfg.backend == "sealed-secrets" and [e.name for e in cfg.sealed] == ["web-secrets"]
    from ksecrets.sealing.keys import load_recovery_keys

    got = migrate.read_values(cfg, migrate.Material(private_keys=load_recovery_keys(key_pem, "k")))
    assert [dict(s.values) for s in got] == [{"A": b"x=y\n", "EMPTY": b"", "BIN": b"\xff\x00"}]
    kinds = sorted({p.obj["kind"] for p in plan_stack(cfg)})
    assert "SealedSecret" in kinds


@pytest.fixture(scope="module")
def cert_pem_and_key():
    import json

    from tests.conftest import VECTORS

    vec = json.loads(VECTORS.read_text())
    return vec["certificate_pem"].encode(), vec["private_key_pem"].encode()


@pytest.mark.parametrize("to", ["sealed-secrets", "vault"])
def test_sops_prepare_annotates_the_files_and_keeps_every_value(tmp_path, cli, to):
    key = _sops_stack(tmp_path)
    (tmp_path / "dev.agekey").write_text(key.key_file())
    rel = "secrets/dev/web-secrets.sops.yaml"
    before = sops.secret_values((tmp_path / rel).read_text(), [key.identity], rel)
    r = cli("migrate", "--stack", "dev", "--to", to, "--prepare", "--root", str(tmp_path))
    assert r.code == 2 and "--age-key-file" in r.err  # it re-encrypts: the key is needed
    args = ["migrate", "--stack", "dev", "--to", to, "--prepare", "--age-key-file", str(tmp_path / "dev.agekey")]
    r = cli(*args, "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert rel in r.out
    text = (tmp_path / rel).read_text()
    assert sops.secret_values(text, [key.identity], rel) == before
    meta = sops.decrypt(text, [key.identity], rel)["metadata"]
    assert meta["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    assert ("sealedsecrets.bitnami.com/managed" in meta["annotations"]) == (to == "sealed-secrets")
    # The exporter takes it as it is (the checks of a SOPS file still pass), and a second run is a no-op.
    assert cli("export", "--root", str(tmp_path)).code == 0
    again = cli(*args, "--root", str(tmp_path))
    assert again.code == 0 and "nothing to change" in again.out


def test_sealed_to_sops_handover_keeps_the_applier_able_to_prune_and_the_pods_unrolled(tmp_path, cli, cert_pem_and_key):
    """Found by the real kustomize-controller (test_flux_migrate_sops.py): after the switch the apps
    layer holds no SealedSecret, and an applier Role made from what it holds cannot delete them
    ("delete failed ... sealedsecrets ... is forbidden"). In `handover` it keeps those rights and
    the pod template keeps the sealed checksum (nothing rolls at the switch); `--finish` ends both."""
    from ksecrets.manifests.workloads import SECRET_CHECKSUM
    from ksecrets.usecases.seal_stack import SealRequest, seal_into_stack

    cert, key_pem = cert_pem_and_key
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/dev.pem").write_bytes(cert)
    stack = STACK.format(backend="sealed-secrets") + "  k8s-secrets:sealedSecrets:\n    certificate: certs/dev.pem\n"
    stack = stack.replace(
        "      secretName: web-secrets\n",
        "      secretName: web-secrets\n      deployments:\n        - name: web\n"
        "          image: ghcr.io/stefanprodan/podinfo:6.7.1\n          envFrom: true\n",
    )
    (tmp_path / "Pulumi.dev.yaml").write_text(stack)
    seal_into_stack(tmp_path, "dev", SealRequest(name="web-secrets", values={"A": b"1"}, namespace="web"))
    (tmp_path / "key.pem").write_bytes(key_pem)

    def state():
        cfg = load_stack("dev", tmp_path)
        planned = [p.obj for p in plan_stack(cfg)]
        roles = [o for o in planned if o["kind"] == "Role" and o["metadata"]["name"] == "dev-apps-applier"]
        rules = {r for role in roles for rule in role["rules"] for r in rule.get("resources", [])}
        dep = next(o for o in planned if o["kind"] == "Deployment")
        ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
        return cfg, "sealedsecrets" in rules, ann.get(SECRET_CHECKSUM)

    _, _, checksum = state()
    assert checksum
    key = sops.generate_age_key()
    r = cli(
        "migrate", "--stack", "dev", "--to", "sops", "--recovery-private-key", str(tmp_path / "key.pem"),
        "--age-recipient", key.recipient, "--root", str(tmp_path),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "--to sops --finish" in r.out
    cfg, can_prune, during = state()
    assert cfg.backend == "sops" and cfg.vault_migration == "handover"
    assert can_prune and during == checksum
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--finish", "--root", str(tmp_path))
    assert r.code == 0, r.err
    cfg, can_prune, after = state()
    assert cfg.vault_migration is None and not can_prune and after is None


VAULT_STACK = (
    STACK.format(backend="vault").replace(
        "      secretName: web-secrets\n",
        "      secretName: web-secrets\n      vault:\n        path: web\n      deployments:\n        - name: web\n"
        "          image: ghcr.io/stefanprodan/podinfo:6.7.1\n          envFrom: true\n",
    )
    + "  k8s-secrets:delivery: flux\n  k8s-secrets:vault:\n    address: https://vault.example:8200\n"
)
OPERATOR_NS = "vault-secrets-operator-system"


def _by_kind(tmp_path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in plan_stack(load_stack("dev", tmp_path)):
        out.setdefault(p.obj["kind"], []).append(p.obj)
    return out


def _operator_rights(objs: dict[str, list[dict]]) -> dict[str, set[str]]:
    """namespace -> the operator's resources the apps applier may delete there."""
    out: dict[str, set[str]] = {}
    for role in objs.get("Role", []):
        if role["metadata"]["name"] != "dev-apps-applier":
            continue
        for rule in role["rules"]:
            if rule.get("apiGroups") == ["secrets.hashicorp.com"] and "delete" in rule["verbs"]:
                out.setdefault(role["metadata"]["namespace"], set()).update(rule["resources"])
    return out


@pytest.mark.parametrize("to", ["sealed-secrets", "sops"])
def test_a_vault_stack_prepares_by_releasing_its_secrets(tmp_path, cli, to):
    """`--prepare` of a vault stack: `release`, its VaultStaticSecrets left by Flux when the switch
    drops them (`prune: disabled`: the operator's Secret carries the VaultStaticSecret's
    ownerReference and Flux prunes in the background, so the garbage collector would delete it) and
    having the operator write the controller's `managed` annotation (a SealedSecret then takes the
    Secret over in place). No pod template changes."""
    (tmp_path / "Pulumi.dev.yaml").write_text(VAULT_STACK)
    before = _by_kind(tmp_path)
    (vss,) = before["VaultStaticSecret"]
    assert "annotations" not in vss["metadata"] and "annotations" not in vss["spec"]["destination"]
    r = cli("migrate", "--stack", "dev", "--to", to, "--prepare", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert "vaultMigration: release: Pulumi.dev.yaml" in r.out
    cfg = load_stack("dev", tmp_path)
    assert cfg.backend == "vault" and cfg.vault_migration == "release" and cfg.installs_vault
    after = _by_kind(tmp_path)
    (vss,) = after["VaultStaticSecret"]
    assert vss["metadata"]["annotations"] == {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
    assert vss["spec"]["destination"]["annotations"] == {"sealedsecrets.bitnami.com/managed": "true"}
    assert vss["spec"]["destination"]["create"] is True and "overwrite" not in vss["spec"]["destination"]
    # The operator drops `_raw` (every value again, as Vault's JSON) before the handover: the next
    # backend's apply would leave that key it does not own. A running vault stack keeps it.
    assert vss["spec"]["destination"]["transformation"] == {"excludeRaw": True}
    assert "transformation" not in before["VaultStaticSecret"][0]["spec"]["destination"]
    assert after["Deployment"] == before["Deployment"]
    assert after["VaultAuth"] == before["VaultAuth"] and after["VaultConnection"] == before["VaultConnection"]
    r = cli("export", "--stack", "dev", "--root", str(tmp_path))  # the CRD schemas accept it
    assert r.code == 0, r.err


@pytest.mark.parametrize("section", ["explicit", "defaults"])
@pytest.mark.parametrize("to", ["sealed-secrets", "sops"])
def test_a_move_away_from_vault_keeps_the_operator_until_finish(
    tmp_path, cli, cert_pem_and_key, monkeypatch, to, section
):
    """The switch away from Vault drops the apps layer's VaultConnection, VaultAuths and
    VaultStaticSecrets. Had it also dropped Vault and the operator (and the operator's namespace),
    nothing would remove the operator's finalizers and the applier could not keep its rights to
    prune (the export refuses a Role in a namespace the stack does not have: the failure of
    2026-12-07 through the real Flux). `uninstall` keeps both until `--finish`; the export passes.
    The values come from a fake kv-v2 (tests/vault/fakevault.py). A vault stack on Vault's defaults
    (no `vault:` section) switches too: the e2e round trip sealed -> vault -> sealed found the
    switch refused ("phase uninstall needs a vault section")."""
    import hvac
    import responses

    from tests.vault.fakevault import FakeVault

    cert, _ = cert_pem_and_key
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/dev.pem").write_bytes(cert)
    text = VAULT_STACK
    if section == "defaults":
        text = text.replace("  k8s-secrets:vault:\n    address: https://vault.example:8200\n", "")
        assert "k8s-secrets:vault:" not in text
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    r = cli("migrate", "--stack", "dev", "--to", to, "--prepare", "--root", str(tmp_path))
    assert r.code == 0, r.err

    def releases(objs: dict[str, list[dict]]) -> set[str]:
        return {o["metadata"]["name"] for o in objs.get("HelmRelease", [])}

    before = _by_kind(tmp_path)
    assert {"vault", "vault-secrets-operator"} <= releases(before)
    assert _operator_rights(before) == {
        "web": {"vaultauths", "vaultstaticsecrets"},
        OPERATOR_NS: {"vaultconnections"},
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        vault = FakeVault(rsps)
        vault.enable_kv2("secret")
        vault.store("secret").seed("web", {"A": "1", "EMPTY": ""})
        material = migrate.Material(
            vault_client=hvac.Client(url=vault.addr, token=vault.token),
            age_recipients=[sops.generate_age_key().recipient],
        )
        report = migrate.migrate(tmp_path, "dev", to, material)
    assert report.switched and report.values == 2
    assert any("--cascade=orphan" in w for w in report.warnings), report.warnings
    cfg = load_stack("dev", tmp_path)
    assert cfg.backend == to and cfg.vault_migration == "uninstall" and cfg.installs_vault
    during = _by_kind(tmp_path)
    assert not {"VaultConnection", "VaultAuth", "VaultStaticSecret"} & during.keys()
    assert {"vault", "vault-secrets-operator"} <= releases(during)
    assert OPERATOR_NS in {n["metadata"]["name"] for n in during["Namespace"]}
    rights = _operator_rights(during)
    assert rights["web"] >= {"vaultauths", "vaultstaticsecrets"} and rights[OPERATOR_NS] == {"vaultconnections"}
    r = cli("export", "--stack", "dev", "--root", str(tmp_path))
    assert r.code == 0, r.err
    role = tmp_path / f"k8s/dev/infrastructure/role-{OPERATOR_NS}-dev-apps-applier.yaml"
    assert "vaultconnections" in role.read_text()

    assert "kubectl --context dev delete vaultstaticsecret -n web web --cascade=orphan" in " ".join(report.warnings)

    # --finish asks the cluster (kubectl with the stack's context) and refuses while a
    # VaultStaticSecret is left: uninstalling the operator would delete it and its Secret.
    kubectl = _fake_kubectl(tmp_path / "bin", monkeypatch)
    kubectl.answer(items=[_vss("web", "web", "web-secrets"), _vss("other", "db", "db")])
    stack_text = (tmp_path / "Pulumi.dev.yaml").read_bytes()
    r = cli("migrate", "--stack", "dev", "--to", to, "--finish", "--root", str(tmp_path))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
    assert "other/db (Secret db), web/web (Secret web-secrets)" in r.err, r.err
    assert "kubectl --context dev delete vaultstaticsecret -n other db --cascade=orphan" in r.err, r.err
    assert "kubectl --context dev delete vaultstaticsecret -n web web --cascade=orphan" in r.err, r.err
    assert (tmp_path / "Pulumi.dev.yaml").read_bytes() == stack_text
    assert kubectl.calls() == ["--context dev get vaultstaticsecrets.secrets.hashicorp.com --all-namespaces -o json"]
    # A cluster that cannot be asked is not "none left".
    kubectl.answer(rc=1, err="error: context was not found for specified context: dev")
    r = cli("migrate", "--stack", "dev", "--to", to, "--finish", "--root", str(tmp_path))
    assert r.code == 2 and "context was not found" in r.err, r
    assert (tmp_path / "Pulumi.dev.yaml").read_bytes() == stack_text

    kubectl.answer(items=[])
    r = cli("migrate", "--stack", "dev", "--to", to, "--finish", "--root", str(tmp_path))
    assert r.code == 0 and "vaultMigration removed" in r.out, r.err
    cfg = load_stack("dev", tmp_path)
    assert cfg.vault_migration is None and not cfg.installs_vault
    after = _by_kind(tmp_path)
    assert not {"vault", "vault-secrets-operator"} & releases(after) and _operator_rights(after) == {}
    assert OPERATOR_NS not in {n["metadata"]["name"] for n in after["Namespace"]}
    r = cli("export", "--stack", "dev", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert not role.exists()


class _FakeKubectl:
    """`kubectl` on PATH that records its arguments and gives a set answer (the real kubectl against
    a real API server is tests/e2e/test_flux_migrate_pairs.py)."""

    def __init__(self, bin_dir: Path):
        self.dir = bin_dir

    def answer(self, *, items: list | None = None, rc: int = 0, err: str = "") -> None:
        import json

        (self.dir / "out").write_text(json.dumps({"kind": "List", "items": items}) if items is not None else "")
        (self.dir / "err").write_text(err)
        (self.dir / "rc").write_text(str(rc))

    def calls(self) -> list[str]:
        path = self.dir / "argv"
        return path.read_text().splitlines() if path.exists() else []


def _fake_kubectl(bin_dir: Path, monkeypatch) -> _FakeKubectl:
    import os

    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(
        '#!/bin/sh\nd=$(dirname "$0")\necho "$@" >> "$d/argv"\ncat "$d/out"\ncat "$d/err" >&2\nexit $(cat "$d/rc")\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return _FakeKubectl(bin_dir)


def _vss(namespace: str, name: str, secret: str) -> dict:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"destination": {"name": secret}}}


def test_finish_away_from_vault_without_the_cluster_check(tmp_path, cli, monkeypatch):
    """`--no-cluster-check`: the user says no VaultStaticSecret is left; kubectl is not run. A missing
    CRD (the operator already gone) is "none left". The flag is refused without --finish."""
    text = VAULT_STACK.replace("k8s-secrets:backend: vault", "k8s-secrets:backend: sops") + (
        "  k8s-secrets:vaultMigration: uninstall\n  k8s-secrets:sops:\n    recipients: ["
        + sops.generate_age_key().recipient
        + "]\n"
    )
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    assert load_stack("dev", tmp_path).vault_migration == "uninstall"
    kubectl = _fake_kubectl(tmp_path / "bin", monkeypatch)
    kubectl.answer(items=[_vss("web", "web", "web-secrets")])
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--no-cluster-check", "--root", str(tmp_path))
    assert r.code == 2 and "--no-cluster-check: only with --finish" in r.err, r
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--finish", "--no-cluster-check", "--root", str(tmp_path))
    assert r.code == 0 and "vaultMigration removed" in r.out, r.err
    assert kubectl.calls() == []

    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    kubectl.answer(rc=1, err='error: the server doesn\'t have a resource type "vaultstaticsecrets"')
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--finish", "--root", str(tmp_path))
    assert r.code == 0 and "vaultMigration removed" in r.out, r.err
    assert len(kubectl.calls()) == 1


MANUAL_STACK = (
    STACK.format(backend="manual")
    + """\
  k8s-secrets:manualValues:
    web-secrets:
      PASSWORD:
        secure: v1:not-read-here
      TOKEN:
        secure: v1:not-read-here
"""
)


def _manual_secret(tmp_path: Path):
    (planned,) = [p for p in plan_stack(load_stack("dev", tmp_path)) if p.obj["kind"] == "Secret"]
    return planned


@pytest.mark.parametrize("to", ["sealed-secrets", "sops", "vault"])
def test_manual_prepare_keeps_the_secrets_for_the_next_backend(tmp_path, cli, to):
    """Issue 20: a manual stack's `--prepare` sets `release`: its Secrets are planned with `retain`
    (components/ registers them with retainOnDelete) and the sealed-secrets controller's `managed`
    annotation, and the next step is `pulumi up` (which records that in Pulumi's state), not a commit.
    Nothing else changes and nothing is exported."""
    (tmp_path / "Pulumi.dev.yaml").write_text(MANUAL_STACK)
    before = _manual_secret(tmp_path)
    assert not before.retain and "annotations" not in before.obj["metadata"] and not before.gitops
    others = [p for p in plan_stack(load_stack("dev", tmp_path)) if p.obj["kind"] != "Secret"]
    r = cli("migrate", "--stack", "dev", "--to", to, "--prepare", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert "vaultMigration: release: Pulumi.dev.yaml" in r.out
    assert "next: pulumi up --stack dev (its state records retainOnDelete" in r.out, r.out
    assert f"then ksecrets migrate --stack dev --to {to}" in r.out
    cfg = load_stack("dev", tmp_path)
    assert cfg.backend == "manual" and cfg.vault_migration == "release" and cfg.vault is None
    after = _manual_secret(tmp_path)
    assert after.retain and not after.gitops
    assert after.obj["metadata"]["annotations"] == {"sealedsecrets.bitnami.com/managed": "true"}
    assert after.obj["stringData"] == before.obj["stringData"]
    assert [p for p in plan_stack(cfg) if p.obj["kind"] != "Secret"] == others
    r = cli("export", "--stack", "dev", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert not [f for f in (tmp_path / "k8s").rglob("*.yaml") if "kind: Secret\n" in f.read_text()]
    again = cli("migrate", "--stack", "dev", "--to", to, "--prepare", "--root", str(tmp_path))
    assert again.code == 0 and "nothing to change" in again.out


def test_retain_becomes_pulumis_retain_on_delete():
    """components/ turns `Planned.retain` into the resource option, and only that object's."""
    import pulumi

    from components.kube import child_options
    from ksecrets.manifests.plan import Planned

    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}}
    parent = object.__new__(pulumi.ComponentResource)
    assert child_options(Planned(obj, "apps", retain=True), parent, []).retain_on_delete is True
    assert not child_options(Planned(obj, "apps"), parent, []).retain_on_delete


@pytest.mark.parametrize("prepared", [True, False])
def test_manual_switch_says_pulumi_up_releases_or_warns_without_prepare(tmp_path, cli, monkeypatch, prepared):
    """The switch from manual: after `--prepare` the next step names `pulumi up` releasing the
    Secrets; without it a warning says `pulumi up` would delete them and how to go the safe way."""
    key = sops.generate_age_key()
    (tmp_path / "Pulumi.dev.yaml").write_text(
        MANUAL_STACK + ("  k8s-secrets:vaultMigration: release\n" if prepared else "")
    )
    pulumi_json = {"k8s-secrets:manualValues": {"objectValue": {"web-secrets": {"PASSWORD": "p=w", "TOKEN": ""}}}}
    monkeypatch.setattr(migrate, "pulumi_config_cli", lambda cfg: pulumi_json)
    r = cli("migrate", "--stack", "dev", "--to", "sops", "--age-recipient", key.recipient, "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert "2 values moved from manual to sops; backend switched to sops" in r.out
    assert "then pulumi up --stack dev: it forgets the manual Secrets (retainOnDelete" in r.out, r.out
    skipped = "the stack skipped `migrate --prepare`: the next `pulumi up` deletes its Secrets"
    if prepared:
        assert skipped not in r.err, r.err
    else:
        assert skipped in r.err and "`ksecrets migrate --prepare --to sops`, `pulumi up`" in r.err, r.err
    assert load_stack("dev", tmp_path).backend == "sops"


DYNAMIC_STACK = VAULT_STACK.replace(
    "      vault:\n        path: web\n",
    "      vault:\n        path: web\n        dynamic:\n          - name: web-db\n            role: web\n",
)


@pytest.mark.parametrize("to", ["sealed-secrets", "sops"])
def test_a_move_away_from_vault_refuses_dynamic_credentials(tmp_path, cli, to):
    """A VaultDynamicSecret's credentials are Vault's per lease: neither --prepare nor the switch
    moves a stack that still has `vault.dynamic`; one line naming the app and the Secret, no value,
    the stack file byte for byte as it was, before Vault is asked."""
    (tmp_path / "Pulumi.dev.yaml").write_text(DYNAMIC_STACK)
    cfg = load_stack("dev", tmp_path)
    assert [d.name for a in cfg.apps if a.vault for d in a.vault.dynamic] == ["web-db"]
    before = (tmp_path / "Pulumi.dev.yaml").read_bytes()
    for args in (["--prepare"], []):
        r = cli("migrate", "--stack", "dev", "--to", to, *args, "--root", str(tmp_path))
        assert r.code == 2, r
        assert "apps[0] (web): vault.dynamic: Secret web-db holds credentials Vault makes per lease" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
        assert (tmp_path / "Pulumi.dev.yaml").read_bytes() == before
    with pytest.raises(Exception, match="nothing was written"):
        migrate.migrate(tmp_path, "dev", to, migrate.Material())  # before any key material is needed

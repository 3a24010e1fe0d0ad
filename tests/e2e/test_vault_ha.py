"""Issue 9, flow 5 (Vault HA) and issue 12's Vault drill (raft snapshot, cluster lost, restore).

Real: three Vault servers (tools/vault) with integrated raft storage, each started from the exact
``server.ha.raft.config`` the project exports for production (k8s/production/infrastructure/
helmrelease-vault.yaml), TLS on as exported, joining each other only through the exported
``retry_join`` blocks; Shamir init (5 shares, threshold 3) and unseal as README's first-install
steps; autopilot promoting the joined nodes to voters; a real leader crash (SIGKILL) and election;
a real raft snapshot (``GET sys/storage/raft/snapshot``) and restore into a new cluster
(``POST sys/storage/raft/snapshot-force``).

Rewritten (tests/e2e/harness/vault.py): pod names and mount points only: node vault-N listens on
127.0.0.(N+1) on free ports, ``vault-K.vault-internal:8200`` points at node K, /vault/data and
/vault/userconfig/tls are folders of the run, and ``service_registration "kubernetes"`` is dropped
(no pod to label). The snapshot is taken and restored with hvac directly; ``ksecrets vault
snapshot save|restore`` (issue 12, another branch) is not used here.
"""

from __future__ import annotations

import secrets
import shutil
import time

import hvac
import pytest

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT
from tests.e2e.harness.procs import wait_for
from tests.e2e.harness.vault import RaftCluster, exported_raft_config, exported_tls_enabled, wait_leader

HELMRELEASE = ROOT / "k8s" / "production" / "infrastructure" / "helmrelease-vault.yaml"
VALUES = 50


@pytest.fixture(scope="module")
def vault_bin():
    return require("vault")["vault"]


def _write_values(client: hvac.Client, prefix: str, count: int = VALUES) -> dict[str, dict[str, str]]:
    client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    written = {}
    for i in range(count):
        path = f"{prefix}/app-{i:03d}"
        data = {"API_KEY": secrets.token_urlsafe(24), "DATABASE_URL": f"postgres://u{i}:{secrets.token_hex(8)}@db/app"}
        client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret", cas=0)
        written[path] = data
    return written


def _read_all(client: hvac.Client, written: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {
        path: client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)[
            "data"
        ]["data"]
        for path in written
    }


def test_the_exported_config_is_tls_with_retry_join_to_every_peer():
    hcl = exported_raft_config(HELMRELEASE)
    assert exported_tls_enabled(HELMRELEASE) and "tls_disable = 0" in hcl
    assert hcl.count("retry_join {") == 3


def test_exported_raft_config_forms_a_cluster_and_survives_the_leader(e2e_dir, vault_bin):
    """Three nodes from the exported HCL form one raft cluster through retry_join; the leader is
    killed (SIGKILL); a new leader is elected among the two left; every value written before is
    read back from it, and it takes writes. Prints the failover time."""
    cluster = RaftCluster(e2e_dir / "vault-raft-ha", vault_bin, exported_raft_config(HELMRELEASE))
    try:
        t0 = time.monotonic()
        cluster.start()
        formed = time.monotonic() - t0
        servers = cluster.peers()
        assert sorted(s["node_id"] for s in servers) == ["vault-0", "vault-1", "vault-2"]
        assert all(s["voter"] for s in servers)
        assert sorted(s["address"] for s in servers) == sorted(f"{n.ip}:{n.cluster_port}" for n in cluster.nodes)
        leader = cluster.active()
        assert leader.name == "vault-0"  # initialised first; the others joined it
        written = _write_values(cluster.client(leader), "ha")
        # A standby answers reads too (forwarded to the active node over the cluster port, mTLS).
        standby = next(n for n in cluster.nodes if n is not leader)
        assert _read_all(cluster.client(standby), written) == written

        killed_at = time.monotonic()
        leader.proc.kill()
        left = [n for n in cluster.nodes if n is not leader]
        new_leader, elected = wait_leader(cluster, left)
        c = cluster.client(new_leader)
        wait_for("the new leader serving reads", lambda: bool(_read_all(c, {"ha/app-000": {}})), 60)
        serving = time.monotonic() - killed_at
        assert _read_all(c, written) == written
        c.secrets.kv.v2.create_or_update_secret(path="ha/after-failover", secret={"K": "v"}, mount_point="secret")
        other = next(n for n in left if n is not new_leader)
        assert _read_all(cluster.client(other), {"ha/after-failover": {}}) == {"ha/after-failover": {"K": "v"}}
        print(
            f"\nvault HA: cluster formed (3 voters) in {formed:.1f} s; leader {leader.name} killed -> "
            f"{new_leader.name} elected in {elected:.1f} s, serving reads {serving:.1f} s after the kill; "
            f"{len(written)} values read back"
        )

        # The killed node comes back sealed (README: every restarted pod must be unsealed) and rejoins.
        cluster.start_node(leader)
        assert cluster.client(leader, token=None).sys.read_seal_status()["sealed"] is True
        cluster.unseal(leader)
        cluster.wait_voters(3)
        assert cluster.active() is new_leader
    finally:
        cluster.stop()


def test_raft_snapshot_restored_into_a_new_cluster_loses_nothing(e2e_dir, vault_bin):
    """Issue 12's Vault drill: write values, take a raft snapshot, destroy the whole cluster
    (processes stopped, data folders deleted), build a new cluster from the same exported config,
    restore the snapshot, unseal with the old cluster's keys: every value is identical. Prints the
    recovery time (new cluster start to every value read back)."""
    old = RaftCluster(e2e_dir / "vault-raft-dr-old", vault_bin, exported_raft_config(HELMRELEASE))
    new = None
    try:
        old.start()
        client = old.client(old.active())
        written = _write_values(client, "dr")
        # A second version of one value: the snapshot keeps history too.
        client.secrets.kv.v2.create_or_update_secret(
            path="dr/app-000", secret={"API_KEY": "v2"}, mount_point="secret", cas=1
        )
        written["dr/app-000"] = {"API_KEY": "v2"}
        snapshot = e2e_dir / "vault-raft-dr.snap"
        response = client.sys.take_raft_snapshot()
        assert response.status_code == 200
        snapshot.write_bytes(response.content)
        assert snapshot.stat().st_size > 0
        old_keys, old_root = old.unseal_keys, old.root_token
        old.stop()
        for node in old.nodes:
            shutil.rmtree(node.home / "data")

        started = time.monotonic()
        new = RaftCluster(e2e_dir / "vault-raft-dr-new", vault_bin, exported_raft_config(HELMRELEASE))
        new.start()
        formed = time.monotonic() - started
        leader = new.active()
        with pytest.raises((hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden)):  # new and empty
            new.client(leader).secrets.kv.v2.read_secret_version(
                path="dr/app-001", mount_point="secret", raise_on_deleted_version=True
            )
        # The snapshot was made by another cluster (other keys): the forced restore is the only one
        # Vault accepts. Afterwards the data, its keyring and the root token are the old cluster's.
        new.client(leader).sys.force_restore_raft_snapshot(snapshot.read_bytes())
        new.unseal_keys, new.root_token = old_keys, old_root

        def restored() -> bool:
            node = new.leader()
            if node is None:
                for n in new.nodes:
                    if new.client(n, token=None).sys.read_seal_status()["sealed"]:
                        new.unseal(n)
                return False
            return _read_all(new.client(node), {"dr/app-001": {}}) is not None

        wait_for("the restored cluster active with the old keys", restored, 120, interval=0.5)
        for node in new.nodes:
            if new.client(node, token=None).sys.read_seal_status()["sealed"]:
                new.unseal(node)
        got = _read_all(new.client(new.active()), written)
        recovered = time.monotonic() - started
        assert got == written
        meta = new.client(new.active()).secrets.kv.v2.read_secret_metadata(path="dr/app-000", mount_point="secret")
        assert meta["data"]["current_version"] == 2
        new.wait_voters(3)
        for node in new.nodes:  # every node serves the restored data
            assert _read_all(new.client(node), {"dr/app-042": {}}) == {"dr/app-042": written["dr/app-042"]}
        print(
            f"\nvault DR drill: snapshot {snapshot.stat().st_size} bytes; new cluster formed in {formed:.1f} s, "
            f"restored and all {len(written)} values read back {recovered:.1f} s after the new cluster started; "
            "data lost since the snapshot: none"
        )
    finally:
        old.stop()
        if new is not None:
            new.stop()

"""Raft snapshots against a real Vault (issue 12): one node with integrated raft storage on
127.0.0.1, initialised and unsealed through its API. `ksecrets vault snapshot save`, then more
writes, then `restore --yes`: every value is the snapshot's again. The CronJob's own entry point
(`python -m ksecrets.vault.snapshot`) saves and prunes. The multi-node destroy-and-restore drill
is the lead's; it calls the same functions (`ksecrets.vault.snapshot.save/restore`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import hvac
import pytest
import requests

from tests.e2e.conftest import require
from tests.e2e.harness import ROOT, procs


@pytest.fixture(scope="module")
def raft_vault(e2e_dir):
    binary = require("vault")["vault"]
    d = e2e_dir / "vault-raft"
    (d / "data").mkdir(parents=True, exist_ok=True)
    port, cluster_port = procs.free_port(), procs.free_port()
    (d / "vault.hcl").write_text(
        textwrap.dedent(f"""\
        storage "raft" {{
          path    = "{d / "data"}"
          node_id = "e2e-0"
        }}
        listener "tcp" {{
          address         = "127.0.0.1:{port}"
          cluster_address = "127.0.0.1:{cluster_port}"
          tls_disable     = true
        }}
        api_addr      = "http://127.0.0.1:{port}"
        cluster_addr  = "http://127.0.0.1:{cluster_port}"
        disable_mlock = true
        ui            = false
        """)
    )
    proc = procs.Proc(
        "vault-raft",
        [binary, "server", f"-config={d / 'vault.hcl'}"],
        d / "vault.log",
        env={**os.environ, "HOME": str(d), "VAULT_ADDR": ""},
    ).start()
    addr = f"http://127.0.0.1:{port}"
    client = hvac.Client(url=addr)
    try:
        health = lambda: requests.get(f"{addr}/v1/sys/health", timeout=5).status_code  # noqa: E731
        procs.wait_for("vault listening", lambda: health() in (200, 429, 501, 503), 60, proc)
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(init["keys"][0])
        client.token = init["root_token"]
        procs.wait_for("vault active (unsealed, raft leader)", lambda: health() == 200, 60, proc)
        procs.wait_for("raft leader", lambda: client.sys.read_leader_status()["is_self"] is True, 60, proc)
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        yield addr, init["root_token"]
    finally:
        proc.stop()


def test_save_then_restore_brings_every_value_back(raft_vault, tmp_path, capsys):
    from ksecrets.cli import main

    addr, token = raft_vault
    client = hvac.Client(url=addr, token=token)
    for i in range(20):
        client.secrets.kv.v2.create_or_update_secret(path=f"app-{i}", secret={"K": f"before-{i}"}, mount_point="secret")
    env = {"VAULT_ADDR": addr, "VAULT_TOKEN": token}
    os.environ.update(env)
    try:
        snap = tmp_path / "vault-raft-test.snap"
        assert main(["vault", "snapshot", "save", "--out", str(snap)]) == 0
        assert snap.read_bytes()[:2] == b"\x1f\x8b" and snap.stat().st_size > 1000
        for i in range(20):
            client.secrets.kv.v2.create_or_update_secret(
                path=f"app-{i}", secret={"K": f"after-{i}"}, mount_point="secret"
            )
        client.secrets.kv.v2.create_or_update_secret(path="created-later", secret={"K": "x"}, mount_point="secret")
        assert main(["vault", "snapshot", "restore", "--file", str(snap)]) == 2  # no --yes
        assert main(["vault", "snapshot", "restore", "--file", str(snap), "--yes"]) == 0
    finally:
        for k in env:
            os.environ.pop(k, None)
    procs.wait_for(
        "vault serving after restore", lambda: requests.get(f"{addr}/v1/sys/health", timeout=5).status_code == 200, 60
    )
    got = {
        i: client.secrets.kv.v2.read_secret_version(
            path=f"app-{i}", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]["K"]
        for i in range(20)
    }
    assert got == {i: f"before-{i}" for i in range(20)}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(
            path="created-later", mount_point="secret", raise_on_deleted_version=True
        )


def test_the_cronjob_entry_point_saves_and_prunes(raft_vault, tmp_path):
    addr, token = raft_vault
    out = tmp_path / "snapshots"
    out.mkdir()
    env = {**os.environ, "VAULT_ADDR": addr, "VAULT_TOKEN": token, "PYTHONPATH": str(ROOT)}
    for n in range(3):
        (out / f"vault-raft-2020010{n + 1}T000000Z.snap").write_bytes(b"\x1f\x8bold")
    done = subprocess.run(
        [sys.executable, "-m", "ksecrets.vault.snapshot", "--dir", str(out), "--retain", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0] == "vault-raft-20200103T000000Z.snap"
    assert (out / names[1]).read_bytes()[:2] == b"\x1f\x8b" and (out / names[1]).stat().st_size > 1000
    assert token not in done.stderr

"""Real Vault servers for the end-to-end suite, built from github.com/hashicorp/vault (tools/vault).

Two shapes:

- :class:`DevVault`: ``vault server -dev`` on 127.0.0.1 with a random root token and, when asked,
  ``-dev-tls`` (Vault makes its own CA and certificate). In-memory storage, one unseal key (read
  from the server's own start-up output), so sealing and unsealing it is real.
- :class:`RaftCluster`: three ``vault server -config`` processes whose configuration is the
  ``server.ha.raft.config`` HCL the project exports (k8s/<stack>/infrastructure/
  helmrelease-vault.yaml), with only what names the pod rewritten: listener and cluster addresses
  ``[::]:8200/8201`` become 127.0.0.N on free ports (node N-1 of the StatefulSet on 127.0.0.N),
  every ``vault-K.vault-internal:8200`` in ``retry_join`` becomes node K's address, the chart's
  mount points (``/vault/userconfig/tls``, ``/vault/data``) become folders of the run, and
  ``service_registration "kubernetes"`` is dropped (it labels the pod it runs in; there is none).
  The environment the chart gives each pod is set the same way: VAULT_API_ADDR,
  VAULT_CLUSTER_ADDR, VAULT_RAFT_NODE_ID (``setNodeId``) and VAULT_CACERT.
  TLS is as exported: one certificate for all nodes (the ``vault-tls`` Secret) from a CA made for
  the run, naming what README's TLS section lists plus 127.0.0.1-3.

Every process is a :class:`procs.Proc`: it listens on 127.0.0.x only and is stopped by its PID.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import requests
import yaml

from .pki import CA
from .procs import Proc, free_port, wait_for

_UNSEAL_RE = re.compile(r"^Unseal Key: (\S+)\s*$", re.M)


def _client(address: str, token: str | None, ca: Path | None) -> hvac.Client:
    return hvac.Client(url=address, token=token, verify=str(ca) if ca else True, timeout=10)


def health(address: str, ca: Path | None) -> dict[str, Any]:
    """``GET /v1/sys/health`` with every status accepted (sealed, standby, uninitialised...)."""
    r = requests.get(
        f"{address}/v1/sys/health",
        params={"standbyok": "true", "sealedcode": "200", "uninitcode": "200", "perfstandbyok": "true"},
        verify=str(ca) if ca else True,
        timeout=5,
    )
    return r.json()


# --- dev server -------------------------------------------------------------------------------


@dataclass
class DevVault:
    workdir: Path
    binary: Path
    tls: bool = False
    port: int = field(default_factory=free_port)
    root_token: str = field(default_factory=lambda: "e2e-" + secrets.token_hex(16))
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path | None:
        return self.workdir / "tls" / "vault-ca.pem" if self.tls else None

    def env(self) -> dict[str, str]:
        """What a Vault CLI or ``ksecrets`` needs to reach this server as root."""
        out = {"VAULT_ADDR": self.address, "VAULT_TOKEN": self.root_token}
        if self.ca:
            out["VAULT_CACERT"] = str(self.ca)
        return out

    def start(self) -> "DevVault":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            f"-dev-root-token-id={self.root_token}",
            "-dev-no-store-token",
        ]
        if self.tls:
            (self.workdir / "tls").mkdir(exist_ok=True)
            argv += ["-dev-tls", f"-dev-tls-cert-dir={self.workdir / 'tls'}"]
        # HOME points into the run folder: nothing may touch the user's ~/.vault-token.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), "VAULT_LOG_LEVEL": "info"}
        self.proc = Proc("vault-dev", argv, self.workdir / "vault-dev.log", env=env).start()
        wait_for(
            "Vault dev server unsealed", lambda: health(self.address, self.ca).get("sealed") is False, 60, self.proc
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def client(self, token: str | None = "root") -> hvac.Client:
        return _client(self.address, self.root_token if token == "root" else token, self.ca)

    @property
    def unseal_key(self) -> str:
        """The dev server's one unseal key, from its own start-up output."""
        assert self.proc is not None
        m = _UNSEAL_RE.search(self.proc.log.read_text(errors="replace"))
        if not m:
            raise RuntimeError(f"no 'Unseal Key:' line in {self.proc.log}")
        return m.group(1)

    def seal(self) -> None:
        self.client().sys.seal()
        wait_for("Vault sealed", lambda: health(self.address, self.ca).get("sealed") is True, 30, self.proc)

    def unseal(self) -> None:
        self.client(token=None).sys.submit_unseal_key(self.unseal_key)
        wait_for("Vault unsealed", lambda: health(self.address, self.ca).get("sealed") is False, 30, self.proc)


# --- raft cluster from the exported configuration ---------------------------------------------


def exported_raft_config(helmrelease: Path) -> str:
    """The ``server.ha.raft.config`` HCL of an exported ``vault`` HelmRelease, as written."""
    doc = yaml.safe_load(helmrelease.read_text())
    return doc["spec"]["values"]["server"]["ha"]["raft"]["config"]


def exported_tls_enabled(helmrelease: Path) -> bool:
    doc = yaml.safe_load(helmrelease.read_text())
    return not doc["spec"]["values"].get("global", {}).get("tlsDisable", True)


def _free_port_on(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _sub_exact(text: str, old: str, new: str) -> str:
    """Replace a string the export must contain; a missing one is a failure, not a silent no-op."""
    if old not in text:
        raise AssertionError(f"the exported raft config no longer contains {old!r}; update the harness")
    return text.replace(old, new)


@dataclass
class RaftNode:
    index: int  # the StatefulSet ordinal: vault-<index>
    ip: str
    port: int
    cluster_port: int
    home: Path
    proc: Proc | None = None

    @property
    def name(self) -> str:
        return f"vault-{self.index}"

    @property
    def address(self) -> str:
        return f"https://{self.ip}:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


@dataclass
class RaftCluster:
    """N Vault servers on 127.0.0.1..N configured from the exported HCL (see the module docstring)."""

    workdir: Path
    binary: Path
    config_hcl: str
    replicas: int = 3
    key_shares: int = 5  # as README's first-install steps: 5 shares, 3 to unseal
    key_threshold: int = 3
    nodes: list[RaftNode] = field(default_factory=list)
    unseal_keys: list[str] = field(default_factory=list)
    root_token: str = ""

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls_dir = self.workdir / "userconfig-tls"
        self.tls_dir.mkdir(exist_ok=True)
        ca = CA(self.workdir / "pki", name="k8s-secrets-e2e-vault-ca")
        ips = tuple(f"127.0.0.{i + 1}" for i in range(self.replicas))
        ns = "vault"
        issued = ca.issue(
            "vault",
            "vault",
            server=True,
            client=True,
            ips=ips,
            dns=(
                "vault",
                f"vault.{ns}",
                f"vault.{ns}.svc",
                f"vault.{ns}.svc.cluster.local",
                f"vault-active.{ns}.svc",
                "*.vault-internal",
                f"*.vault-internal.{ns}.svc.cluster.local",
                "localhost",
            ),
        )
        # The vault-tls Secret as the pods mount it: tls.crt, tls.key, ca.crt.
        (self.tls_dir / "tls.crt").write_bytes(issued.cert.read_bytes())
        (self.tls_dir / "tls.key").write_bytes(issued.key.read_bytes())
        (self.tls_dir / "tls.key").chmod(0o600)
        (self.tls_dir / "ca.crt").write_bytes(ca.cert_path.read_bytes())
        self.ca = self.tls_dir / "ca.crt"
        for i, ip in enumerate(ips):
            self.nodes.append(RaftNode(i, ip, _free_port_on(ip), _free_port_on(ip), self.workdir / f"vault-{i}"))

    # ---- configuration -----------------------------------------------------------------------
    def node_config(self, node: RaftNode) -> str:
        """The exported HCL with the pod-specific names rewritten for ``node`` (module docstring)."""
        hcl = self.config_hcl
        hcl = _sub_exact(hcl, 'address = "[::]:8200"', f'address = "{node.ip}:{node.port}"')
        hcl = _sub_exact(hcl, 'cluster_address = "[::]:8201"', f'cluster_address = "{node.ip}:{node.cluster_port}"')
        hcl = _sub_exact(hcl, 'path = "/vault/data"', f'path = "{node.home / "data"}"')
        hcl = _sub_exact(hcl, "/vault/userconfig/tls/", f"{self.tls_dir}/")
        hcl = _sub_exact(hcl, 'service_registration "kubernetes" {}\n', "")

        def peer(m: re.Match) -> str:
            k = int(m.group(1))
            if k >= len(self.nodes):
                raise AssertionError(f"retry_join names vault-{k}, but the cluster has {len(self.nodes)} nodes")
            return f"{self.nodes[k].ip}:{self.nodes[k].port}"

        hcl, joins = re.subn(r"vault-(\d+)\.vault-internal:8200", peer, hcl)
        if joins != self.replicas:
            raise AssertionError(f"the exported raft config has {joins} retry_join peers, expected {self.replicas}")
        if "[::]" in hcl or "0.0.0.0" in hcl:
            raise AssertionError("a listener would bind to every interface")
        return hcl

    def env(self) -> dict[str, str]:
        return {"VAULT_ADDR": self.active().address, "VAULT_TOKEN": self.root_token, "VAULT_CACERT": str(self.ca)}

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_node(self, node: RaftNode) -> None:
        (node.home / "data").mkdir(parents=True, exist_ok=True)
        cfg = node.home / "config.hcl"
        cfg.write_text(self.node_config(node))
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(node.home),
            # What the chart's StatefulSet sets (POD_IP, HOSTNAME.vault-internal, setNodeId).
            "VAULT_API_ADDR": node.address,
            "VAULT_CLUSTER_ADDR": f"https://{node.ip}:{node.cluster_port}",
            "VAULT_RAFT_NODE_ID": node.name,
            "VAULT_ADDR": node.address,
            "VAULT_CACERT": str(self.ca),
            "VAULT_LOG_LEVEL": "info",
        }
        node.proc = Proc(
            node.name, [self.binary, "server", f"-config={cfg}"], node.home / f"{node.name}.log", env=env
        ).start()
        wait_for(f"{node.name} answering", lambda: "sealed" in health(node.address, self.ca), 60, node.proc)

    def start(self) -> "RaftCluster":
        """Start every node, initialise vault-0, unseal it, let the others join and unseal them."""
        for node in self.nodes:
            self.start_node(node)
        first = self.nodes[0]
        init = self.client(first, token=None).sys.initialize(
            secret_shares=self.key_shares, secret_threshold=self.key_threshold
        )
        self.unseal_keys = list(init["keys_base64"])
        self.root_token = init["root_token"]
        for node in self.nodes:
            self.unseal(node)
        self.wait_voters(len(self.nodes))
        return self

    def unseal(self, node: RaftNode, keys: list[str] | None = None) -> None:
        """Submit ``threshold`` unseal keys; a joining node first waits until retry_join found a leader."""
        keys = keys or self.unseal_keys
        client = self.client(node, token=None)

        def submit() -> bool:
            if not client.sys.read_seal_status()["sealed"]:
                return True
            try:
                # A joining node takes keys once retry_join has its challenge; before that Vault
                # refuses them, and a half-submitted set is reset before the next attempt.
                client.sys.submit_unseal_key(reset=True)
                for key in keys[: self.key_threshold]:
                    if not client.sys.submit_unseal_key(key)["sealed"]:
                        break
            except hvac.exceptions.VaultError:
                return False
            return not client.sys.read_seal_status()["sealed"]

        wait_for(f"{node.name} unsealed", submit, 90, node.proc, interval=0.5)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.stop()

    # ---- state -------------------------------------------------------------------------------
    def client(self, node: RaftNode, token: str | None = "root") -> hvac.Client:
        return _client(node.address, self.root_token if token == "root" else token, self.ca)

    def leader(self, among: list[RaftNode] | None = None) -> RaftNode | None:
        """The node that says it is the active one (asked of each live node in ``among``)."""
        for node in among or self.nodes:
            if not node.alive():
                continue
            try:
                status = self.client(node, token=None).sys.read_leader_status()
            except (requests.RequestException, hvac.exceptions.VaultError):
                continue
            if status.get("is_self"):
                return node
        return None

    def active(self) -> RaftNode:
        node = self.leader()
        if node is None:
            raise RuntimeError("no active Vault node")
        return node

    def peers(self) -> list[dict[str, Any]]:
        return self.client(self.active()).sys.read_raft_config()["data"]["config"]["servers"]

    def wait_voters(self, count: int, timeout: float = 120) -> None:
        """Autopilot promotes a joined node to voter once it is stable (10 s by default)."""

        def ok() -> bool:
            servers = self.peers()
            return len(servers) == count and all(s.get("voter") for s in servers)

        wait_for(f"{count} raft voters", ok, timeout, interval=0.5)


def wait_leader(cluster: RaftCluster, among: list[RaftNode], timeout: float = 120) -> tuple[RaftNode, float]:
    """Block until one of ``among`` is active and serves a write; return it and the seconds waited."""
    started = time.monotonic()
    found: list[RaftNode] = []

    def ok() -> bool:
        node = cluster.leader(among)
        if node is None:
            return False
        found[:] = [node]
        return True

    wait_for("a new raft leader", ok, timeout, interval=0.05)
    return found[0], time.monotonic() - started

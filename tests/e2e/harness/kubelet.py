"""The kubelet's part, simulated (the one place): Pods are bound to a Node and reported running.

No kubelet or container runtime runs here, so no Pod ever starts and no Deployment ever becomes
Available, and kustomize-controller's health check (``wait: true``) of a layer with a Deployment
would never pass. :class:`PodStandIn` plays the scheduler and the kubelet, and nothing else: it
binds every unbound Pod to one Node object (``pods/binding``, what the scheduler does) and, once
every Secret the Pod reads exists (``envFrom``/``env`` secret refs, secret volumes, not marked
optional: what a kubelet needs before it can start the containers), writes the status a kubelet
writes for running, ready containers. A Pod whose Secret is missing stays Pending, as it would
(CreateContainerConfigError). Everything above the Pods (ReplicaSets, Deployment status,
availability) is the real kube-controller-manager's work.
"""

from __future__ import annotations

import datetime as dt

from .kube import Cluster
from .standin import StandInLoop

NODE = "e2e-node"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def secrets_needed(pod: dict) -> set[str]:
    spec = pod.get("spec") or {}
    names: set[str] = set()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for src in c.get("envFrom") or []:
            ref = src.get("secretRef")
            if ref and not ref.get("optional"):
                names.add(ref["name"])
        for env in c.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef")) or None
            if ref and not ref.get("optional"):
                names.add(ref["name"])
    for vol in spec.get("volumes") or []:
        ref = vol.get("secret")
        if ref and not ref.get("optional"):
            names.add(ref["secretName"])
    return names


class PodStandIn(StandInLoop):
    name = "pod-stand-in"

    def __init__(self, cluster: Cluster, interval: float = 0.5) -> None:
        super().__init__(interval)
        self.cluster = cluster
        self.started_pods: list[str] = []

    def _node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
        self.cluster.apply([node], field_manager="e2e-kubelet")
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "simulated (no kubelet)",
                        "lastHeartbeatTime": _now(),
                        "lastTransitionTime": _now(),
                    }
                ],
                "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "500"},
                "capacity": {"cpu": "16", "memory": "64Gi", "pods": "500"},
            }
        }
        self.cluster.raw(
            "PATCH", f"/api/v1/nodes/{NODE}/status", status, content_type="application/strategic-merge-patch+json"
        ).raise_for_status()

    def start(self) -> "PodStandIn":
        self._node()
        self.start_loop()
        return self

    def step(self) -> None:
        pods = (self.cluster.get("/api/v1/pods") or {}).get("items") or []
        for pod in pods:
            md, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
            if md.get("deletionTimestamp"):
                continue
            ns, name = md["namespace"], md["name"]
            if not spec.get("nodeName"):
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                }
                r = self.cluster.raw("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
                if r.status_code not in (201, 200, 409):
                    self.failed(f"bind {ns}/{name}", r.status_code, r.text)
                continue
            if status.get("phase") == "Running":
                continue
            if any(self.cluster.get(f"/api/v1/namespaces/{ns}/secrets/{s}") is None for s in secrets_needed(pod)):
                continue
            now = _now()
            containers = spec.get("containers") or []
            new = {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": now,
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now}
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                    for c in containers
                ],
            }
            r = self.cluster.raw(
                "PATCH",
                f"/api/v1/namespaces/{ns}/pods/{name}/status",
                {"status": new},
                content_type="application/merge-patch+json",
            )
            if r.status_code == 200:
                self.started_pods.append(f"{ns}/{name}")
            elif r.status_code != 404:
                self.failed(f"status {ns}/{name}", r.status_code, r.text)

"""k8s-secrets: one stack (environment) per `pulumi up`. See README.md."""

import sys

import pulumi

from components.cluster import check_cluster, cluster_provider
from components.platform import Platform
from components.pulumi_source import load_from_pulumi, manual_value_outputs
from components.sdk_drain import let_the_sdk_see_every_registration
from components import flux_delivery
from ksecrets.usecases import preflight
from ksecrets.usecases.stack_facts import plan_stack
from ksecrets.errors import KsecretsError

try:
    cfg, manual = load_from_pulumi()
    # Planned once: what is checked is what is registered. What the cluster would refuse
    # (prerequisites, placeholders, namespaces, names, sizes) stops `pulumi preview` as it stops
    # `ksecrets export`.
    planned = preflight.check_stack(cfg, plan_stack(cfg, manual_value_outputs(cfg, manual)))
    provider = cluster_provider(cfg.stack)
    # Flux applies the layers from Git: say what it will apply differently (README "Delivery").
    delivery = flux_delivery.report(cfg) if cfg.delivery == "flux" else None
except KsecretsError as exc:  # one line naming the key, as in `ksecrets export`; no traceback
    pulumi.log.error(f"ksecrets: {exc}")
    sys.exit(2)

if delivery is not None:
    for line in delivery.info:
        pulumi.log.info(line)
    for line in delivery.warnings:
        pulumi.log.warn(line)
check_cluster(cfg.stack, provider)
platform = Platform(cfg.stack, cfg, planned=planned, opts=pulumi.ResourceOptions(providers=[provider]))

pulumi.export("backend", cfg.backend)
pulumi.export("namespaces", list(cfg.all_namespaces()))
pulumi.export("objects", platform.object_count)
pulumi.export("exportPath", cfg.flux_path)
pulumi.export("delivery", cfg.delivery)
if cfg.vault is not None:
    pulumi.export("vaultAddress", cfg.vault.service_address)

# Last: one yield to the event loop before the SDK drains, so its drain is linear, not quadratic
# in the resources (components/sdk_drain.py).
let_the_sdk_see_every_registration()

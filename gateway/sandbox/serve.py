"""`efm-gateway sandbox`: the whole sandbox network in the foreground, its settings printed, until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path

import yaml

from gateway.sandbox.faults import FaultPlan
from gateway.sandbox.network import SandboxNetwork, role_of, start_network
from gateway.sandbox.organisations import DPV_ONLY, FAILING_DPV_RECIPIENTS, MUNICIPALITY_LEVELS
from gateway.sandbox.persons import BUILTIN_PERSONS
from gateway.signals import CaughtSignals


def serve_network_forever(
    data_dir: Path,
    port: int,
    reply: bool = False,
    gateways: Mapping[str, str] | None = None,
    faults: FaultPlan | None = None,
) -> None:
    """Run the sandbox network until SIGTERM or SIGINT (for `efm-gateway sandbox`), then stop cleanly."""
    caught = CaughtSignals((signal.SIGTERM, signal.SIGINT))  # a handler that set an Event could deadlock
    network: SandboxNetwork | None = None
    try:
        network = start_network(Path(data_dir), gateways=gateways, reply=reply, port=port, faults=faults)
        server = network.server
        lines = [
            f"sandbox network on {server.url}",
            f"  token endpoint   {server.token_url} (aud {server.token_audience})",
            f"  Altinn exchange  {server.altinn_exchange_url}",
            f"  service registry {server.registry_url}",
            f"  DPO broker       {server.broker_url}",
            f"  DPV (Altinn)     {network.correspondence_url}",
            f"  DPV varsler      {server.url}/correspondence/_sandbox/notifications",
            f"  DPF SvarUt       {network.svarut_url}",
            f"  DPF SvarInn      {network.svarinn_url}",
            f"  DPI Corner 2     {network.corner2_url} (mailbox and print at {network.corner2_url}/_sandbox/)",
            f"  KRR print cert   {network.print_certificate_url}",
            f"  fault rules      {server.faults_url} ({len(server.faults.plan.rules)} in force)",
        ]
        for orgnr, peer in network.peers.items():
            answers = "MOTTATT, LEVERT, kvittering" + (" and a reply" if peer.reply else "")
            lines.append(f"  automatic peer   {orgnr} {peer.name} (answers {answers})")
        for orgnr, municipality in network.municipalities.items():
            level = MUNICIPALITY_LEVELS.get(orgnr, 4)
            answers = "archives via SvarInn" + (" and replies" if municipality.reply else "")
            lines.append(f"  municipality     {orgnr} {municipality.name} (DPF, level {level}; {answers})")
        for person in BUILTIN_PERSONS:
            lines.append(f"  person (DPI)     {person.fnr} {person.name}")
        for orgnr, name in network.organisations.items():
            if role_of(orgnr, network) == DPV_ONLY:
                fails = " (its correspondences fail)" if orgnr in FAILING_DPV_RECIPIENTS else ""
                lines.append(f"  DPV only         {orgnr} {name}{fails}")
        lines.append(f"  settings written to {network.network_file}")
        for orgnr in network.gateways:
            snippet = yaml.safe_dump(network.config_snippet(orgnr), sort_keys=False, allow_unicode=True)
            lines += ["", f"# config.yaml for gateway {orgnr} ({network.organisations[orgnr]}):", snippet.rstrip()]
        print("\n".join(lines), flush=True)
        while not caught.wait(0.5):
            pass
    finally:
        if network is not None:
            network.stop()
        caught.restore()

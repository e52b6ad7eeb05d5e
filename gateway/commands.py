"""What each CLI command does; cli.py only parses arguments."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import Config, KeystoreConfig, TrustConfig, load_config
from gateway.folders import prepare_folders
from gateway.fsio import text_name
from gateway.intake.dryrun import judge_in_place
from gateway.logsetup import configure_logging

log = logging.getLogger("efm-gateway")


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    configure_logging(config.logging.level, config.logging.format)
    return config


def run(args: argparse.Namespace) -> int:
    from gateway.daemon import Daemon

    config = _config(args)
    if not config.sandbox.enabled:
        Daemon(config).run_forever()
        return 0
    # The sandbox runs beside the daemon in this process; the daemon itself only sees URLs and keys.
    from gateway.sandbox.faults import load_fault_plan
    from gateway.sandbox.network import DEFAULT_GATEWAYS, start_network

    prepare_folders(config)
    data = config.sandbox.data or config.folders.state.parent / "sandbox"
    gateways = {**DEFAULT_GATEWAYS, config.organisation.orgnr: config.organisation.name or config.organisation.orgnr}
    faults = load_fault_plan(config.sandbox.faults) if config.sandbox.faults else None
    network = start_network(
        data, gateways=gateways, reply=config.sandbox.reply, port=config.sandbox.port, faults=faults
    )
    try:
        log.info("sandbox network on %s (settings in %s)", network.url, network.network_file)
        settings = network.gateway_settings(config.organisation.orgnr)
        Daemon(
            with_network_settings(config, settings),
            load=lambda path: with_network_settings(load_config(path), settings),
        ).run_forever()
    finally:
        network.stop()
    return 0


def with_network_settings(config: Config, settings: dict) -> Config:
    """`config` joined to a network: its URLs, and its keystore and trust unless config.yaml names them."""
    network = dataclasses.replace(config.network, **settings["network"])
    channels = dataclasses.replace(
        config.channels,
        **{
            name: dataclasses.replace(getattr(config.channels, name), **block)
            for name, block in settings.get("channels", {}).items()
        },
    )
    keystore = config.keystore
    if not keystore.configured:
        keystore = KeystoreConfig(
            pkcs12=Path(settings["keystore"]["pkcs12"]), password=settings["keystore"]["password"]
        )
    trust = config.trust if config.trust.ca_bundle else TrustConfig(ca_bundle=Path(settings["trust"]["ca_bundle"]))
    return dataclasses.replace(config, network=network, channels=channels, keystore=keystore, trust=trust)


def sandbox(args: argparse.Namespace) -> int:
    from gateway.sandbox.faults import load_fault_plan
    from gateway.sandbox.network import serve_network_forever

    faults = load_fault_plan(args.faults) if args.faults else None
    serve_network_forever(args.data, args.port, reply=args.reply, faults=faults)
    return 0


def dev_certs(args: argparse.Namespace) -> int:
    from gateway.devcerts import P12_PASSWORD, create_dev_pki
    from gateway.identifiers import orgnr_problem

    organisations = {}
    for item in args.organisations:
        orgnr, _, name = item.partition("=")
        problem = orgnr_problem(orgnr)
        if problem:
            print(f"efm-gateway dev-certs: {problem}", file=sys.stderr)
            return 2
        organisations[orgnr] = name or f"Testorganisasjon {orgnr}"
    pki = create_dev_pki(args.out, organisations)
    print(f"test CA: {pki.ca_certificate}")
    print(f"trust bundle (trust.ca_bundle): {pki.trust_bundle}")
    for orgnr in organisations:
        print(f"{orgnr}: keystore {args.out / (orgnr + '.p12')} (password {P12_PASSWORD!r})")
    return 0


def check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    prepare_folders(config)
    if config.keystore.configured:
        from gateway.credentials import load_identity
        from gateway.ops.checks import keystore_warnings

        now = SystemClock().now()
        identity = load_identity(config, now)
        for warning in keystore_warnings(config, now):
            print(f"warning: {warning}")
        print(
            f"keystore: OK (organisation {identity.orgnr}, "
            f"valid until {identity.certificate.not_valid_after_utc:%Y-%m-%d})"
        )
    elif config.network_configured:
        print(
            "efm-gateway: keystore is missing; the network section needs the organisation's certificate",
            file=sys.stderr,
        )
        return 2
    if config.sandbox.faults:
        from gateway.sandbox.faults import load_fault_plan

        rules = load_fault_plan(config.sandbox.faults).rules
        plural = "" if len(rules) == 1 else "s"
        print(f"sandbox.faults: OK ({len(rules)} fault rule{plural} in {config.sandbox.faults})")
    if config.network_configured:
        from gateway.ops.checks import outbound_lines, reachability_warnings

        print("\n".join(outbound_lines(config)))
        for warning in reachability_warnings(config):
            print(f"warning: {warning}")
    print(f"{args.config}: OK (organisation {config.organisation.orgnr}, outbox {config.folders.outbox})")
    return 0


def validate(args: argparse.Namespace) -> int:
    """The daemon's own checks on a drop where it lies: read-only, nothing copied or written."""
    config = _config(args)
    drop: Path = args.drop
    try:
        verdict = judge_in_place(drop, config)
    except FileNotFoundError:
        print(f"{drop}: no such file or folder", file=sys.stderr)
        return 2
    shown = text_name(drop.name)
    if verdict.accepted is None:
        print(f"REJECTED: the daemon would move {shown!r} to failed/ with status FEIL, because:")
        for problem in verdict.problems:
            print(f"  - {problem}")
        return 1
    accepted = verdict.accepted
    sidecar = accepted.sidecar
    print(f"ACCEPTED: {shown!r} would become message {accepted.message_id} (status OPPRETTET)")
    print(f"  type {sidecar.message_type}, process {accepted.process}")
    print(f"  from {accepted.sender} to {sidecar.receiver}, deadline {accepted.deadline.isoformat()}")
    print(
        f"  documents: {', '.join(sidecar.file_names) or '(none)'}"
        + (f"; arkivmelding from {accepted.arkivmelding_file}" if accepted.arkivmelding_file else "")
    )
    for warning in verdict.warnings:
        print(f"  warning: {warning}")
    from gateway.operator.route_check import explain_route

    fits, route_lines = explain_route(config, accepted, SystemClock(), join=with_network_settings)
    print("\n".join(route_lines))
    return 0 if fits else 1


def status(args: argparse.Namespace) -> int:
    from gateway.journal.overview import JournalView, MessageFilter
    from gateway.operator.listing import message_story, message_table, parse_since, terminal_width, totals_line

    config = _config(args)
    if not config.folders.journal_path.exists():
        print("no journal yet: the daemon has not run with this configuration")
        return 1
    now = SystemClock().now()
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        print(f"efm-gateway status: {exc}", file=sys.stderr)
        return 2
    view = JournalView(config.folders.journal_path)
    try:
        if args.message_id:
            records = view.find(args.message_id)
            if not records:
                print(f"no message {args.message_id} in the journal")
                return 1
            for record in records:
                print("\n".join(message_story(view, record, now)))
            return 0
        state = "failed" if args.failed else "open" if args.open else None
        message_filter = MessageFilter(
            state=state, channel=args.channel, receiver=args.receiver, drop_name=args.drop, since=since,
            phase=args.phase,
        )
        lines = view.messages(message_filter, limit=args.limit)
        if lines:
            print("\n".join(message_table(lines, terminal_width(), now)))
        else:
            print("no messages match")
        print(totals_line(view.counts()))
        return 0
    finally:
        view.close()


def _operator_action(args: argparse.Namespace, action_name: str) -> int:
    from gateway.operator import actions

    config = _config(args)
    action = getattr(actions, action_name)
    for line in action(config, args.message_id, SystemClock()):
        print(line)
    return 0


def retry(args: argparse.Namespace) -> int:
    return _operator_action(args, "retry")


def cancel(args: argparse.Namespace) -> int:
    return _operator_action(args, "cancel")


def release(args: argparse.Namespace) -> int:
    return _operator_action(args, "release")

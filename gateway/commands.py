"""What each CLI command does; cli.py only parses arguments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pwd
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.clock import SystemClock
from gateway.config import Config, KeystoreConfig, TrustConfig, load_config
from gateway.errors import ConfigError, GatewayError, JournalError
from gateway.exitcodes import ExitCode
from gateway.folders import prepare_folders
from gateway.fsio import text_name
from gateway.intake.dryrun import judge_in_place
from gateway.logsetup import configure_logging

if TYPE_CHECKING:
    from gateway.config_check import Finding
    from gateway.intake.validate import Verdict
    from gateway.operator.route_check import RouteAnswer

log = logging.getLogger("efm-gateway")


def _config(args: argparse.Namespace) -> Config:
    problem = _unreadable(args.config, args.config_origin)
    if problem:
        raise ConfigError(f"{args.config} ({args.config_origin}): {problem}")
    try:
        config = load_config(args.config)
    except PermissionError as exc:  # a file config.yaml names, checked as it is read (a DPF password file, say)
        raise ConfigError(
            f"{args.config}: {exc.filename} cannot be read by user {_user()} (permission denied); run the command "
            "as a user who may read it (root, outside the service)"
        ) from None
    configure_logging(config.logging.level, config.logging.format, stream=args.log_stream)
    return config


def _unreadable(path: Path, origin: str) -> str | None:
    """Why config.yaml at `path` (chosen by `origin`) cannot be read, and what to do; or None."""
    try:
        with open(path, "rb"):
            return None
    except PermissionError:
        return (f"cannot read it (permission denied for user {_user()}); run the command as the service's user "
                "(sudo -u efm-gateway efm-gateway ...) or as root")
    except OSError as exc:
        problem = {FileNotFoundError: "no such file", IsADirectoryError: "it is a folder, not a file"}.get(
            type(exc), f"cannot read it ({exc.strerror})")
    hint = {
        "--config": "check the path given to --config",
        "$EFM_GATEWAY_CONFIG": "set EFM_GATEWAY_CONFIG to your config.yaml, or pass --config",
    }.get(origin, "pass --config with the path of your config.yaml, or set EFM_GATEWAY_CONFIG to it")
    return f"{problem}; {hint}"


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2))


def _error(text: str) -> None:
    print(f"efm-gateway: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from gateway.daemon import Daemon

    config = _config(args)
    if not config.sandbox.enabled:
        Daemon(config).run_forever(args.reload_requested)
        return ExitCode.OK
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
        ).run_forever(args.reload_requested)
    finally:
        network.stop()
    return ExitCode.OK


def with_network_settings(config: Config, settings: dict) -> Config:
    """`config` joined to a network: its URLs, and its keystore and trust unless config.yaml names them."""
    network = dataclasses.replace(config.network, **settings["network"])
    channels = config.channels
    for name, block in settings.get("channels", {}).items():
        channels = channels.with_block(name, dataclasses.replace(getattr(channels, name), **block))
    keystore = config.keystore
    if not keystore.configured:
        keystore = KeystoreConfig(
            pkcs12=Path(settings["keystore"]["pkcs12"]), password=settings["keystore"]["password"]
        )
    trust = config.trust if config.trust.ca_bundle else TrustConfig(ca_bundle=Path(settings["trust"]["ca_bundle"]))
    return dataclasses.replace(config, network=network, channels=channels, keystore=keystore, trust=trust)


def sandbox(args: argparse.Namespace) -> int:
    from gateway.sandbox.faults import load_fault_plan
    from gateway.sandbox.serve import serve_network_forever

    faults = load_fault_plan(args.faults) if args.faults else None
    serve_network_forever(args.data, args.port, reply=args.reply, faults=faults)
    return ExitCode.OK


def dev_certs(args: argparse.Namespace) -> int:
    from gateway.devcerts import P12_PASSWORD, create_dev_pki
    from gateway.identifiers import orgnr_problem

    organisations = {}
    for item in args.organisations:
        orgnr, _, name = item.partition("=")
        problem = orgnr_problem(orgnr)
        if problem:
            print(f"efm-gateway dev-certs: {problem}", file=sys.stderr)
            return ExitCode.CONFIG
        organisations[orgnr] = name or f"Testorganisasjon {orgnr}"
    pki = create_dev_pki(args.out, organisations)
    print(f"test CA: {pki.ca_certificate}")
    print(f"trust bundle (trust.ca_bundle): {pki.trust_bundle}")
    for orgnr in organisations:
        print(f"{orgnr}: keystore {args.out / (orgnr + '.p12')} (password {P12_PASSWORD!r})")
    return ExitCode.OK


def check_config(args: argparse.Namespace) -> int:
    """The daemon's start-up checks, each a finding (gateway.config_check) that the text and --json both print."""
    from gateway.config_check import (
        Finding,
        document,
        folders_check,
        journal_check,
        journal_online_findings,
        keystore_check,
        online_findings,
        reachability_check,
        run_checks,
        secrets_check,
    )

    try:
        config = _config(args)
    except GatewayError as exc:
        findings = [Finding("error", "config", str(exc))]
    else:
        checks = [
            ("folders", folders_check),
            ("secrets", secrets_check),
            ("journal.password_file", journal_check),
            ("keystore", keystore_check(SystemClock().now())),
            ("sandbox.faults", _faults_check),
            ("network", reachability_check),
        ]
        findings = run_checks(config, checks)
        if getattr(args, "online", False) and not any(finding.level == "error" for finding in findings):
            findings[-1:-1] = journal_online_findings(config) + online_findings(config, SystemClock())
    for finding in findings:
        if finding.level == "error":
            _error(finding.text)
        elif not args.json:
            print(finding.line())
    if args.json:
        _print_json(document(str(args.config), findings))
    if any(finding.level == "error" for finding in findings):
        online_only = all(finding.online for finding in findings if finding.level == "error")
        return ExitCode.ONLINE_CHECK_FAILED if online_only else ExitCode.CONFIG
    return ExitCode.OK


def _faults_check(config: Config) -> list[Finding]:
    from gateway.config_check import Finding

    if not config.sandbox.faults:
        return []
    from gateway.sandbox.faults import load_fault_plan

    rules = load_fault_plan(config.sandbox.faults).rules
    plural = "" if len(rules) == 1 else "s"
    return [Finding("ok", "sandbox.faults",
                    f"sandbox.faults: OK ({len(rules)} fault rule{plural} in {config.sandbox.faults})")]


def validate(args: argparse.Namespace) -> int:
    """The daemon's own checks on a drop where it lies: read-only, nothing copied or written."""
    from gateway.operator.json_forms import validation
    from gateway.operator.route_check import explain_route

    config = _config(args)
    drop: Path = args.drop
    try:
        verdict = judge_in_place(drop, config)
    except FileNotFoundError:
        _error(f"{drop}: no such file or folder")
        return ExitCode.NOT_FOUND
    accepted = verdict.accepted
    route = explain_route(config, accepted, SystemClock(), join=with_network_settings) if accepted else None
    if args.json:
        _print_json(validation(drop, verdict, route))
    else:
        _print_verdict(drop, verdict, route)
    if route is None or not route.fits:
        return ExitCode.REJECTED
    return ExitCode.ROUTE_NOT_CHECKED if route.outcome == "not_asked" else ExitCode.OK


def _print_verdict(drop: Path, verdict: Verdict, route: RouteAnswer | None) -> None:
    shown = text_name(drop.name)
    accepted = verdict.accepted
    if accepted is None:
        print(f"REJECTED: the daemon would move {shown!r} to failed/ with status FEIL, because:")
        for problem in verdict.problems:
            print(f"  - {problem}")
        return
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
    if route is not None:
        print("\n".join(route.lines))


def status(args: argparse.Namespace) -> int:
    from gateway.journal.overview import MessageFilter
    from gateway.operator import json_forms
    from gateway.operator.journal_source import NoJournal, open_view
    from gateway.operator.listing import message_story, message_table, parse_since, terminal_width, totals_line

    config = _config(args)
    now = SystemClock().now()
    if args.nodes:
        return _status_nodes(config, args.json, now.timestamp())
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        print(f"efm-gateway status: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        view = open_view(config)
    except NoJournal as missing:
        _error(str(missing))
        return ExitCode.NOT_FOUND
    try:
        if args.message_id:
            records = view.find(args.message_id)
            if not records:
                _error(f"no message {args.message_id} in the journal")
                return ExitCode.NOT_FOUND
            if args.json:
                _print_json(json_forms.stories(view, records, now))
            else:
                for record in records:
                    print("\n".join(message_story(view, record, now)))
            return ExitCode.OK
        state = "failed" if args.failed else "open" if args.open else None
        message_filter = MessageFilter(
            state=state, channel=args.channel, receiver=args.receiver, drop_name=args.drop, since=since,
            phase=args.phase,
        )
        lines = view.messages(message_filter, limit=args.limit)
        if args.json:
            _print_json(json_forms.listing(lines, view.counts(), now))
            return ExitCode.OK
        if lines:
            print("\n".join(message_table(lines, terminal_width(), now)))
        else:
            print("no messages match")
        print(totals_line(view.counts()))
        return ExitCode.OK
    finally:
        view.close()


def _status_nodes(config: Config, as_json: bool, now: float) -> int:
    from gateway.operator.journal_source import NoJournal, open_source, read_connection, where
    from gateway.operator.nodes_view import nodes_json, nodes_table, read_nodes

    try:
        source = open_source(config)
    except NoJournal as missing:
        _error(str(missing))
        return ExitCode.NOT_FOUND
    try:
        connection = read_connection(source)
        try:
            nodes = read_nodes(lambda sql: connection.execute(sql).fetchall(), now)
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the nodes from the journal in {where(config)}: {exc}") from None
    finally:
        if not isinstance(source, Path):
            source.close()
    if as_json:
        _print_json(nodes_json(nodes))
    else:
        print("\n".join(nodes_table(nodes)))
    return ExitCode.OK


def _operator_action(args: argparse.Namespace, action_name: str) -> int:
    from gateway.operator import actions

    config = _config(args)
    action = getattr(actions, action_name)
    try:
        changed = action(config, args.message_id, SystemClock())
    except JournalError as refusal:
        _error(str(refusal))
        return _refusal_code(config, args.message_id)
    for line in changed:
        print(line)
    return ExitCode.OK


def _refusal_code(config: Config, key: str) -> ExitCode:
    """Why an action was refused, as an exit status: the message (or the journal) is not there, the journal cannot
    be used by this version, or the message's state does not allow the action."""
    from gateway.operator.journal_source import NoJournal, open_view

    try:
        view = open_view(config)
    except NoJournal:
        return ExitCode.NOT_FOUND
    except GatewayError:  # another schema version, an unreachable database: the refusal said so
        return ExitCode.CONFIG
    try:
        return ExitCode.REFUSED if view.find(key) else ExitCode.NOT_FOUND
    finally:
        view.close()


def retry(args: argparse.Namespace) -> int:
    return _operator_action(args, "retry")


def cancel(args: argparse.Namespace) -> int:
    return _operator_action(args, "cancel")


def release(args: argparse.Namespace) -> int:
    return _operator_action(args, "release")

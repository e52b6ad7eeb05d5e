"""The efm-gateway command line: results on stdout, errors on stderr, the exit statuses of gateway.exitcodes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.exitcodes import ExitCode, summary
from gateway.journal.phases import Phase
from gateway.logsetup import configure_logging
from gateway.signals import CaughtSignals

CONFIG_VARIABLE = "EFM_GATEWAY_CONFIG"
SYSTEM_CONFIG = Path("/etc/efm-gateway/config.yaml")
# Long-running commands log to stdout (the journal under systemd); the others keep stdout for their results.
LOGS_TO_STDOUT = ("run", "sandbox")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("efm-gateway")
    except PackageNotFoundError:
        return "unknown (not installed: run from a source tree)"


class _PrintVersion(argparse.Action):
    """--version, looked up only when asked for: every other start stays as quick as it can be."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> None:
        print(f"efm-gateway {version()}")
        parser.exit()


def config_path(given: Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The config.yaml to use and where that choice came from: --config, else $EFM_GATEWAY_CONFIG, else
    /etc/efm-gateway/config.yaml."""
    if given is not None:
        return given, "--config"
    from_environment = environ.get(CONFIG_VARIABLE, "")
    if from_environment:
        return Path(from_environment), f"${CONFIG_VARIABLE}"
    return SYSTEM_CONFIG, f"the default: no --config given and ${CONFIG_VARIABLE} is not set"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efm-gateway",
        description="A file-drop eFormidling integration point: watches an outbox folder, sends each message "
        "through its channel, writes status files, and delivers received messages to an inbox folder.",
        epilog=summary() + " Results go to stdout, errors to stderr.",
    )
    parser.add_argument("--version", action=_PrintVersion)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config", type=Path, default=None,
            help=f"path of config.yaml (default: ${CONFIG_VARIABLE}, else {SYSTEM_CONFIG})",
        )
        return sub

    def with_json(sub: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
        sub.add_argument("--json", action="store_true", help=f"print {what} as one JSON document (keys in the README)")
        return sub

    with_config(
        commands.add_parser(
            "run",
            help="run the daemon in the foreground until SIGTERM or Ctrl-C",
            description="Run the daemon: take drops from the outbox, send them, write status files, receive into the "
            "inbox. Logs go to stdout (journald under systemd).",
        )
    )
    check = with_json(with_config(
        commands.add_parser(
            "check-config",
            help="check config.yaml, the folders and the keys, then exit",
            description="Check config.yaml, create or check every folder, and report any problem in one line. "
            "Exit status 0 when the daemon could start.",
        )
    ), "the results")
    check.add_argument(
        "--online", action="store_true",
        help="also ask every endpoint once with its real authentication (Maskinporten, the Altinn exchange, the "
        "registry's certificate for us, each channel), compare the clock, and connect to the PostgreSQL journal "
        "(journal.url) to read its schema version; nothing is changed anywhere",
    )
    sandbox = commands.add_parser(
        "sandbox",
        help="run the sandbox network alone, for several gateways to share",
        description="Run the built-in sandbox network on loopback: a service registry with signed answers, a "
        "token endpoint, each channel's service, and an automatic peer organisation that answers messages. "
        "It prints, for each test organisation, the config.yaml settings that join a gateway to it.",
    )
    sandbox.add_argument("--data", type=Path, default=Path("var/sandbox"), help="state folder (default: %(default)s)")
    sandbox.add_argument("--port", type=int, default=9180, help="port on 127.0.0.1 (default: %(default)s)")
    sandbox.add_argument("--reply", action="store_true", help="the automatic peer also replies to each message")
    sandbox.add_argument(
        "--faults", type=Path, metavar="FILE",
        help="a YAML file of fault rules to start with (errors, resets, stalls, latency...; see the README); "
        "they can be changed at run time through /_faults",
    )
    dev_certs = commands.add_parser(
        "dev-certs",
        help="make a test CA and enterprise certificates for fictional organisations",
        description="Create (or extend) a test PKI: a root and an intermediate CA, and for each organisation a "
        "PKCS#12 keystore and PEM files. For the sandbox and tests only; never for production.",
    )
    dev_certs.add_argument("--out", type=Path, default=Path("var/certs"), help="folder (default: %(default)s)")
    dev_certs.add_argument("organisations", nargs="+", metavar="ORGNR[=NAME]", help="organisation numbers")
    validate = with_config(
        commands.add_parser(
            "validate",
            help="dry run: say what the daemon would do with a drop, without touching it",
            description="Check a drop (a message folder, or a flat sidecar <name>.xml with its documents beside it) "
            "exactly as the daemon would, and print whether it would be accepted and why not. Nothing is moved.",
        )
    )
    validate.add_argument("drop", type=Path, help="a drop folder, or a flat drop's sidecar file")
    with_json(validate, "the verdict and the route")
    status = with_config(
        commands.add_parser(
            "status",
            help="show messages from the journal",
            description="Show one message's whole history (by messageId, the start of one, or its drop name): "
            "its route and why, every status, errors and operator actions. Without one, a table of the newest "
            "messages, narrowed by the options; it fits the terminal. Safe while the daemon runs (read-only).",
        )
    )
    status.add_argument("message_id", nargs="?", metavar="MESSAGEID|DROP", help="a messageId or a drop name")
    status.add_argument("--open", action="store_true", help="only unfinished messages")
    status.add_argument("--failed", action="store_true", help="only failed, rejected or quarantined messages")
    status.add_argument("--phase", choices=[phase.value for phase in Phase], metavar="PHASE",
                        help="only messages in this phase: " + ", ".join(phase.value for phase in Phase))
    status.add_argument("--channel", help="only messages on this channel (its name as in the status files)")
    status.add_argument("--receiver", help="only messages to this organisation or person number")
    status.add_argument("--drop", metavar="NAME", help="only drops whose name contains NAME")
    status.add_argument("--since", metavar="WHEN", help="only messages created since: an age (30m, 2h, 1d) or a "
                        "date or time (2026-12-01, 2026-12-01T08:00; UTC unless it says otherwise)")
    status.add_argument("--limit", type=int, default=50, help="how many to list (default: %(default)s)")
    status.add_argument("--nodes", action="store_true", help="the nodes that share the journal instead: each one's "
                        "host, pid, last heartbeat and its age, live, lapsed or stopped")
    with_json(status, "the messages")
    operator_commands = {
        "retry": (
            "send a message again now",
            "send a message again now: one that failed before it was sent, or one waiting out a back-off. A failed "
            "message goes back from failed/ to the work area and is routed and sent afresh (its FEIL stays in the "
            "history as ANNET)",
        ),
        "cancel": (
            "end a message that is not yet sent (FEIL: cancelled by the operator)",
            "end a message that is not yet sent: FEIL \"cancelled by the operator\", its drop moved to failed/ with "
            "the reason. A message the running daemon may be sending at this moment is left alone",
        ),
        "release": (
            "take a quarantined incoming message again",
            "take a quarantined incoming message again (after the cause is fixed, a CA added to trust.ca_bundle, "
            "say): the daemon's receiver opens its kept package from state/quarantine/ at its next poll, and "
            "delivers it to the inbox or quarantines it again with the reason",
        ),
    }
    for name, (short, words) in operator_commands.items():
        sub = with_config(commands.add_parser(name, help=short, description=(
            words[0].upper() + words[1:] + ". Safe while the daemon runs: one short journal transaction; it "
            "prints what it changed.")))
        sub.add_argument("message_id", metavar="MESSAGEID|DROP", help="a messageId, the start of one, or a drop name")
    return parser


def hold_reloads() -> CaughtSignals:
    """Catch SIGHUP from the first moment of `run`: a reload asked for while the daemon is still starting (the
    sandbox network, the journal) is kept and done once it runs, where Python's default would end the process."""
    return CaughtSignals((signal.SIGHUP,))


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (gateway.exitcodes). A closed stdout ends it quietly."""
    try:
        code = _run_command(argv)
        sys.stdout.flush()  # a pipe's reader that has gone shows here, not at exit
        return code
    except BrokenPipeError:
        # Nothing more reaches the reader; point stdout at /dev/null so the interpreter's own flush at exit
        # does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.PIPE_CLOSED


def _run_command(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        args.reload_requested = hold_reloads()
    if "config" in args:
        args.config, args.config_origin = config_path(args.config, os.environ)
    args.log_stream = sys.stdout if args.command in LOGS_TO_STDOUT else sys.stderr
    configure_logging(stream=args.log_stream)  # until config.yaml says otherwise (logging.level, logging.format)
    try:
        from gateway import commands

        handler = getattr(commands, args.command.replace("-", "_"))
        return handler(args)
    except GatewayError as exc:
        print(f"efm-gateway: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception:
        traceback.print_exc()
        print("efm-gateway: an unexpected error (a bug); please report it with the lines above", file=sys.stderr)
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())

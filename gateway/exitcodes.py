"""The exit statuses of every efm-gateway command: the README's table is this one (a test keeps them equal).

2 is shared by usage and configuration errors on purpose: argparse exits 2 on a usage error, both mean
"nothing was done; fix the command line or config.yaml", and systemd must not restart the daemon on
either (the units say RestartPreventExitStatus=2).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REJECTED = 1
    CONFIG = 2
    NOT_FOUND = 3
    REFUSED = 4
    ROUTE_NOT_CHECKED = 5
    ONLINE_CHECK_FAILED = 6
    INTERNAL = 70
    INTERRUPTED = 130
    PIPE_CLOSED = 141


# Short, for `efm-gateway --help`; the README's table says each at length.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.REJECTED: "validate: the drop would be rejected, or no channel carries it",
    ExitCode.CONFIG: "usage or configuration error, nothing done",
    ExitCode.NOT_FOUND: "no such message, journal or drop",
    ExitCode.REFUSED: "retry/cancel/release refused by the message's state",
    ExitCode.ROUTE_NOT_CHECKED: "validate: accepted, but the service registry could not be asked for the route",
    ExitCode.ONLINE_CHECK_FAILED: "check-config --online: the configuration holds, but an online check failed",
    ExitCode.INTERNAL: "a bug (traceback on stderr)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.PIPE_CLOSED: "stdout closed early (| head)",
}


def summary() -> str:
    """One paragraph for --help."""
    return "Exit status: " + "; ".join(f"{int(code)} {MEANINGS[code]}" for code in ExitCode) + "."

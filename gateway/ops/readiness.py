"""/readyz: whether the daemon can do its work now, as opposed to /healthz's "is it alive".

Ready means: every endpoint answered last time it was asked (the start-up probe or the last real
request), every folder is above its disk floor, our own certificate is within its validity, and the journal's
database answers (a node whose PostgreSQL does not answer takes no work until it does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.ops.disk import MIB, FolderSpace
from gateway.ops.httpwatch import Outcome


@dataclass(frozen=True)
class CertificateWindow:
    """Our own certificate's validity, in seconds since the epoch."""

    not_before: float
    not_after: float
    subject: str


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def endpoint_checks(endpoints: Mapping[str, str], last: Mapping[str, Outcome], now: float) -> dict[str, Check]:
    checks = {}
    for name, url in sorted(endpoints.items()):
        outcome = last.get(name)
        if outcome is None:
            checks[f"endpoint:{name}"] = Check(False, f"{url}: not asked yet")
        else:
            state = "answers" if outcome.reachable else "does not answer"
            checks[f"endpoint:{name}"] = Check(
                outcome.reachable, f"{url} {state} ({outcome.detail}, {max(0.0, now - outcome.at):.0f} s ago)"
            )
    return checks


def disk_checks(spaces: list[FolderSpace]) -> dict[str, Check]:
    checks = {}
    for space in spaces:
        if space.free_bytes is None:
            checks[f"disk:{space.key}"] = Check(False, f"{space.path} cannot be read")
        else:
            checks[f"disk:{space.key}"] = Check(
                not space.below_floor,
                f"{space.path}: {space.free_bytes / MIB:.0f} MiB free, floor {space.floor_bytes / MIB:.0f} MiB",
            )
    return checks


def certificate_check(window: CertificateWindow | None, now: float) -> Check:
    if window is None:
        return Check(True, "no keystore configured")
    until = _utc(window.not_after)
    if now < window.not_before:
        return Check(False, f"{window.subject}: not valid before {_utc(window.not_before)}")
    if now >= window.not_after:
        return Check(False, f"{window.subject}: expired {until}")
    return Check(True, f"{window.subject}: valid until {until} ({(window.not_after - now) / 86400:.0f} days)")


def readiness(
    endpoints: Mapping[str, str],
    last: Mapping[str, Outcome],
    spaces: list[FolderSpace],
    certificate: CertificateWindow | None,
    now: float,
    journal: Check | None = None,
) -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON report): every check with ok and detail, and the names of the failing ones."""
    checks = {
        **endpoint_checks(endpoints, last, now),
        **disk_checks(spaces),
        "certificate": certificate_check(certificate, now),
        **({"journal": journal} if journal is not None else {}),
    }
    failing = [name for name, check in checks.items() if not check.ok]
    report = {
        "ready": not failing,
        "failing": failing,
        "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
    }
    return not failing, report


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")

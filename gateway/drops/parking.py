"""Park a drop in failed/ untouched, with a plain-language explanation beside it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gateway.clock import isoformat
from gateway.fsio import atomic_write_bytes, durable_rename, unique_target
from gateway.journal.phases import Phase
from gateway.journal.records import MessageRecord

EXPLANATION_SUFFIX = ".error.txt"
MAX_EXPLANATION_READ = 64 * 1024
MAX_FAILED_NAME_BYTES = 230


def explanation_text(
    drop_name: str,
    message_id: str | None,
    problems: list[str] | tuple[str, ...],
    when: datetime,
    headline: str = "efm-gateway could not accept this drop",
    advice: str = "Correct the problems above and drop the message again.",
) -> str:
    lines = [
        f"{headline}: {drop_name}",
        f"messageId: {message_id or '(none)'}",
        f"time: {isoformat(when)}",
        "",
        "What is wrong:",
        *(f"  - {problem}" for problem in problems),
        "",
        advice,
        "",
    ]
    return "\n".join(lines)


# What the archivist reads, by how the message ended: (headline, advice).
_WORDS = {
    Phase.REJECTED: (
        "efm-gateway could not accept this drop",
        "Correct the problems above and drop the message again.",
    ),
    Phase.FAILED: (
        "efm-gateway could not send this message",
        "Correct the problem above and drop the message again (with a new messageId).",
    ),
    Phase.EXPIRED: (
        "efm-gateway did not send this message",
        "Drop the message again with a later <deadline> if it should still be sent.",
    ),
}


def park_claim(record: MessageRecord, claim_folder: Path, drop_name: str, failed: Path, when: datetime) -> None:
    """Move a claimed drop whose message ended badly (rejected, failed, expired) to failed/ with the
    reasons from its journal row. Repeatable after a crash."""
    headline, advice = _WORDS[record.phase]
    failed_name = record.detail.get("failed_name") or choose_failed_name(failed, drop_name)
    text = explanation_text(drop_name, record.message_id, record.errors, when, headline, advice)
    park(claim_folder, failed, failed_name, text)


def _shortened(drop_name: str) -> str:
    encoded = drop_name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_FAILED_NAME_BYTES:  # room for ".error.txt" and a counter within 255 bytes
        return encoded[:MAX_FAILED_NAME_BYTES].decode("utf-8", "ignore") + "~"
    return drop_name


def choose_failed_name(failed: Path, drop_name: str) -> str:
    """A name in failed/ that neither the drop nor its explanation file would overwrite."""
    candidate = unique_target(failed, _shortened(drop_name))
    while (failed / f"{candidate.name}{EXPLANATION_SUFFIX}").exists():
        candidate = unique_target(failed, candidate.name + ".x")
    return candidate.name


STAYS_MARKER = "is still in the outbox"  # in the explanation of a drop that could not be moved here


def remove_refusal_note(explanation: Path) -> bool:
    """Remove `explanation`, written when a drop was refused but could not be moved (it stayed in the
    outbox), now that the drop has left the outbox; False when it is no longer such a note."""
    if explanation.is_symlink() or not explanation.is_file():
        return False
    try:
        with open(explanation, encoding="utf-8", errors="replace") as handle:
            text = handle.read(MAX_EXPLANATION_READ)
    except OSError:
        return False
    if STAYS_MARKER not in text:
        return False
    explanation.unlink(missing_ok=True)
    return True


def park(source: Path, failed: Path, failed_name: str, explanation: str) -> Path:
    """Write the explanation, then move `source` (a folder or file) to failed/<failed_name>. Repeatable."""
    target = failed / failed_name
    if target.exists() and source.exists():
        failed_name = choose_failed_name(failed, failed_name)
        target = failed / failed_name
    atomic_write_bytes(failed / f"{failed_name}{EXPLANATION_SUFFIX}", explanation.encode("utf-8"))
    if source.exists() or source.is_symlink():
        durable_rename(source, target)
    return target

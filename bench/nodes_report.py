"""The figures of one bench/nodes.py run, and how they are printed: each run's details, then the table."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

# How many times SQLite's CPU per message the PostgreSQL engine may cost (issue 19).
CPU_TARGET = 1.5
SHOWN_WORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")


@dataclass
class Figures:
    label: str
    engine: str
    count: int
    seconds: dict[str, float]  # sent, peer, inbox, done: from the first drop
    cpu: dict[str, float]  # nodes, postgresql, sandbox: CPU seconds in the run
    statements: collections.Counter[str]  # the nodes' journal statements, by first word
    claims: collections.Counter[str]  # "<kind> <outcome>": send taken, job:retention held by another node, ...
    let_go: int  # drops another node journaled first
    log_levels: collections.Counter[str]
    notable: collections.Counter[str]  # WARNING and ERROR lines, numbers and ids blurred
    examples: dict[str, str]  # the first line of each notable kind, as it was
    complete: dict[str, int]  # sent, levert, answered, inbox
    postgres: dict = field(default_factory=dict)  # pg_server.statistics()
    stalled: float | None = None  # incomplete: seconds it waited, in vain, after the last progress
    dirty_below_zero: int = 0  # messages whose unwritten status changes count below zero

    def ms(self, seconds: float) -> float:
        return seconds / self.count * 1000

    def rate(self, key: str) -> float:
        return self.count / self.seconds[key]

    def claims_by_outcome(self, outcome: str, per_message_work: bool | None = None) -> int:
        """Claims of an outcome; of per-message work only (sends, ...) when True, of periodic jobs when False."""
        return sum(n for key, n in self.claims.items() if key.endswith(" " + outcome)
                   and (per_message_work is None or key.startswith("job:") != per_message_work))


def print_run(figures: Figures) -> None:
    complete = figures.complete
    ended = ("done" if figures.stalled is None else
             f"INCOMPLETE (nothing moved in the {figures.stalled:.0f} s after; measured up to the last progress)")
    print(f"{ended} in {figures.seconds['done']:.1f} s: {complete['sent']} SENDT, {complete['levert']} LEVERT, "
          f"{complete['answered']} answered by the peer, {complete['inbox']} replies in the inbox, of {figures.count}")
    if figures.dirty_below_zero:
        print(f"{figures.dirty_below_zero} messages have a count of unwritten status changes below zero "
              "(a change marked written twice: their next change is not written to the status file)")
    print("log lines: " + ", ".join(f"{level} {n}" for level, n in sorted(figures.log_levels.items())))
    for line, n in figures.notable.most_common(8):
        print(f"  {n:5d} x {line}")
        if line in figures.examples:
            print(f"          first: {figures.examples[line][:300]}")
    if figures.claims:
        print("claims: " + ", ".join(f"{key} {n}" for key, n in sorted(figures.claims.items())))
    others = {word: n for word, n in figures.statements.items() if word not in SHOWN_WORDS}
    if others:
        print("other statements: " + ", ".join(f"{word} {n}" for word, n in sorted(others.items())))
    if figures.postgres:
        for title, key, in (("called most", "by_calls"), ("took the most time", "by_time")):
            print(f"statements that {title} (pg_stat_statements; per message: calls, ms):")
            for calls, total_ms, _rows, query in figures.postgres[key]:
                print(f"  {calls / figures.count:7.2f} {total_ms / figures.count:7.3f}  {query[:130]}")
    print(flush=True)


def print_table(runs: list[Figures]) -> None:
    if not runs:
        return
    width = max(22, *(len(figures.label) + 2 for figures in runs))
    print(f"{'':44}" + "".join(f"{figures.label:>{width}}" for figures in runs))

    def row(label: str, values: list[float | int | None], form: str = "{:.1f}") -> None:
        shown = ["-" if value is None else form.format(value) for value in values]
        print(f"{label:44}" + "".join(f"{text:>{width}}" for text in shown))

    postgres = [figures.postgres or None for figures in runs]
    baseline = next((figures for figures in runs if figures.engine == "sqlite"), None)

    def total_ms(figures: Figures) -> float:
        return figures.ms(figures.cpu["nodes"] + figures.cpu["postgresql"])

    row("messages/s to SENDT", [figures.rate("sent") for figures in runs])
    row("messages/s into the peer", [figures.rate("peer") for figures in runs])
    row("messages/s, the peer's replies into the inbox", [figures.rate("inbox") for figures in runs])
    row("seconds until all done (LEVERT, replies in)", [figures.seconds["done"] for figures in runs])
    row("CPU ms/message: the nodes", [figures.ms(figures.cpu["nodes"]) for figures in runs])
    row("CPU ms/message: PostgreSQL's server", [figures.ms(figures.cpu["postgresql"]) if figures.engine != "sqlite"
                                                else None for figures in runs])
    row("CPU ms/message: nodes + PostgreSQL", [total_ms(figures) for figures in runs])
    if baseline is not None:
        row(f"  times SQLite's (target: at most {CPU_TARGET:g})",
            [total_ms(figures) / total_ms(baseline) for figures in runs], "{:.2f}")
    row("CPU ms/message: the sandbox (peer included)", [figures.ms(figures.cpu["sandbox"]) for figures in runs])
    row("journal statements/message (engine's count)",
        [sum(figures.statements.values()) / figures.count for figures in runs])
    for word in SHOWN_WORDS:
        if any(figures.statements.get(word) for figures in runs):
            row(f"  {word}", [figures.statements.get(word, 0) / figures.count for figures in runs], "{:.2f}")
    row("PostgreSQL: statements/message (server's)",
        [p["calls"] / f.count if p else None for p, f in zip(postgres, runs, strict=True)])
    row("PostgreSQL: statement time ms/message",
        [p["exec_ms"] / f.count if p else None for p, f in zip(postgres, runs, strict=True)], "{:.2f}")
    row("PostgreSQL: commits/message",
        [p["commits"] / f.count if p else None for p, f in zip(postgres, runs, strict=True)], "{:.2f}")
    row("PostgreSQL: rollbacks", [p["rollbacks"] if p else None for p in postgres], "{:d}")
    row("PostgreSQL: rows written/message",
        [p["rows_written"] / f.count if p else None for p, f in zip(postgres, runs, strict=True)], "{:.2f}")
    row("PostgreSQL: deadlocks", [p["deadlocks"] if p else None for p in postgres], "{:d}")
    claimed = [figures.engine != "sqlite" for figures in runs]
    for label, outcome, per_message in (
        ("claims taken/message: sends", "taken", True),
        ("claims taken/message: periodic jobs", "taken", False),
    ):
        row(label, [f.claims_by_outcome(outcome, per_message) / f.count if c else None
                    for f, c in zip(runs, claimed, strict=True)], "{:.2f}")
    for label, outcome, per_message in (
        ("conflicts: send held by another node", "held by another node", True),
        ("conflicts: job held by another node", "held by another node", False),
        ("conflicts: claim given up (deadlock, lock)", "gave way", None),
        ("late writes fenced out", "fenced out", None),
    ):
        row(label, [f.claims_by_outcome(outcome, per_message) if c else None
                    for f, c in zip(runs, claimed, strict=True)], "{:d}")
    row("drops journaled by another node first", [figures.let_go for figures in runs], "{:d}")
    row("ERROR lines (tracebacks)", [figures.log_levels.get("ERROR", 0) + figures.notable.get("Traceback", 0)
                                     for figures in runs], "{:d}")
    row("WARNING lines", [figures.log_levels.get("WARNING", 0) for figures in runs], "{:d}")
    row("messages: status changes counted below zero", [figures.dirty_below_zero for figures in runs], "{:d}")
    incomplete = [figures.label for figures in runs
                  if figures.stalled is not None or figures.complete["inbox"] > figures.count]
    if incomplete:
        print(f"NOT COMPLETE (something missing or doubled): {', '.join(incomplete)}")

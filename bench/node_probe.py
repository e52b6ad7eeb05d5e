"""`efm-gateway` as `python -m gateway.cli` runs it, counting from inside what bench/nodes.py reports:

- the journal's statements, as the engine hands them to its database (SQLite: every statement SQLite begins,
  through its trace hook, each row of an executemany included; PostgreSQL: every statement the engine's
  connections execute, and each row of an executemany), by their first word (SELECT, UPDATE, BEGIN, ...);
- the node's claims (gateway/journal/claims.py) by kind of work (`send`, `job:<name>`) and outcome: taken, held
  by another node (a claim that found another node's live lease or row lock: the conflict), given way (the
  database gave the try up: a deadlock, a lock not granted in time), and late writes refused by the fencing token.

The counts go to a JSON file every half second (replaced atomically), read by the bench while the node runs.

    python bench/node_probe.py COUNTS.json sqlite|postgresql run --config config.yaml
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

_counts: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def count(key: str, by: int = 1) -> None:
    with _lock:
        _counts[key] += by


def _statement(sql: str, by: int = 1) -> None:
    words = sql.split(None, 1)
    count(f"statement {words[0].upper() if words else '?'}", by)


def _count_sqlite() -> None:
    from gateway.journal import sqlite_engine

    def traced(sql: str) -> None:
        if not sql.startswith("--"):  # a trigger's own program, not a statement of the journal's
            _statement(sql)

    for name in ("writer", "reader"):
        original = getattr(sqlite_engine.SqliteEngine, name)

        def connection(self: Any, _original: Any = original) -> sqlite3.Connection:
            opened = _original(self)
            opened.set_trace_callback(traced)
            return opened

        setattr(sqlite_engine.SqliteEngine, name, connection)


def _count_postgresql() -> None:
    from gateway.journal import postgres_engine

    run = postgres_engine._run

    def counted_run(connection: Any, sql: str, params: Any) -> Any:
        _statement(sql)
        return run(connection, sql, params)

    postgres_engine._run = counted_run
    executemany = postgres_engine.PostgresWriter.executemany

    def counted_executemany(self: Any, sql: str, params: Any) -> Any:
        rows = [tuple(values) for values in params]
        _statement(sql, len(rows))
        return executemany(self, sql, rows)

    postgres_engine.PostgresWriter.executemany = counted_executemany


def _count_claims() -> None:
    from gateway.journal import claims

    claim = claims.Claims.claim
    check = claims.Claims.check

    def kind(work: str) -> str:
        return work if work.startswith("job:") else work.split(":", 1)[0]

    def counted_claim(self: Any, work: str, *args: Any, **kwargs: Any) -> Any:
        try:
            taken = claim(self, work, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if claims.gave_way(exc):
                count(f"claim {kind(work)} gave way")
            raise
        count(f"claim {kind(work)} {'taken' if taken is not None else 'held by another node'}")
        return taken

    def counted_check(self: Any, held: Any) -> None:
        try:
            check(self, held)
        except claims.FencedOut:
            count(f"claim {kind(held.work)} fenced out")
            raise

    claims.Claims.claim = counted_claim
    claims.Claims.check = counted_check


def _write_counts(path: Path) -> None:
    while True:
        with _lock:
            snapshot = dict(_counts)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(snapshot))
        os.replace(temporary, path)
        time.sleep(0.5)


def main() -> int:
    counts_file, engine, *argv = sys.argv[1:]
    if engine == "postgresql":
        _count_postgresql()
    else:
        _count_sqlite()
    _count_claims()
    threading.Thread(target=_write_counts, args=(Path(counts_file),), name="bench-counts", daemon=True).start()
    from gateway.cli import main as gateway_main

    return gateway_main(argv)


if __name__ == "__main__":
    sys.exit(main())

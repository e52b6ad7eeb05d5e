"""Active/active on this machine: one node on SQLite, one node on PostgreSQL, two nodes on PostgreSQL (one shared
folder tree, one database), each run sending N messages (a 50 KiB PDF each) to the sandbox's automatic peer,
which answers each one as a real integration point does (MOTTATT, LEVERT, a kvittering) and with a reply that
the nodes take into their inbox: every node sends and receives.

    python bench/nodes.py [--messages 500] [--pdf-kib 50] [--pause 20] [--runs sqlite,pg,pg2]

For each run it prints:
- messages per second to SENDT (status files), into the peer (its own record of what it answered) and the
  peer's replies into the nodes' inbox, and the seconds until everything was done (LEVERT and every reply in);
- CPU per message: the nodes' processes (user + system, from the kernel's accounting, as psutil reads it), the
  PostgreSQL server's (the postmaster, every session and background worker, the ended ones too), and the sandbox's;
  measured from the first drop to the moment everything was done, so idle polling meanwhile counts too;
- journal statements per message, counted inside the nodes as the engine hands them to its database
  (bench/node_probe.py: the same count on both engines, by first word), and on PostgreSQL also the server's own
  count (pg_stat_statements' calls of top-level statements; the transactions, rows written and deadlocks of
  pg_stat_database). The server's count is the lower one: pg_stat_statements (PostgreSQL 15) does not count
  BEGIN, SAVEPOINT, RELEASE and COMMIT once psycopg has prepared them (from their sixth use on a connection);
- claims (PostgreSQL only: SQLite's one node claims nothing): taken, and the conflicts, a claim that found the
  work held by another node, a claim the database gave up (deadlock, lock timeout), a late write fenced out;
  and the drops another node journaled first (a line in the log of the node that let go).
On PostgreSQL, the statements called most and those that took the most time follow the table.

PostgreSQL is Debian's, started by the bench as an unprivileged user with fsync on (bench/pg_server.py).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import pg_server
from bench.nodes_report import Figures, print_run, print_table
from bench.runs import StatusWatch, cpu_seconds, stage_messages, tree_cpu_seconds
from tests.dpo.network import PEER, A, SandboxProcess, gateway_config
from tests.postgres import PostgresDatabase, PostgresServer

REPO = Path(__file__).resolve().parents[1]
SHARED = ("outbox", "status", "inbox", "failed", "sent", "work")
RUNS = {"sqlite": ("SQLite, 1 node", "sqlite", 1), "pg": ("PostgreSQL, 1 node", "postgresql", 1),
        "pg2": ("PostgreSQL, 2 nodes", "postgresql", 2)}
LET_GO = "was journaled by another node first"
LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


class Node:
    """One gateway process under bench/node_probe.py, which counts its statements and claims."""

    def __init__(self, config: Path, engine: str) -> None:
        self.config = config
        self.log = config.parent / "daemon.log"
        self.counts = config.parent / "counts.json"
        command = [sys.executable, str(REPO / "bench" / "node_probe.py"), str(self.counts), engine,
                   "run", "--config", str(config)]
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=config.parent,
                                            env={**os.environ, "PYTHONPATH": str(REPO)})

    def read_counts(self) -> collections.Counter[str]:
        try:
            return collections.Counter(json.loads(self.counts.read_text()))
        except (OSError, ValueError):
            return collections.Counter()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def node_config(root: Path, sandbox: SandboxProcess, name: str, database: PostgresDatabase | None) -> Path:
    """A node of A's: its folders on the shared tree (polling intake, as on a share), its state of its own."""
    share = root / "share"
    folders = {"create_missing": True, "state": str(root / name / "state"),
               **{folder: str(share / folder) for folder in SHARED}}
    config = gateway_config(root / name, sandbox, A, folders=folders,
                            intake={"mode": "polling", "scan_interval_seconds": 0.3, "quiet_period_seconds": 0.2},
                            network={"send_interval_seconds": 0.5}, channels={"dpo": {"inbound_poll_seconds": 0.2}})
    settings = yaml.safe_load(config.read_text())
    settings["node"] = {"name": name}
    if database is not None:
        password_file = config.parent / "journal-password"
        password_file.write_text(database.password + "\n")
        password_file.chmod(0o600)
        settings["journal"] = {"url": database.url, "password_file": str(password_file)}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return config


def peer_answered(sandbox: SandboxProcess, message_ids: set[str]) -> dict[str, float]:
    """When the peer answered each of our messages, from its own record (read-only)."""
    path = sandbox.data / "peers" / PEER / "peer.sqlite"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT message_id, at FROM handled WHERE outcome = 'answered'").fetchall()
    except sqlite3.Error:
        return {}
    return {message_id: datetime.fromisoformat(at).timestamp() for message_id, at in rows if message_id in message_ids}


def read_logs(nodes: list[Node]) -> tuple[collections.Counter[str], collections.Counter[str], dict[str, str], int]:
    """The nodes' log lines by level; the WARNING and ERROR lines (numbers and ids blurred, so alike ones count
    together) with the first of each as it was; and how many drops another node journaled first."""
    levels: collections.Counter[str] = collections.Counter()
    notable: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    let_go = 0
    for node in nodes:
        for line in node.log.read_text(errors="replace").splitlines():
            level = LEVEL.search(line)
            if level:
                levels[level.group(1)] += 1
            if LET_GO in line:
                let_go += 1
            if level and level.group(1) in ("WARNING", "ERROR", "CRITICAL"):
                blurred = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "#", line[level.start():])
                notable[blurred[:160]] += 1
                examples.setdefault(blurred[:160], line)
            elif line.startswith("Traceback"):
                notable["Traceback"] += 1
    return levels, notable, examples, let_go


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def run_folder(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="efm-bench-nodes-"))
    try:
        yield root
    finally:
        if keep:
            print(f"the run's folders (kept): {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def read_all_counts(nodes: list[Node]) -> collections.Counter[str]:
    return sum((node.read_counts() for node in nodes), collections.Counter())


def dirty_below_zero(database: PostgresDatabase | None, sqlite_file: Path) -> int:
    """Messages whose count of status changes not yet written is below zero: a change marked written twice (by two
    nodes), which leaves the next change of that message unwritten."""
    query = "SELECT count(*) FROM messages WHERE status_dirty < 0"
    if database is not None:
        with database.connect() as connection:
            return connection.execute(query).fetchone()[0]
    with sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True) as db:
        return db.execute(query).fetchone()[0]


def measure(key: str, count: int, pdf_kib: int, server: PostgresServer | None, timeout: float,
            keep: bool = False, stall: float = 90.0) -> Figures:
    label, engine, node_count = RUNS[key]
    with run_folder(keep) as root:
        sandbox = SandboxProcess(root / "sandbox", reply=True)
        database = None
        if engine == "postgresql":
            assert server is not None
            database = pg_server.new_database(server, f"bench_{key}_{uuid.uuid4().hex[:8]}")
        nodes = [Node(node_config(root, sandbox, f"node-{index}", database), engine)
                 for index in range(1, node_count + 1)]
        try:
            for node in nodes:
                lock = node.config.parent / "state" / "efm-gateway.lock"
                wait_until(lambda: lock.exists() or node.process.poll() is not None, 60, "a node's start")  # noqa: B023
                if node.process.poll() is not None:
                    raise SystemExit(f"a node stopped at its start:\n{node.log.read_text()[-3000:]}")
            time.sleep(3)  # the first polls, listings and heartbeats are behind them
            staging = root / "staging"
            names = [(folder.name, message_id) for folder, message_id in stage_messages(staging, count, pdf_kib, PEER)]
            share = root / "share"
            status_files = {message_id: share / "status" / f"{name}.{message_id}.xml" for name, message_id in names}
            sent, levert = StatusWatch(status_files), StatusWatch(status_files, "LEVERT")
            ids = set(status_files)
            if database is not None:
                pg_server.reset_statistics(database)
            postmaster = pg_server.postmaster_pid(server) if database is not None and server else None

            def cpu_now() -> dict[str, float]:
                return {"nodes": sum(sum(cpu_seconds(node.process.pid)) for node in nodes),
                        "postgresql": sum(tree_cpu_seconds(postmaster)) if postmaster else 0.0,
                        "sandbox": sum(cpu_seconds(sandbox.process.pid))}

            counts_before = read_all_counts(nodes)
            cpu_before = cpu_now()
            started = time.time()
            for name, _ in names:
                os.rename(staging / name, share / "outbox" / name)
            inbox_seen: dict[str, float] = {}
            answered: dict[str, float] = {}
            next_peer_read = 0.0
            deadline = time.time() + timeout
            # A run that stops moving short of the end (a message lost between the nodes) is measured up to its
            # last progress, so the wait after it adds no idle CPU or statements to the figures.
            moved, last_moved = -1, time.time()
            measured = (last_moved, cpu_before, counts_before)
            while time.time() < deadline and time.time() - last_moved < stall:
                sent.poll()
                if sent.done:
                    levert.poll()
                for entry in os.scandir(share / "inbox"):
                    if not entry.name.startswith(".") and entry.name not in inbox_seen:
                        inbox_seen[entry.name] = time.time()
                if len(answered) < count and time.time() >= next_peer_read:
                    answered = peer_answered(sandbox, ids)
                    next_peer_read = time.time() + 1
                progress = len(sent.reached_at) + len(levert.reached_at) + len(answered) + len(inbox_seen)
                if progress != moved:
                    moved, last_moved = progress, time.time()
                    measured = (last_moved, cpu_now(), read_all_counts(nodes))
                if sent.done and levert.done and len(answered) == count and len(inbox_seen) >= count:
                    break
                time.sleep(0.2)
            complete = sent.done and levert.done and len(answered) == count and len(inbox_seen) >= count
            if complete:
                time.sleep(1)  # the counts files are written every half second
                measured = (measured[0], cpu_now(), read_all_counts(nodes))
            done, cpu_after, counts_after = measured
            counts = counts_after - counts_before
            postgres = pg_server.statistics(database) if database is not None else {}
            below_zero = dirty_below_zero(database, nodes[0].config.parent / "state" / "journal.sqlite")
        finally:
            for node in nodes:
                node.stop()
            sandbox.process.terminate()
            sandbox.process.wait(timeout=30)
        levels, notable, examples, let_go = read_logs(nodes)

        def last(moments: dict[str, float]) -> float:
            return (max(moments.values()) - started) if len(moments) >= count else float("nan")

        return Figures(
            label=label, engine=engine, count=count,
            seconds={"sent": last(sent.reached_at), "peer": last(answered), "inbox": last(inbox_seen),
                     "done": done - started},
            cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_after},
            statements=collections.Counter({k.split(" ", 1)[1]: v for k, v in counts.items()
                                            if k.startswith("statement ")}),
            claims=collections.Counter({k.split(" ", 1)[1]: v for k, v in counts.items() if k.startswith("claim ")}),
            let_go=let_go, log_levels=levels, notable=notable, examples=examples,
            complete={"sent": len(sent.reached_at), "levert": len(levert.reached_at), "answered": len(answered),
                      "inbox": len(inbox_seen)},
            stalled=None if complete else time.time() - done, dirty_below_zero=below_zero,
            postgres=postgres,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--pdf-kib", type=int, default=50)
    parser.add_argument("--runs", default="sqlite,pg,pg2", help="which runs, in order: sqlite, pg, pg2")
    parser.add_argument("--pause", type=float, default=20.0,
                        help="seconds between runs (bench/throughput.py says why: ext4 after many deletions)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folders (logs, configs, share)")
    parser.add_argument("--timeout", type=float, help="seconds a run may take (default: 120 + 2 per message)")
    parser.add_argument("--stall", type=float, default=90.0,
                        help="seconds without progress after which a run is given up as incomplete")
    args = parser.parse_args()
    keys = [key.strip() for key in args.runs.split(",") if key.strip()]
    unknown = [key for key in keys if key not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}: choose from {', '.join(RUNS)}")
    timeout = args.timeout or 120 + 2 * args.messages
    # Stopped with SIGTERM, the bench stops its nodes, sandbox and PostgreSQL on the way out, as on SIGINT (which
    # a shell ignores in a job it started in the background).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    runs: list[Figures] = []
    with contextlib.ExitStack() as stack:
        server = (stack.enter_context(pg_server.bench_server())
                  if any(RUNS[key][1] == "postgresql" for key in keys) else None)
        for key in keys:
            if runs:
                time.sleep(args.pause)
            print(f"--- {RUNS[key][0]}: {args.messages} messages", flush=True)
            figures = measure(key, args.messages, args.pdf_kib, server, timeout, args.keep, args.stall)
            print_run(figures)
            runs.append(figures)
            print_table(runs)  # after each run: a batch stopped later still has the figures of the runs before
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Intake benchmark: backlog throughput, live latency, peak memory and idle CPU of the real daemon.

Runs `python -m gateway.cli run` as a child process on a temporary folder tree (events mode):

1. backlog: --backlog folder drops (message.xml + one small PDF) are placed in the outbox before
   the daemon starts; measures drops accepted per second until every one has an OPPRETTET status
   file (timed from the daemon's spawn, and from its first status file, which leaves out start-up).
2. live: with the daemon running, --live more drops, each built in a staging folder and moved in
   with one rename, at a steady pace of --live-rate drops/s (0: as fast as possible). Latency is the
   time a drop's status file appears (inotify IN_MOVED_TO on the status folder, read directly)
   minus the time its rename returned.
3. peak RSS of the daemon (psutil, sampled every 20 ms, and VmHWM from /proc at the end), and the CPU
   the idle daemon uses over --idle-seconds once all work is done, as % of one core.

Usage: python bench/intake.py [--backlog 10000] [--live 1000] [--live-rate 200] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.intake.watcher import InotifyOutboxWatcher  # noqa: E402
from tests.foundation.drops import pdf_bytes, sidecar_xml, write_config  # noqa: E402

STATUS_NS = "{urn:efm-gateway:status:1}"
TARGETS = {"accepted_per_s": 500.0, "p50_ms": 100.0, "rss_mib": 150.0, "idle_cpu_pct": 1.0}


def build_drops(staging: Path, prefix: str, count: int) -> list[Path]:
    """Folder drops, complete, waiting in `staging` to be renamed into the outbox."""
    sidecar = sidecar_xml()
    folders = []
    for index in range(count):
        folder = staging / f"{prefix}-{index:05d}"
        folder.mkdir()
        (folder / "brev.pdf").write_bytes(pdf_bytes(folder.name))
        (folder / "message.xml").write_bytes(sidecar)
        folders.append(folder)
    return folders


def visible_status_files(status: Path) -> int:
    with os.scandir(status) as listing:
        return sum(1 for entry in listing if entry.name.endswith(".xml") and not entry.name.startswith("."))


def current_statuses(status: Path, prefix: str) -> dict[str, int]:
    """How many status files of drops named `prefix-*` are in each current status."""
    seen: dict[str, int] = {}
    for path in status.iterdir():
        if path.name.startswith(prefix + "-") and path.suffix == ".xml":
            current = etree.parse(str(path)).getroot().findtext(f"{STATUS_NS}current") or "(none)"
            seen[current] = seen.get(current, 0) + 1
    return seen


def journal_counts(journal: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT phase, count(*) FROM messages GROUP BY phase").fetchall())
    finally:
        db.close()


class RssSampler(threading.Thread):
    def __init__(self, process: psutil.Process, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class StatusArrivals:
    """When each drop's status file first appeared: atomic writes arrive as a rename into the folder.

    Read with the daemon's own inotify reader (gateway.intake.watcher), not watchdog: watchdog holds
    each IN_MOVED_FROM back for 0.5 s to pair it, and every event behind it waits too, which would
    be measured as latency.
    """

    def __init__(self, folder: Path, prefix: str) -> None:
        self.outbox = folder  # the attribute name InotifyOutboxWatcher reads
        self.prefix = prefix + "-"
        self.arrived: dict[str, float] = {}
        self.lost = False
        self._lock = threading.Lock()

    def note(self, name: str, moved_in: bool = False) -> None:
        now = time.monotonic()
        if not moved_in or not name.startswith(self.prefix) or not name.endswith(".xml"):
            return
        with self._lock:
            self.arrived.setdefault(name.split(".", 1)[0], now)

    def lost_events(self) -> None:
        self.lost = True

    def count(self) -> int:
        with self._lock:
            return len(self.arrived)


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise SystemExit(f"the daemon exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=10000, help="drops waiting before start (default 10000)")
    parser.add_argument("--live", type=int, default=1000, help="drops moved in while running (default 1000)")
    parser.add_argument(
        "--live-rate", type=float, default=200.0, help="live drops per second, steady; 0 = as fast as possible"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="efm-bench-intake-"))
    # The production defaults of config.yaml, in events mode.
    config = write_config(
        root,
        mode="events",
        scan_interval_seconds=5,
        quiet_period_seconds=2,
        incomplete_timeout_seconds=600,
        max_drops_per_scan=500,
    )
    outbox, status = root / "var" / "outbox", root / "var" / "status"
    for folder in (outbox, status):
        folder.mkdir(parents=True)
    staging = root / "staging"
    staging.mkdir()
    journal = root / "var" / "state" / "journal.sqlite"
    print(f"bench folder: {root}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    start_load = os.getloadavg()[0]
    started = time.monotonic()
    for folder in build_drops(staging, "backlog", args.backlog):
        os.rename(folder, outbox / folder.name)
    live_drops = build_drops(staging, "live", args.live)
    built = time.monotonic() - started
    print(f"built {args.backlog} backlog drops (in the outbox) and {args.live} live drops in {built:.1f} s")

    log = open(root / "daemon.log", "wb")  # noqa: SIM115 - the child writes to it until it stops
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    spawned = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env=env,
    )
    proc = psutil.Process(daemon.pid)
    sampler = RssSampler(proc)
    sampler.start()
    exit_code = 1
    try:
        # ---- 1. backlog ----------------------------------------------------------------------
        first_status = None

        def backlog_done() -> bool:
            nonlocal first_status
            visible = visible_status_files(status)
            if visible and first_status is None:
                first_status = time.monotonic()
            return visible >= args.backlog

        wait_until(backlog_done, 600, f"{args.backlog} status files", daemon, interval=0.05)
        backlog_end = time.monotonic()
        backlog_cpu = sum(proc.cpu_times()[:2])
        backlog_load = os.getloadavg()[0]
        assert first_status is not None
        backlog_rss = sampler.peak
        backlog_states = current_statuses(status, "backlog")
        if backlog_states != {"OPPRETTET": args.backlog}:
            raise SystemExit(f"backlog status files are not all OPPRETTET: {backlog_states}")

        # ---- 2. live -------------------------------------------------------------------------
        arrivals = StatusArrivals(status, "live")
        observer = InotifyOutboxWatcher(arrivals)  # type: ignore[arg-type]
        observer.start()
        time.sleep(0.5)
        renamed: dict[str, float] = {}
        pace = 1.0 / args.live_rate if args.live_rate > 0 else 0.0
        live_start = time.monotonic()
        for index, folder in enumerate(live_drops):
            if pace:
                delay = live_start + index * pace - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            os.rename(folder, outbox / folder.name)
            renamed[folder.name] = time.monotonic()
        wait_until(lambda: arrivals.count() >= args.live, 300, f"{args.live} live status files", daemon)
        live_end = max(arrivals.arrived.values())
        observer.stop()
        if arrivals.lost:
            raise SystemExit("the status folder's event queue overflowed; latencies would be wrong")
        live_states = current_statuses(status, "live")
        if live_states != {"OPPRETTET": args.live}:
            raise SystemExit(f"live status files are not all OPPRETTET: {live_states}")
        latencies = [(arrivals.arrived[name] - renamed[name]) * 1000 for name in renamed]

        # ---- 3. idle -------------------------------------------------------------------------
        time.sleep(1.0)  # let the last pass and status flush finish
        before = proc.cpu_times()
        idle_start = time.monotonic()
        time.sleep(args.idle_seconds)
        after = proc.cpu_times()
        idle_elapsed = time.monotonic() - idle_start
        idle_cpu = (after.user + after.system) - (before.user + before.system)
        hwm_kib = vm_hwm_kib(daemon.pid)
        sampler.stop()
        counts = journal_counts(journal)
        daemon.send_signal(15)
        exit_code = daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()

    backlog_total = backlog_end - spawned
    backlog_processing = backlog_end - first_status
    live_elapsed = live_end - live_start
    idle_pct = idle_cpu / idle_elapsed * 100
    rss_mib = max(sampler.peak, hwm_kib * 1024) / 2**20
    rate_text = f"steady {args.live_rate:g}/s" if args.live_rate > 0 else "as fast as possible"
    p50, p95 = percentile(latencies, 0.50), percentile(latencies, 0.95)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    backlog_rate = args.backlog / backlog_total
    print()
    print(
        f"backlog accepted/s (spawn to last OPPRETTET):       {backlog_rate:8.0f} /s  "
        f"({args.backlog} drops in {backlog_total:.2f} s)  target >= 500: {verdict(backlog_rate >= 500)}"
    )
    print(
        f"backlog accepted/s (first to last status file):     {args.backlog / backlog_processing:8.0f} /s  "
        f"(start-up to first status file {first_status - spawned:.2f} s)"
    )
    print(
        f"live accepted/s ({rate_text}):{' ' * max(1, 33 - len(rate_text))}{args.live / live_elapsed:8.0f} /s  "
        f"({args.live} drops in {live_elapsed:.2f} s)"
    )
    print(f"live latency rename -> status file p50:             {p50:8.1f} ms  target < 100: {verdict(p50 < 100)}")
    print(f"live latency rename -> status file p95:             {p95:8.1f} ms")
    print(
        f"live latency rename -> status file max:             {max(latencies):8.1f} ms  "
        f"(mean {statistics.fmean(latencies):.1f} ms)"
    )
    print(f"peak RSS during backlog (psutil, 20 ms samples):    {backlog_rss / 2**20:8.1f} MiB")
    print(f"peak RSS overall (psutil samples):                  {sampler.peak / 2**20:8.1f} MiB")
    print(
        f"peak RSS VmHWM (/proc, at the end):                 {hwm_kib / 1024:8.1f} MiB  "
        f"target < 150: {verdict(rss_mib < 150)}"
    )
    print(
        f"idle CPU over {idle_elapsed:.0f} s:                             {idle_pct:8.2f} % of one core  "
        f"({idle_cpu:.2f} CPU s)  target < 1: {verdict(idle_pct < 1)}"
    )
    print(
        f"daemon CPU for the backlog (incl. start-up):        {backlog_cpu:8.2f} s  "
        f"({args.backlog / backlog_cpu:.0f} drops per CPU-second)"
    )
    print(
        f"machine load average (1 min) at start / after backlog / end: {start_load:.2f} / {backlog_load:.2f} / "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other processes compete with the daemon)"
    )
    print(f"journal phases: {counts}; daemon exit status on SIGTERM: {exit_code}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

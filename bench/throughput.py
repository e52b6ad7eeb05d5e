"""DPO throughput: a sandbox network and two gateway processes; N small messages (a 50 KB PDF each)
dropped into A's outbox at once. Prints messages per second until all are SENT at A and until all
are in B's inbox, p50/p95 drop-to-SENT latency, and the gateways' peak RSS.

    python bench/throughput.py [--messages 1000] [--pdf-kib 50] [--parallel 8]

It also prints each process's CPU time per message (user and system), to see where the time goes.
Leave half a minute between runs: on ext4 without a journal (as on this VM) a file created where
many were deleted in the last seconds costs far more kernel time, so a run started right after
another one's cleanup measures that cleanup too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config
from tests.foundation.drops import sidecar_xml

NS = {"s": "urn:efm-gateway:status:1"}


def fake_pdf(size: int, seed: int) -> bytes:
    body = os.urandom(size - 64) if seed else b"\0" * (size - 64)
    return b"%PDF-1.4\n%" + body + b"\n%%EOF\n"


def sent_time(path: Path) -> float | None:
    try:
        root = etree.parse(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError):
        return None
    for event in root.findall("s:history/s:status", NS):
        if event.findtext("s:value", namespaces=NS) == "SENDT":
            return datetime.fromisoformat(event.findtext("s:time", namespaces=NS)).timestamp()
    return None


class RssSampler(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for name, pid in self.pids.items():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak[name] = max(self.peak[name], psutil.Process(pid).memory_info().rss)
            time.sleep(0.1)


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--pdf-kib", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=8, help="network.max_parallel_sends of both gateways")
    args = parser.parse_args()
    count = args.messages

    with tempfile.TemporaryDirectory(prefix="efm-bench-") as scratch:
        root = Path(scratch)
        sandbox = SandboxProcess(root / "sandbox")
        fast = {
            "network": {"send_interval_seconds": 0.5, "max_parallel_sends": args.parallel},
            "channels": {"dpo": {"inbound_poll_seconds": 0.2}},
        }
        a = Gateway(root / "a", gateway_config(root / "a", sandbox, A, **fast)).start()
        b = Gateway(root / "b", gateway_config(root / "b", sandbox, B, **fast)).start()
        try:
            time.sleep(1)
            staging = root / "staging"
            staging.mkdir()
            names = []
            for index in range(count):
                folder = staging / f"m{index:05d}"
                folder.mkdir()
                (folder / "brev.pdf").write_bytes(fake_pdf(args.pdf_kib * 1024, index + 1))
                message_id = str(uuid.uuid4())
                (folder / "message.xml").write_bytes(
                    sidecar_xml(receiver=B, extra=f"<messageId>{message_id}</messageId>")
                )
                names.append((folder, message_id))
            processes = {"A": a.process.process.pid, "B": b.process.process.pid, "sandbox": sandbox.process.pid}
            cpu_before = {name: psutil.Process(pid).cpu_times() for name, pid in processes.items()}
            sampler = RssSampler({"A": processes["A"], "B": processes["B"]})
            sampler.start()

            dropped_at: dict[str, float] = {}
            started = time.time()
            for folder, message_id in names:
                os.rename(folder, a.outbox / folder.name)
                dropped_at[message_id] = time.time()
            dropping_done = time.time()

            inbox_seen: dict[str, float] = {}
            sent_at: dict[str, float] = {}
            seen_stamp: dict[str, int] = {}
            status_files = {message_id: a.status / f"{folder.name}.{message_id}.xml" for folder, message_id in names}
            deadline = time.time() + 900
            while (len(sent_at) < count or len(inbox_seen) < count) and time.time() < deadline:
                for entry in os.scandir(b.inbox):
                    if entry.name not in inbox_seen:
                        inbox_seen[entry.name] = time.time()
                if len(sent_at) < count:
                    for message_id, path in status_files.items():
                        if message_id in sent_at:
                            continue
                        try:
                            stamp = path.stat().st_mtime_ns
                        except FileNotFoundError:
                            continue
                        if seen_stamp.get(message_id) == stamp:
                            continue  # parse a status file only when it changed
                        seen_stamp[message_id] = stamp
                        moment = sent_time(path)
                        if moment is not None:
                            sent_at[message_id] = moment
                time.sleep(0.1)
            sampler.stop_event.set()
            sampler.join()
            cpu = {name: psutil.Process(pid).cpu_times() for name, pid in processes.items()}
            if len(sent_at) < count or len(inbox_seen) < count:
                print(f"TIMED OUT: {len(sent_at)} sent, {len(inbox_seen)} in B's inbox of {count}")
                return 1
            all_sent = max(sent_at.values())
            all_in_inbox = max(inbox_seen.values())
            latencies = sorted((sent_at[m] - dropped_at[m]) * 1000 for m in sent_at)
            peaks = {name: max(sampler.peak[name], vm_hwm(pid)) for name, pid in sampler.pids.items()}
            print(f"messages: {count} x {args.pdf_kib} KiB PDF, dropped in {dropping_done - started:.2f} s")
            print(f"to SENT at A:      {count / (all_sent - started):8.1f} messages/s ({all_sent - started:.1f} s)")
            inbox_seconds = all_in_inbox - started
            print(f"into B's inbox:    {count / inbox_seconds:8.1f} messages/s ({inbox_seconds:.1f} s)")
            print(f"drop-to-SENT p50:  {statistics.median(latencies):8.0f} ms")
            print(f"drop-to-SENT p95:  {latencies[int(len(latencies) * 0.95) - 1]:8.0f} ms")
            print(f"peak RSS A:        {peaks['A'] / 2**20:8.1f} MiB")
            print(f"peak RSS B:        {peaks['B'] / 2**20:8.1f} MiB")
            for name in processes:
                user = (cpu[name].user - cpu_before[name].user) / count * 1000
                system = (cpu[name].system - cpu_before[name].system) / count * 1000
                print(f"CPU {name + ':':<14} {user:6.1f} ms user + {system:5.1f} ms system per message")
        finally:
            a.process.stop()
            b.process.stop()
            sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

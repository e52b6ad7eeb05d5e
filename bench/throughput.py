"""DPO throughput: a sandbox network and two gateway processes; N small messages (a 50 KB PDF each)
dropped into A's outbox at once. Prints messages per second until all are SENT at A and until all
are in B's inbox, p50/p95 drop-to-SENT latency, and the gateways' peak RSS.

    python bench/throughput.py [--messages 1000] [--pdf-kib 50] [--parallel N] [--in-flight N] [--latency-ms 0]

Without --parallel and --in-flight, both gateways run with the defaults (network.max_parallel_sends,
channels.dpo.max_in_flight), as an installation does.

`--latency-ms` makes the sandbox wait that long before every request it serves (its latency fault,
gateway/sandbox/faults.py), as the real broker is some tens of milliseconds away; bench/wan.py runs
both and compares.

It also prints each process's CPU time per message (user and system), to see where the time goes, and
beside it the floor: the same message signed, zipped and encrypted and back with `cryptography` alone
(bench/crypto_floor.py), measured in the same run. And the HTTP it takes: the requests per message the
sandbox served, and what one small request costs the HTTP client (httpx) in CPU on this machine.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from bench.crypto_floor import floor_ms
from bench.runs import StatusWatch, stage_messages
from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config


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


@dataclass
class Figures:
    count: int
    pdf_kib: int
    latency_ms: float
    dropping_seconds: float
    sent_seconds: float
    inbox_seconds: float
    latencies_ms: list[float]
    peak_rss: dict[str, int]
    cpu_ms_per_message: dict[str, tuple[float, float]]  # process -> (user, system)
    requests_per_message: float = 0.0  # served by the sandbox for A and B together (polls included)
    client_ms_per_request: float = 0.0  # the HTTP client's own CPU for one small request, measured here

    @property
    def sent_rate(self) -> float:
        return self.count / self.sent_seconds

    @property
    def inbox_rate(self) -> float:
        return self.count / self.inbox_seconds

    def print(self) -> None:
        added = f", {self.latency_ms:g} ms added per sandbox request" if self.latency_ms else ""
        print(f"messages: {self.count} x {self.pdf_kib} KiB PDF, dropped in {self.dropping_seconds:.2f} s{added}")
        print(f"to SENT at A:      {self.sent_rate:8.1f} messages/s ({self.sent_seconds:.1f} s)")
        print(f"into B's inbox:    {self.inbox_rate:8.1f} messages/s ({self.inbox_seconds:.1f} s)")
        print(f"drop-to-SENT p50:  {statistics.median(self.latencies_ms):8.0f} ms")
        print(f"drop-to-SENT p95:  {self.latencies_ms[int(len(self.latencies_ms) * 0.95) - 1]:8.0f} ms")
        print(f"peak RSS A:        {self.peak_rss['A'] / 2**20:8.1f} MiB")
        print(f"peak RSS B:        {self.peak_rss['B'] / 2**20:8.1f} MiB")
        for name, (user, system) in self.cpu_ms_per_message.items():
            print(f"CPU {name + ':':<14} {user:6.1f} ms user + {system:5.1f} ms system per message")
        floor = floor_ms(self.pdf_kib * 1024)
        gateways = sum(sum(self.cpu_ms_per_message.get(name, (0.0, 0.0))) for name in ("A", "B"))
        print(f"floor (cryptography alone, same message): {floor:5.2f} ms; A and B together: "
              f"{gateways:.1f} ms = {gateways / floor:.1f} times the floor (target: at most 4)")
        http = self.requests_per_message * self.client_ms_per_request
        print(f"HTTP: {self.requests_per_message:.1f} requests per message (A and B); the client's own CPU "
              f"{self.client_ms_per_request:.2f} ms per request, so {http:.1f} ms of A's and B's CPU per message "
              f"= {http / floor:.1f} times the floor is HTTP alone")


def http_client_ms(base_url: str, requests: int = 300) -> float:
    """httpx's own CPU for one small request on a kept-alive connection (a 404 of the sandbox), in ms."""
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            client.get(f"{base_url}/_nothing")
        started = time.process_time()
        for _ in range(requests):
            client.get(f"{base_url}/_nothing")
        return (time.process_time() - started) / requests * 1000


def measure(
    count: int, pdf_kib: int = 50, parallel: int | None = None, latency_ms: float = 0.0, in_flight: int | None = None
) -> Figures | None:
    """One run on a fresh sandbox and two fresh gateways; None when it timed out (said on stdout)."""
    with tempfile.TemporaryDirectory(prefix="efm-bench-") as scratch:
        root = Path(scratch)
        sandbox = SandboxProcess(root / "sandbox")
        # Every request to the sandbox (token, registry, broker) waits `latency_ms`, as over a WAN; the
        # rule fires (and is counted) for each one, at 0 ms too: the requests per message.
        counting = {"rules": [{"fault": "latency", "delay_ms": latency_ms}]}
        network: dict = {"send_interval_seconds": 0.5}
        dpo: dict = {"inbound_poll_seconds": 0.2}
        if parallel is not None:
            network["max_parallel_sends"] = parallel
        if in_flight is not None:
            dpo["max_in_flight"] = in_flight
        fast = {"network": network, "channels": {"dpo": dpo}}
        a = Gateway(root / "a", gateway_config(root / "a", sandbox, A, **fast)).start()
        b = Gateway(root / "b", gateway_config(root / "b", sandbox, B, **fast)).start()
        try:
            time.sleep(1)
            staging = root / "staging"
            names = stage_messages(staging, count, pdf_kib, B)
            httpx.post(f"{sandbox.url}/_faults", json=counting, timeout=10).raise_for_status()
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
            watch = StatusWatch({message_id: a.status / f"{folder.name}.{message_id}.xml"
                               for folder, message_id in names})
            sent_at = watch.reached_at
            deadline = time.time() + 900
            while (not watch.done or len(inbox_seen) < count) and time.time() < deadline:
                for entry in os.scandir(b.inbox):
                    if entry.name not in inbox_seen:
                        inbox_seen[entry.name] = time.time()
                watch.poll()
                time.sleep(0.1)
            sampler.stop_event.set()
            sampler.join()
            cpu = {name: psutil.Process(pid).cpu_times() for name, pid in processes.items()}
            served = httpx.get(f"{sandbox.url}/_faults", timeout=10).json()["injected"]["latency"]
            httpx.delete(f"{sandbox.url}/_faults", timeout=10).raise_for_status()  # measured without latency
            client_ms = http_client_ms(sandbox.url)
            if len(sent_at) < count or len(inbox_seen) < count:
                print(f"TIMED OUT: {len(sent_at)} sent, {len(inbox_seen)} in B's inbox of {count}")
                return None
            return Figures(
                count=count,
                pdf_kib=pdf_kib,
                latency_ms=latency_ms,
                dropping_seconds=dropping_done - started,
                sent_seconds=max(sent_at.values()) - started,
                inbox_seconds=max(inbox_seen.values()) - started,
                latencies_ms=sorted((sent_at[m] - dropped_at[m]) * 1000 for m in sent_at),
                peak_rss={name: max(sampler.peak[name], vm_hwm(pid)) for name, pid in sampler.pids.items()},
                cpu_ms_per_message={
                    name: ((cpu[name].user - cpu_before[name].user) / count * 1000,
                           (cpu[name].system - cpu_before[name].system) / count * 1000)
                    for name in processes
                },
                requests_per_message=served / count,
                client_ms_per_request=client_ms,
            )
        finally:
            a.process.stop()
            b.process.stop()
            sandbox.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--pdf-kib", type=int, default=50)
    parser.add_argument("--parallel", type=int, help="network.max_parallel_sends of both gateways (default: theirs)")
    parser.add_argument("--in-flight", type=int, help="channels.dpo.max_in_flight of both gateways (default: theirs)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="added to every request the sandbox serves (its latency fault), as over a WAN")
    args = parser.parse_args()
    figures = measure(args.messages, args.pdf_kib, args.parallel, args.latency_ms, args.in_flight)
    if figures is None:
        return 1
    figures.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DPO throughput over a slow network: bench/throughput.py's run at 0 ms and again with a delay added to
every request the sandbox serves (100 ms unless set), then both rates and their ratio.

    python bench/wan.py [--messages 300] [--latency-ms 100] [--parallel N] [--in-flight N] [--pause 30]

The real broker, token endpoint and service registry are tens of milliseconds away, while the sandbox
answers in about one: a gateway that keeps enough requests in flight loses little when each one waits,
one that sends them one after another loses nearly everything. The delay is the sandbox's latency fault
(gateway/sandbox/faults.py), set through its /_faults control endpoint, so the gateways do not know.
The runs are `--pause` seconds apart (see bench/throughput.py on why).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import Figures, measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--pdf-kib", type=int, default=50)
    parser.add_argument("--parallel", type=int, help="network.max_parallel_sends of both gateways (default: theirs)")
    parser.add_argument("--in-flight", type=int, help="channels.dpo.max_in_flight of both gateways (default: theirs)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="added per sandbox request in the second run")
    parser.add_argument("--pause", type=float, default=30.0, help="seconds between the two runs")
    args = parser.parse_args()

    runs: list[Figures] = []
    for latency_ms in (0.0, args.latency_ms):
        if runs:
            time.sleep(args.pause)
        print(f"--- {latency_ms:g} ms added per request", flush=True)
        figures = measure(args.messages, args.pdf_kib, args.parallel, latency_ms, args.in_flight)
        if figures is None:
            return 1
        figures.print()
        runs.append(figures)
    near, far = runs
    print("---")
    print(f"{'':22} {'0 ms':>10} {f'{args.latency_ms:g} ms':>10} {'ratio':>7}")
    for label, attribute in (("to SENT at A", "sent_rate"), ("into B's inbox", "inbox_rate")):
        fast, slow = getattr(near, attribute), getattr(far, attribute)
        print(f"{label + ' (msg/s)':22} {fast:10.1f} {slow:10.1f} {slow / fast:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Status polling with many open DPV messages: what one round costs.

10,000 open DPV messages sit in a real journal; the gateway's StatusPoller drives the real
DpvChannel and CorrespondenceClient. Altinn is stood in for by an in-process HTTP transport that
answers each correspondence's overview (Published, one in ten Read), so the figures are the
gateway's own: requests per round, time per round, rounds to reach every message, and RSS.

    python bench/status_poll.py [--messages 10000] [--batch 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.channels.dpv.channel import DpvChannel, NotificationDefaults
from gateway.channels.dpv.client import CorrespondenceClient
from gateway.clock import SystemClock
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from gateway.outbound.status_poller import StatusPoller
from gateway.receipts.writer import StatusWriter


def altinn(requests: list[str]) -> httpx.MockTransport:
    now = datetime.now(UTC).isoformat()

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        correspondence_id = request.url.path.rsplit("/", 1)[-1]
        read = int(correspondence_id.rsplit("-", 1)[-1]) % 10 == 0
        body = {
            "correspondenceId": correspondence_id, "status": "Read" if read else "Published",
            "statusChanged": now, "published": now, "read": now if read else None,
        }
        return httpx.Response(200, content=json.dumps(body), headers={"Content-Type": "application/json"})

    return httpx.MockTransport(answer)


def fill(journal: Journal, count: int) -> None:
    for index in range(count):
        message_id = f"00000000-0000-4000-8000-{index:012d}"
        with journal.transaction():
            record = journal.create(direction="out", message_id=message_id, status_name=f"m.{message_id}.xml",
                                    phase=Phase.ACCEPTED, drop_name=f"m{index}")
            journal.move(record.row, Phase.SENDING, channel="DPV",
                         detail={"reference": f"c0ffee00-0000-4000-8000-{index:012d}", "expects_receipt": True})
            journal.move(record.row, Phase.SENT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="efm-bench-poll-") as scratch:
        root = Path(scratch)
        clock = SystemClock()
        journal = Journal(root / "journal.sqlite3", clock)
        statuses = StatusWriter(journal, root, clock)
        started = time.perf_counter()
        fill(journal, args.messages)
        print(f"journal: {args.messages} open DPV messages in {time.perf_counter() - started:.1f} s")
        requests: list[str] = []
        http = httpx.Client(transport=altinn(requests))
        channel = DpvChannel(CorrespondenceClient("http://altinn.test/correspondence/api/v1", lambda: "token", http),
                             NotificationDefaults(), clock)
        poller = StatusPoller(journal, statuses, clock, channel, batch=args.batch)
        rounds: list[tuple[int, float]] = []
        while journal.counts().get("sent", 0) and len(rounds) < 10 * args.messages:
            before = len(requests)
            started = time.perf_counter()
            poller.poll()
            rounds.append((len(requests) - before, time.perf_counter() - started))
        statuses.flush()
        counts = journal.counts()
        per_round = max(count for count, _ in rounds)
        times = sorted(seconds for _, seconds in rounds)
        print(f"one round: at most {per_round} requests (batch {args.batch}), "
              f"median {times[len(times) // 2] * 1000:.0f} ms, slowest {times[-1] * 1000:.0f} ms")
        print(f"every message delivered (none left waiting for LEVERT) after {len(rounds)} rounds "
              f"({len(requests)} requests, a quarter of each round kept for LEST)")
        print(f"journal after the walk: {dict(sorted(counts.items()))}")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        http.close()
        statuses.close()
        journal.close()


if __name__ == "__main__":
    main()

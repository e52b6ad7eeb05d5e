"""The node registry and claims with leases and fencing tokens, on both engines: two nodes are two journals on
one database (or one SQLite file) with a clock the test moves."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from gateway.clock import FakeClock
from gateway.contract.statuses import Status
from gateway.journal.claims import Claims, FencedOut, HeldClaims, send_work
from gateway.journal.nodes import NodeNameTaken, NodeRegistry
from gateway.journal.phases import Phase


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def two_journals(journal_place, clock):
    first = journal_place.open(clock)
    second = journal_place.open(clock)
    yield first, second
    first.close()
    second.close()


def _accepted(journal, count: int) -> list[int]:
    return [journal.create(direction="out", message_id=str(uuid.uuid4()), status_name=f"{uuid.uuid4()}.xml",
                           phase=Phase.ACCEPTED, drop_name="d").row for _ in range(count)]


# ---- the node registry ----------------------------------------------------------------------------------------


def test_a_second_node_with_a_live_name_is_refused_in_one_clear_line(two_journals, clock):
    first, second = two_journals
    NodeRegistry(first, "node-a", clock).join()
    with pytest.raises(NodeNameTaken) as caught:
        NodeRegistry(second, "node-a", clock).join()
    message = str(caught.value)
    assert "another efm-gateway node named 'node-a' is running" in message
    assert f"pid {os.getpid()}" in message and "node.name" in message
    assert len(message.splitlines()) == 1
    NodeRegistry(second, "node-b", clock).join()  # another name is welcome
    assert [node.name for node in NodeRegistry(second, "node-b", clock).nodes()] == ["node-a", "node-b"]


def test_a_name_is_free_again_after_a_clean_stop_or_a_lapsed_heartbeat(two_journals, clock):
    first, second = two_journals
    holder = NodeRegistry(first, "node-a", clock, lease_seconds=30)
    holder.join()
    holder.leave()
    NodeRegistry(second, "node-a", clock, lease_seconds=30).join()  # at once after a clean stop

    stalled = NodeRegistry(first, "node-c", clock, lease_seconds=30)
    stalled.join()
    clock.advance(20)
    stalled.beat()
    clock.advance(20)  # 20 s since its last heartbeat: still live
    with pytest.raises(NodeNameTaken):
        NodeRegistry(second, "node-c", clock, lease_seconds=30).join()
    clock.advance(11)  # 31 s: gone
    NodeRegistry(second, "node-c", clock, lease_seconds=30).join()
    with pytest.raises(NodeNameTaken, match="lost its name"):
        stalled.beat()  # the stalled node wakes up and learns it


def test_a_node_killed_on_this_host_gives_its_name_up_at_once(journal_place, clock):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    journal = journal_place.open(clock)
    try:
        registry = NodeRegistry(journal, "node-a", clock)
        registry.join()
        journal.execute("UPDATE nodes SET pid = ? WHERE name = 'node-a'", (holder.pid,))
        with pytest.raises(NodeNameTaken):  # its process still runs
            NodeRegistry(journal, "node-a", clock).join()
        holder.kill()
        holder.wait(10)
        NodeRegistry(journal, "node-a", clock).join()  # gone: no wait for the lease
    finally:
        holder.kill()
        holder.wait(10)
        journal.close()


# ---- claims ------------------------------------------------------------------------------------------------------


def test_a_stale_fencing_tokens_write_is_refused_with_one_log_line(two_journals, clock, caplog):
    first, second = two_journals
    [row] = _accepted(first, 1)
    sleeper = Claims(first, "node-a", clock, lease_seconds=60)
    taker = Claims(second, "node-b", clock, lease_seconds=60)
    paused = sleeper.claim(send_work(row))
    assert paused is not None and paused.token == 1
    assert taker.claim(send_work(row)) is None, "held under a live lease"

    clock.advance(61)  # node-a sleeps past its lease (a stall, a frozen VM)
    taken = taker.claim(send_work(row))
    assert taken is not None and taken.token == 2
    with taker.fenced(taken):
        second.move(row, Phase.SENDING)
        second.move(row, Phase.SENT, channel="DPO")

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.journal.claims"), pytest.raises(FencedOut), \
            sleeper.fenced(paused):
        first.move(row, Phase.FAILED, errors=["the late write of a node that slept"])  # never reached
    assert [record.getMessage() for record in caplog.records] == [
        f"node node-a: its claim on send:{row} (token 1) was taken over by node-b (token 2); its late write is "
        "refused"
    ]
    assert first.get(row).phase == Phase.SENT and first.get(row).errors == ()
    with pytest.raises(FencedOut):
        sleeper.renew(paused)
    assert taker.renew(taken).token == 2


def test_a_fenced_step_is_written_whole_or_not_at_all(two_journals, clock):
    first, _ = two_journals
    [row] = _accepted(first, 1)
    claims = Claims(first, "node-a", clock)
    claim = claims.claim(send_work(row))
    assert claim is not None
    with pytest.raises(RuntimeError), claims.fenced(claim):
        first.add_event(row, Status.OPPRETTET)
        raise RuntimeError("the step fails")
    assert not first.has_event(row, Status.OPPRETTET)


def test_a_released_claim_is_taken_with_a_greater_token(two_journals, clock):
    first, second = two_journals
    [row] = _accepted(first, 1)
    held = Claims(first, "node-a", clock).claim(send_work(row))
    assert held is not None
    Claims(first, "node-a", clock).release(held)
    again = Claims(second, "node-b", clock).claim(send_work(row))
    assert again is not None and again.token == held.token + 1


@pytest.mark.parametrize("fresh", [False, True], ids=["known-work", "first-claim-first"])
def test_a_claim_tried_as_fresh_or_not_holds_the_same_rules(two_journals, clock, fresh):
    first, second = two_journals
    a, b = Claims(first, "node-a", clock), Claims(second, "node-b", clock)
    new = a.claim("send:1", fresh)
    assert new is not None and new.token == 1
    assert b.claim("send:1", fresh) is None, "held by node-a"
    a.release(new)
    again = b.claim("send:1", fresh)  # a guess that it is new, wrong: taken the other way, the token grown
    assert again is not None and again.token == 2
    clock.advance(a.lease_seconds + 1)
    taken_over = a.claim("send:1", fresh)
    assert taken_over is not None and taken_over.token == 3, "a lapsed lease is taken over"
    assert first.query("SELECT node, token FROM claims WHERE work = 'send:1'") == [("node-a", 3)]


def test_a_claim_done_for_good_is_not_released_again(two_journals, clock):
    first, second = two_journals
    held = HeldClaims(Claims(first, "node-a", clock))
    claim = held.take("take:DPO:t-1", fresh=True)
    assert claim is not None
    with held.claims.fenced(claim):
        held.forget(claim)
    held.let_go(claim)  # the usual let go after the work: nothing of it is left to release
    assert first.query("SELECT count(*) FROM claims") == [(0,)]
    later = Claims(second, "node-b", clock).claim("take:DPO:t-1", fresh=True)
    assert later is not None and later.token == 1


def test_two_nodes_claiming_due_sends_at_once_each_get_their_own(two_journals, clock):
    first, second = two_journals
    rows = _accepted(first, 40)
    now = clock.now().timestamp()
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim_all(journal, node: str) -> None:
        claims = Claims(journal, node, clock)
        mine: list[int] = []
        try:
            start.wait(10)
            while batch := claims.claim_due_sends((Phase.ACCEPTED,), now, limit=5):
                mine.extend(int(claim.work.removeprefix("send:")) for claim in batch)
        except BaseException as exc:
            errors.append(exc)
        got[node] = mine

    threads = [threading.Thread(target=claim_all, args=(first, "node-a")),
               threading.Thread(target=claim_all, args=(second, "node-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(got["node-a"] + got["node-b"]) == rows, "every due send claimed, and by one node only"
    assert Claims(first, "node-a", clock).claim_due_sends((Phase.ACCEPTED,), now, limit=5) == []


@pytest.mark.postgres
def test_a_node_paused_inside_a_transaction_holds_no_lock_for_long(postgres_database, clock, monkeypatch):
    """A node stopped while its step holds the claim's row lock: the server ends its session after the idle
    limit, the other node takes the work over, and the paused node's step, when it wakes, writes nothing."""
    from gateway.journal import postgres_engine
    from gateway.journal.postgres_engine import PostgresEngine
    from gateway.journal.store import Journal

    monkeypatch.setattr(postgres_engine, "IDLE_IN_TRANSACTION_SECONDS", 1.0)
    paused_journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
    taker_journal = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
    try:
        [row] = _accepted(paused_journal, 1)
        sleeper = Claims(paused_journal, "node-a", clock, lease_seconds=5)
        claim = sleeper.claim(send_work(row))
        assert claim is not None
        inside, wake = threading.Event(), threading.Event()
        outcome: list[BaseException | None] = []

        def paused_step() -> None:
            try:
                with sleeper.fenced(claim):
                    inside.set()
                    wake.wait(30)  # the pause, with the claim's row locked
                    paused_journal.add_event(row, Status.ANNET, description="written after the pause")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=paused_step)
        thread.start()
        assert inside.wait(10)
        clock.advance(6)  # past node-a's lease
        taker = Claims(taker_journal, "node-b", clock)
        # While node-a's step holds the row, node-b passes it by (SKIP LOCKED: it never waits on a paused node);
        # once the server has ended node-a's idle session, node-b takes the work over.
        deadline = time.monotonic() + 20
        while (taken := taker.claim(send_work(row))) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert taken is not None and taken.token == claim.token + 1
        wake.set()
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], sqlite3.OperationalError)
        assert not taker_journal.has_event(row, Status.ANNET)
    finally:
        paused_journal.close()
        taker_journal.close()


def test_threads_of_one_node_share_its_lease(journal_place, clock):
    journal = journal_place.open(clock)
    try:
        held = HeldClaims(Claims(journal, "node-a", clock))
        with held.lease("job:status-files") as first, held.lease("job:status-files") as second:
            assert first and second
            # One claim: the second thread did not take the lease from the first (whose writes it would fence out).
            assert journal.query("SELECT node, token FROM claims WHERE work = 'job:status-files'") == [("node-a", 1)]
        assert journal.query("SELECT node FROM claims WHERE work = 'job:status-files'") == [(None,)], "let go"
    finally:
        journal.close()


def test_a_lease_whose_row_a_step_of_its_own_node_holds_stays_held_through_a_renewal(postgres_database, clock):
    """The renewal passes a locked row by (it never waits); a row locked by this node's own step is still this
    node's: the claim stays held (renewed next round), not dropped as though taken over."""
    from gateway.journal.postgres_engine import PostgresEngine
    from gateway.journal.store import Journal

    stepping = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
    renewing = Journal(PostgresEngine(postgres_database.url, postgres_database.password), clock)
    try:
        [row] = _accepted(stepping, 1)
        held = HeldClaims(Claims(renewing, "node-a", clock, lease_seconds=30))
        claim = held.take(send_work(row))
        assert claim is not None
        inside, done = threading.Event(), threading.Event()

        def step() -> None:
            with Claims(stepping, "node-a", clock, lease_seconds=30).fenced(claim):
                inside.set()
                done.wait(20)

        thread = threading.Thread(target=step)
        thread.start()
        assert inside.wait(10)
        held.renew()
        assert held.current(claim) == claim, "kept while its own step holds the row"
        done.set()
        thread.join(20)
        clock.advance(10)
        held.renew()
        renewed = held.current(claim)
        assert renewed.token == claim.token and renewed.expires_at > claim.expires_at
    finally:
        stepping.close()
        renewing.close()


def test_claims_let_go_together_are_each_free_again_and_one_taken_over_stays_its_takers(two_journals, clock):
    first, second = two_journals
    held = HeldClaims(Claims(first, "node-a", clock))
    other = Claims(second, "node-b", clock)
    claims = [held.take(f"poll:{row}") for row in range(1, 5)]
    assert all(claims)
    assert other.claim("poll:1") is None, "held by node-a"
    clock.advance(held.claims.lease_seconds + 1)  # node-a stood still past its lease: node-b takes poll:4 over
    taken = other.claim("poll:4")
    assert taken is not None
    held.let_go_all(claims)  # a status round's claims, let go in one step
    assert sorted(first.query("SELECT work, node, token FROM claims")) == [
        ("poll:1", None, 1), ("poll:2", None, 1), ("poll:3", None, 1), ("poll:4", "node-b", 2)]
    assert not any(held.still_held(f"poll:{row}") for row in range(1, 5)), "nothing of them left to renew"
    assert other.claim("poll:1") is not None, "free again at once"

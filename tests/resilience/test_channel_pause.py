"""A channel's pause for the peer's Retry-After holds for every call (on a fake clock): a call that left
before the 429 and succeeds does not end it, no probe goes before it is over, listings and polls wait
too, and the broker's virus-scan look is not asked again inside a send."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx
import pytest

from gateway.channels.dpf.client import check_response as svarut_check
from gateway.channels.dpo.client import BrokerClient
from gateway.clock import FakeClock
from gateway.delivery.circuit import ChannelPaused, Circuits
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.tokens import check_response as tokens_check
from gateway.tokens import retry_after_seconds


def throttled(seconds: float) -> RetryableChannelError:
    return RetryableChannelError(f"HTTP 429 (the server asks us to wait {seconds:.0f} s)", retry_after=seconds,
                                 throttled=True)


def test_a_success_that_left_before_the_429_does_not_end_its_pause_early():
    clock = FakeClock()
    circuits = Circuits(clock)
    closed: list[str] = []
    circuits.on_close(closed.append)
    circuit = circuits["DPO"]
    circuit.failed(throttled(30))
    clock.advance(0.1)
    circuit.succeeded()  # a send that was on the wire when the 429 came back
    assert circuit.is_open and closed == [], "the waiting messages are not made due before 30 s"
    assert circuit.seconds_left() == pytest.approx(29.9)
    with pytest.raises(ChannelPaused, match="DPO is paused for 30 s more"):
        circuit.guard()
    clock.advance(29.8)
    assert not circuit.take_probe() and closed == [], "no probe, no release before the server's time is over"
    clock.advance(0.2)
    circuit.guard()
    assert not circuit.is_open and closed == ["DPO"], "the channel answered: its messages go once the wait is over"


def test_without_an_answer_the_channel_is_probed_by_one_message_once_the_wait_is_over():
    clock = FakeClock()
    circuits = Circuits(clock)
    closed: list[str] = []
    circuits.on_close(closed.append)
    circuit = circuits["DPO"]
    circuit.heed(throttled(30))  # a listing was answered 429
    clock.advance(29.9)
    assert not circuit.take_probe()
    clock.advance(0.1)
    assert circuit.seconds_left() == 0, "listings and polls may go again"
    assert circuit.take_probe() and not circuit.take_probe(), "one probe"
    circuit.succeeded()
    assert closed == ["DPO"]


def test_a_429_to_a_listing_during_a_probe_is_not_taken_for_the_probe_failing():
    clock = FakeClock()
    circuit = Circuits(clock)["DPO"]
    circuit.failed(throttled(2))
    clock.advance(2)
    assert circuit.take_probe()
    circuit.heed(throttled(1))  # the receiver's listing, while the probe is on the wire
    clock.advance(0.5)
    circuit.succeeded()  # the probe got through, within the listing's wait
    assert circuit.is_open
    clock.advance(0.5)
    assert not circuit.is_open, "closed as soon as the 1 s is over, not after a doubled pause"


def test_a_longer_retry_after_while_paused_extends_the_pause():
    clock = FakeClock()
    circuit = Circuits(clock)["DPV"]
    circuit.failed(throttled(5))
    clock.advance(1)
    circuit.failed(throttled(30))  # a second request, answered later, asks for longer
    clock.advance(10)
    assert circuit.seconds_left() == pytest.approx(20.0) and not circuit.take_probe()


def test_other_callers_pause_the_channel_only_when_the_peer_asks_us_to_wait():
    clock = FakeClock()
    circuit = Circuits(clock)["DPF"]
    for _ in range(5):
        circuit.heed(RetryableChannelError("network error (ConnectError)"))
    assert not circuit.is_open, "a listing's network trouble is its own business"
    circuit.heed(RetryableChannelError("HTTP 503", throttled=True))
    assert circuit.is_open and circuit.seconds_left() > 0
    circuit.heed(ChannelPaused("DPF is paused"))  # a call not made says nothing new


def test_a_date_retry_after_is_the_same_floor_as_seconds():
    now = parsedate_to_datetime("Fri, 15 Jan 2027 08:00:00 GMT").timestamp()
    wait = retry_after_seconds("Fri, 15 Jan 2027 08:00:30 GMT", now)
    assert wait == 30.0
    clock = FakeClock()
    circuit = Circuits(clock)["DPO"]
    circuit.failed(RetryableChannelError("HTTP 503", retry_after=wait, throttled=True))
    clock.advance(29.9)
    assert not circuit.take_probe() and circuit.seconds_left() > 0


def test_the_virus_scan_look_is_not_asked_again_after_a_429(tmp_path):
    """Inside one send the broker's overview is looked at until the scan is over; a 429 there ends the send
    (to be tried once the wait is over) instead of asking again within the scan's wait."""
    asked: list[float] = []

    def broker(request: httpx.Request) -> httpx.Response:
        asked.append(1)
        return httpx.Response(429, headers={"Retry-After": "30"}, json={"title": "Too Many Requests"})

    client = BrokerClient("http://broker.test/broker/api/v1", lambda: "token",
                          httpx.Client(transport=httpx.MockTransport(broker)))
    with pytest.raises(RetryableChannelError) as raised:
        client.wait_while_processing("7c5b0f3e-9c1e-4c55-9d8c-3c7a1f0e2b11", timeout_s=5.0, first_pause_s=0.01)
    assert raised.value.retry_after == 30.0 and raised.value.throttled
    assert len(asked) == 1


@pytest.mark.parametrize("check", [tokens_check, svarut_check], ids=["altinn", "svarut"])
def test_408_is_tried_again_and_the_servers_retry_after_reaches_the_channel(check):
    def answer(status: int, **headers: str) -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"title": "nope", "message": "nope"},
                              request=httpx.Request("POST", "http://peer.test/x"))

    with pytest.raises(RetryableChannelError):
        check(answer(408), "sending")
    with pytest.raises(RetryableChannelError) as raised:
        check(answer(429, **{"Retry-After": "30"}), "sending")
    assert (raised.value.retry_after, raised.value.throttled) == (30.0, True)
    with pytest.raises(PermanentChannelError, match=r"HTTP 400 from peer\.test: nope"):
        check(answer(400), "sending")

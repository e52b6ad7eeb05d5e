"""Units of the HTTP behaviour a real service expects: Retry-After read in both forms, back-off with jitter,
one channel's circuit pausing that channel alone, and repeated errors summarised."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from gateway.clock import FakeClock
from gateway.delivery.backoff import RetryPolicy
from gateway.delivery.circuit import Circuits
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.logsummary import RepeatedErrors, same_kind
from gateway.tokens import check_response, retry_after_seconds


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "https://broker.example/upload"))


def test_retry_after_in_seconds_and_as_an_http_date():
    now = time.time()
    assert retry_after_seconds("30", now) == 30
    in_two_minutes = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=120), usegmt=True)
    assert retry_after_seconds(in_two_minutes, now) == pytest.approx(120, abs=1)
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", now) == 0, "a date gone by: ask now"
    assert retry_after_seconds("86400", now) == 3600, "never more than an hour"
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_429_and_503_carry_retry_after_and_ask_to_slow_down_and_4xx_are_permanent():
    with pytest.raises(RetryableChannelError) as throttled:
        check_response(_response(429, {"Retry-After": "2"}), "uploading")
    assert throttled.value.retry_after == 2 and throttled.value.throttled
    assert "asks us to wait 2 s" in str(throttled.value)
    with pytest.raises(RetryableChannelError) as unavailable:
        check_response(_response(503), "uploading")
    assert unavailable.value.throttled and unavailable.value.retry_after is None
    with pytest.raises(RetryableChannelError) as bad_gateway:
        check_response(_response(502), "uploading")
    assert not bad_gateway.value.throttled
    with pytest.raises(PermanentChannelError):
        check_response(_response(400, {"Retry-After": "2"}), "uploading")


def test_back_off_has_jitter_and_a_retry_after_is_a_floor():
    policy = RetryPolicy(random=random.Random(3))
    firsts = [policy.delay(1) for _ in range(200)]
    assert min(firsts) >= 16 and max(firsts) <= 24
    assert len({round(d, 3) for d in firsts}) > 150, "spread, not one instant for every message"
    assert max(policy.delay(10) for _ in range(50)) <= 3600
    afters = [policy.delay(5, retry_after=2) for _ in range(200)]
    assert min(afters) >= 2 and max(afters) <= 2.2, "the server's 2 s, never less, plus a little spread"


def test_a_throttled_channel_pauses_alone_and_one_probe_reopens_it():
    clock = FakeClock()
    circuits = Circuits(clock)
    reopened: list[str] = []
    circuits.on_close(reopened.append)
    circuits["DPO"].failed(RetryableChannelError("HTTP 429", retry_after=5, throttled=True))
    circuits["DPV"].succeeded()
    assert circuits.paused() == {"DPO"}, "a 429 on DPO slows DPO down, not DPV"
    assert not circuits["DPO"].take_probe(), "no probe before the server's 5 s"
    clock.advance(5)
    assert circuits["DPO"].take_probe()
    assert not circuits["DPO"].take_probe(), "one probe at a time"
    circuits["DPO"].succeeded()
    assert circuits.paused() == set() and reopened == ["DPO"]


def test_repeated_failures_open_the_circuit_and_failed_probes_pause_longer_up_to_a_cap():
    clock = FakeClock()
    circuit = Circuits(clock)["DPO"]
    down = RetryableChannelError("network error")
    circuit.failed(down)
    circuit.failed(down)
    assert not circuit.is_open, "two failures may be bad luck"
    circuit.failed(down)
    assert circuit.is_open
    pauses = []
    for _ in range(8):
        pauses.append(circuit.seconds_left())
        clock.advance(circuit.seconds_left())
        assert circuit.take_probe()
        circuit.failed(down)
    assert pauses[:4] == [1, 2, 4, 8] and max(pauses) == circuit.max_pause


def test_the_same_error_again_is_counted_and_summarised_once_a_minute(caplog):
    clock = FakeClock()
    log = logging.getLogger("test.repeated")
    repeated = RepeatedErrors(log, noun="transfers", clock=clock.monotonic)
    error = "downloading broker file transfer 6f1c2c1e-59b5-4a1e-9c57-0d1f3e7f1a2b: network error (ConnectError)"
    with caplog.at_level(logging.WARNING, logger="test.repeated"):
        for index in range(58):
            other = error.replace("6f1c2c1e", f"{index:08x}")
            repeated.log(logging.WARNING, same_kind(other), "incoming transfer: %s", other)
        repeated.log(logging.WARNING, "another kind", "a different error")
        clock.advance(61)
        repeated.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("incoming transfer: downloading broker file transfer 00000000-59b5")
    assert lines[1] == "a different error"
    assert lines[2] == (
        "the same error for 57 more transfers in the last minute: downloading broker file transfer <id>: "
        "network error (ConnectError)"
    )


def test_while_the_channel_carries_other_messages_a_failed_message_is_tried_again_within_a_minute():
    clock = FakeClock()
    circuit = Circuits(clock)["DPO"]
    assert not circuit.working(), "nothing has got through yet"
    circuit.succeeded()
    assert circuit.working()
    policy = RetryPolicy(random=random.Random(5))
    assert policy.delay(6, channel_working=False) >= 3600 * 0.8, "an outage: the long back-off"
    assert max(policy.delay(6, channel_working=True) for _ in range(50)) <= 72, "bad luck on a lossy network"
    clock.advance(301)
    assert not circuit.working(), "five minutes without a success: no longer evidence the channel works"

"""The pieces on their own: which settings a reload applies, heartbeats on a fake clock, HTTP outcomes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from gateway.config import load_config
from gateway.ops.health import Heartbeats
from gateway.ops.httpwatch import HttpOutcomes, WatchedTransport
from gateway.ops.reload import plan_reload
from tests.foundation.drops import write_config


def test_a_reload_plan_applies_live_keys_and_keeps_the_running_value_of_the_others(tmp_path: Path):
    running = load_config(write_config(tmp_path))
    fresh = dataclasses.replace(
        running,
        intake=dataclasses.replace(running.intake, scan_interval_seconds=9.0, max_drop_bytes=10),
        folders=dataclasses.replace(running.folders, outbox=tmp_path / "elsewhere"),
        network=dataclasses.replace(running.network, max_parallel_sends=9),
    )
    plan = plan_reload(running, fresh)
    assert plan.live == {"intake.max_drop_bytes": 10, "intake.scan_interval_seconds": 9.0}
    assert plan.needs_restart == ("folders.outbox", "network.max_parallel_sends")
    assert plan.effective.intake.scan_interval_seconds == 9.0
    assert plan.effective.folders.outbox == running.folders.outbox
    assert plan.effective.network.max_parallel_sends == running.network.max_parallel_sends
    assert plan_reload(running, running).live == {} and plan_reload(running, running).needs_restart == ()


def test_a_worker_is_late_only_past_its_interval_and_the_grace():
    now = [100.0]
    beats = Heartbeats(grace_seconds=2, monotonic=lambda: now[0])
    beats.register("intake", 5)
    now[0] = 106.9
    assert beats.late() == []
    now[0] = 107.1
    assert [worker.name for worker in beats.late()] == ["intake"]
    beats.beat("intake")
    assert beats.late() == []


def test_a_job_that_raises_still_beats():
    now = [0.0]
    beats = Heartbeats(grace_seconds=0, monotonic=lambda: now[0])
    beats.register("job", 1)

    def failing() -> None:
        raise RuntimeError("the job failed")

    now[0] = 5.0
    with pytest.raises(RuntimeError):
        beats.beating("job", failing)()
    assert beats.late() == []


def test_http_outcomes_count_errors_by_endpoint_kind_and_status():
    outcomes = HttpOutcomes({"dpo": "http://h/broker/api/v1", "service_registry": "http://h/sr"})

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/down"):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503 if "broker" in request.url.path else 200)

    with httpx.Client(transport=WatchedTransport(httpx.MockTransport(answer), outcomes)) as client:
        client.get("http://h/broker/api/v1/filetransfer?x=1")
        client.get("http://h/sr/identifier/1")
        with pytest.raises(httpx.ConnectError):
            client.get("http://h/sr/down")
    errors, last = outcomes.snapshot()
    assert errors == {("dpo", "http", "503"): 1, ("service_registry", "connect", ""): 1}
    assert last["dpo"].reachable is False and last["service_registry"].reachable is False

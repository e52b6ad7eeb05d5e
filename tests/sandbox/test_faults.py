"""Fault injection in the sandbox, seen from a real httpx client against a real SandboxServer."""

from __future__ import annotations

import itertools
import socket
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.channels.dpo.client import DPO_RESOURCE_ID
from gateway.errors import ConfigError
from gateway.sandbox import SandboxCatalogue, SandboxContext, SandboxServer
from gateway.sandbox.faults import FaultPlan, FaultRule, fault_plan_from_dict, load_fault_plan
from tests.sandbox.support import DPO_RECEIVER, REGISTRY_SCOPES, SENDER, TokenFactory

INITIALISE = "/broker/api/v1/filetransfer"


@pytest.fixture(autouse=True)
def no_faults_left(sandbox: SandboxServer) -> Iterator[None]:
    sandbox.faults.clear()
    yield
    sandbox.faults.clear()


@pytest.fixture
def auth(token_client: TokenFactory) -> dict[str, str]:
    """The broker's (an Altinn token)."""
    return {"Authorization": f"Bearer {token_client(SENDER)()}"}


@pytest.fixture
def registry_auth(token_client: TokenFactory) -> dict[str, str]:
    """The service registry's (a Maskinporten token)."""
    return {"Authorization": f"Bearer {token_client(SENDER, REGISTRY_SCOPES)()}"}


def initialise_body(reference: str) -> dict:
    return {"fileName": "sbd.zip", "resourceId": DPO_RESOURCE_ID, "sendersFileTransferReference": reference,
            "sender": f"0192:{SENDER}", "recipients": [f"0192:{DPO_RECEIVER}"], "propertyList": {}}


def initialised(sandbox: SandboxServer, reference: str) -> int:
    stats = httpx.get(f"{sandbox.url}/broker/_sandbox/stats", timeout=10).json()
    return stats["initialisedByReference"].get(reference, 0)


def test_500_before_acting_creates_no_transfer(sandbox: SandboxServer, auth: dict, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("error", method="POST", path=INITIALISE, times=1))
    reference = str(uuid.uuid4())
    response = http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference), headers=auth)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert initialised(sandbox, reference) == 0
    # the one faulted request is spent: the retry goes through
    assert http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference), headers=auth).status_code == 200
    assert initialised(sandbox, reference) == 1


def test_500_after_acting_creates_the_transfer_and_hides_it(
    sandbox: SandboxServer, auth: dict, http: httpx.Client
) -> None:
    sandbox.faults.set_rules(FaultRule("error", method="POST", path=INITIALISE, after=True))
    reference = str(uuid.uuid4())
    response = http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference), headers=auth)
    assert response.status_code == 500
    assert "fileTransferId" not in response.text
    assert initialised(sandbox, reference) == 1


@pytest.mark.parametrize("status", [503, 429])
def test_unavailable_and_too_many_requests_carry_retry_after(
    status: int, sandbox: SandboxServer, http: httpx.Client
) -> None:
    sandbox.faults.set_rules(FaultRule("error", path="/sr/*", status=status, retry_after_seconds=7))
    response = http.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}")
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    assert response.json()["status"] == status


def test_a_rule_for_one_caller_leaves_the_others_requests_alone(
    sandbox: SandboxServer, token_client: TokenFactory, http: httpx.Client
) -> None:
    """A gateway's requests apart from an automatic peer's on the same path: by the organisation its access
    token is for, or its HTTP Basic user name."""
    sandbox.faults.set_rules(FaultRule("error", method="POST", path=INITIALISE, caller=SENDER, status=429,
                                       retry_after_seconds=30))
    as_receiver = {"Authorization": f"Bearer {token_client(DPO_RECEIVER).access_token()}"}
    as_sender = {"Authorization": f"Bearer {token_client(SENDER).access_token()}"}
    assert http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(str(uuid.uuid4())),
                     headers=as_receiver).status_code != 429
    assert http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(str(uuid.uuid4())),
                     headers=as_sender).status_code == 429
    sandbox.faults.set_rules(FaultRule("error", path="/nowhere", caller="9100*", status=503))
    assert http.get(f"{sandbox.url}/nowhere", auth=("910077473", "secret")).status_code == 503
    assert http.get(f"{sandbox.url}/nowhere", auth=("991825827", "secret")).status_code == 404
    assert http.get(f"{sandbox.url}/nowhere").status_code == 404, "a request for no one is no caller's"


def test_a_reset_is_a_read_error_and_nothing_happens(sandbox: SandboxServer, auth: dict, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("reset", method="POST", path=INITIALISE))
    reference = str(uuid.uuid4())
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference), headers=auth)
    assert initialised(sandbox, reference) == 0
    assert sandbox.faults.injected()["reset"] == 1


def test_a_reset_in_the_middle_of_an_upload(sandbox: SandboxServer, auth: dict, http: httpx.Client) -> None:
    reference = str(uuid.uuid4())
    transfer_id = http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference),
                            headers=auth).json()["fileTransferId"]
    sandbox.faults.set_rules(FaultRule("reset", method="POST", path="/broker/api/v1/filetransfer/*/upload"))
    with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
        http.post(f"{sandbox.broker_url}/filetransfer/{transfer_id}/upload", content=b"x" * 5_000_000,
                  headers={**auth, "Content-Type": "application/octet-stream"})
    stats = http.get(f"{sandbox.url}/broker/_sandbox/stats").json()
    assert stats["uploadsByReference"].get(reference, 0) == 0


def test_a_reset_is_a_tcp_rst(sandbox: SandboxServer) -> None:
    sandbox.faults.set_rules(FaultRule("reset", path="/nowhere"))
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as client:
        client.sendall(b"GET /nowhere HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            client.recv(64)


def test_a_stall_outlasts_the_client_timeout(sandbox: SandboxServer, registry_auth: dict, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("stall", path="/sr/*", stall_seconds=20, times=1))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}", timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert http.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}", headers=registry_auth).status_code == 200


def test_a_stall_after_acting_loses_only_the_answer(sandbox: SandboxServer, auth: dict) -> None:
    sandbox.faults.set_rules(FaultRule("stall", method="POST", path=INITIALISE, after=True, stall_seconds=20))
    reference = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sandbox.url}{INITIALISE}", json=initialise_body(reference), headers=auth, timeout=0.5)
    assert initialised(sandbox, reference) == 1


def test_a_client_that_waits_out_a_stall_sees_the_connection_closed(sandbox: SandboxServer) -> None:
    sandbox.faults.set_rules(FaultRule("stall", path="/nowhere", stall_seconds=0.3))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{sandbox.url}/nowhere", timeout=5)


def test_a_truncated_body_is_an_incomplete_read(sandbox: SandboxServer, http: httpx.Client) -> None:
    whole = http.get(f"{sandbox.url}/broker/_sandbox/stats")
    assert whole.status_code == 200
    sandbox.faults.set_rules(FaultRule("truncate", path="/broker/_sandbox/stats", keep_fraction=0.5))
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        http.get(f"{sandbox.url}/broker/_sandbox/stats")
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
        "GET", f"{sandbox.url}/broker/_sandbox/stats", timeout=5
    ) as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(whole.content)
        for chunk in response.iter_raw():
            received += chunk
    assert 0 < len(received) < len(whole.content)


def test_latency_delays_each_request_by_at_least_the_set_ms(sandbox: SandboxServer, http: httpx.Client) -> None:
    url = f"{sandbox.url}/nowhere"
    http.get(url)
    sandbox.faults.set_rules(FaultRule("latency", path="/nowhere", delay_ms=150))
    for _ in range(3):
        started = time.monotonic()
        assert http.get(url).status_code == 404  # latency alone changes nothing else
        assert time.monotonic() - started >= 0.150
    assert sandbox.faults.injected()["latency"] == 3


def test_latency_adds_to_another_fault(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("latency", delay_ms=100), FaultRule("error", path="/nowhere", status=503))
    started = time.monotonic()
    assert http.get(f"{sandbox.url}/nowhere").status_code == 503
    assert time.monotonic() - started >= 0.100


def test_rules_select_by_method_and_path(sandbox: SandboxServer, auth: dict, registry_auth: dict,
                                         http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("error", method="POST", path="/broker/*"))
    assert http.get(f"{sandbox.broker_url}/filetransfer", headers=auth,
                    params={"resourceId": DPO_RESOURCE_ID}).status_code == 200
    assert http.get(f"{sandbox.registry_url}/identifier/{DPO_RECEIVER}", headers=registry_auth).status_code == 200
    assert http.post(f"{sandbox.url}{INITIALISE}", json=initialise_body("x"), headers=auth).status_code == 500


def test_a_count_faults_exactly_the_next_n_requests(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("error", path="/nowhere", status=503, times=3))
    statuses = [http.get(f"{sandbox.url}/nowhere").status_code for _ in range(5)]
    assert statuses == [503, 503, 503, 404, 404]
    [rule] = sandbox.faults.describe()["rules"]
    assert (rule["injected"], rule["remaining"]) == (3, 0)


def test_a_probability_with_a_seed_repeats_the_same_requests(sandbox: SandboxServer, http: httpx.Client) -> None:
    def run() -> list[int]:
        sandbox.faults.set_rules(FaultRule("error", path="/nowhere", probability=0.3), seed=11)
        return [http.get(f"{sandbox.url}/nowhere").status_code for _ in range(60)]

    first = run()
    assert 5 <= first.count(500) <= 35
    assert set(first) == {404, 500}
    assert run() == first
    assert sandbox.faults.injected()["error"] == first.count(500)


def test_probability_and_count_together(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("error", path="/nowhere", probability=0.5, times=4), seed=3)
    statuses = [http.get(f"{sandbox.url}/nowhere").status_code for _ in range(40)]
    faulted = [index for index, status in enumerate(statuses) if status == 500]
    assert len(faulted) == 4
    assert faulted[-1] > 3  # the probability let some through before the count ran out


def test_the_control_endpoint_changes_the_rules_at_run_time(sandbox: SandboxServer, http: httpx.Client) -> None:
    plan = {"seed": 5, "rules": [{"fault": "error", "path": "*", "status": 429, "retry_after_seconds": 2,
                                  "times": 2}]}
    shown = http.post(sandbox.faults_url, json=plan)
    assert shown.status_code == 200
    assert shown.json()["rules"][0]["remaining"] == 2
    before = time.time()
    assert http.get(f"{sandbox.url}/nowhere").status_code == 429
    after = time.time()
    # the control endpoint itself is never faulted, even by a rule for every path
    counters = http.get(sandbox.faults_url)
    assert counters.status_code == 200
    rule = counters.json()["rules"][0]
    [fired_at] = rule.pop("fired_at")
    assert before - 0.01 <= fired_at <= after + 0.01, "when the faulted request came, on the sandbox's clock"
    assert rule == {"fault": "error", "method": "*", "path": "*", "caller": "*", "probability": 1.0, "times": 2,
                    "status": 429, "after": False, "retry_after_seconds": 2, "injected": 1, "remaining": 1}
    assert counters.json()["injected"]["error"] == 1
    assert http.delete(sandbox.faults_url).json()["rules"] == []
    assert http.get(f"{sandbox.url}/nowhere").status_code == 404


def test_every_rule_one_request_fires_records_the_same_moment(monkeypatch) -> None:
    """A counting rule and a fault on one request: a test finds the faulted request among the counted ones by
    its moment, so both rules say the same one, however slow the machine is between them."""
    from gateway.sandbox import fault_rules
    from gateway.sandbox.fault_rules import FaultInjector

    ticks = itertools.count()
    slow_clock = types.SimpleNamespace(time=lambda: 1_800_000_000 + next(ticks) / 1000)  # a millisecond a look
    monkeypatch.setattr(fault_rules, "time", slow_clock)
    injector = FaultInjector()
    injector.set_rules(FaultRule("latency", path="*", delay_ms=0), FaultRule("error", path="/nowhere", status=429))
    assert injector.choose("GET", "/nowhere").fault is not None
    counted, faulted = (rule["fired_at"] for rule in injector.describe()["rules"])
    assert counted == faulted and len(faulted) == 1


def test_the_control_endpoint_refuses_a_wrong_rule(sandbox: SandboxServer, http: httpx.Client) -> None:
    sandbox.faults.set_rules(FaultRule("latency", delay_ms=1))
    refused = http.post(sandbox.faults_url, json=[{"fault": "error", "delay_ms": 5}])
    assert refused.status_code == 400
    assert refused.json()["title"] == ("POST /_faults, rule 1: 'delay_ms' does not apply to error faults; their keys "
                                       "are after, caller, fault, method, path, probability, retry_after_seconds, "
                                       "status, times")
    assert http.post(sandbox.faults_url, content=b"{not json").status_code == 400
    assert len(sandbox.faults.describe()["rules"]) == 1  # the rules in force are kept


def test_extra_apps_are_faulted_too(tmp_path: Path, catalogue: SandboxCatalogue) -> None:
    def extra(context: SandboxContext) -> Starlette:
        return Starlette(routes=[Route("/hello", lambda request: PlainTextResponse("hello"))])

    plan = FaultPlan((FaultRule("error", path="/extra/*", times=1),))
    with SandboxServer(tmp_path, catalogue, extra_apps={"/extra": extra}, faults=plan) as server, \
            httpx.Client(timeout=5) as http:
        assert http.get(f"{server.url}/extra/hello").status_code == 500
        assert http.get(f"{server.url}/extra/hello").text == "hello"


def test_stop_ends_a_stalled_request(tmp_path: Path, catalogue: SandboxCatalogue) -> None:
    server = SandboxServer(tmp_path, catalogue, faults=FaultPlan((FaultRule("stall", stall_seconds=120),)))
    server.start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(b"GET /nowhere HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5


def test_a_faults_file_reads_into_a_plan(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("seed: 42\nrules:\n  - {fault: latency, delay_ms: 100}\n"
                    "  - {fault: error, method: POST, path: /broker/*, status: 503, retry_after_seconds: 5, "
                    "probability: 0.1}\n")
    plan = load_fault_plan(path)
    assert plan.seed == 42
    assert plan.rules == (FaultRule("latency", delay_ms=100),
                          FaultRule("error", method="POST", path="/broker/*", status=503, retry_after_seconds=5,
                                    probability=0.1))


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ([{"fault": "explode"}], "rule 1: fault must be one of error, reset, stall, truncate, latency"),
        ([{"fault": "latency", "delay_ms": "lots"}], "rule 1: delay_ms must be a number, not 'lots'"),
        ([{"fault": "error"}, {"fault": "error", "probability": 2}], "rule 2: probability must be between 0 and 1"),
        ([{"fault": "error", "times": 0}], "rule 1: times must be at least 1"),
        ([{"fault": "error", "status": 200}], "rule 1: status must be an HTTP error status"),
        ([{"fault": "truncate", "keep_fraction": 1}], "keep_fraction must be at least 0 and less than 1"),
        ({"rule": []}, "unknown key 'rule'"),
    ],
)
def test_a_wrong_faults_config_names_the_rule_and_the_key(rules: object, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        fault_plan_from_dict(rules, where="faults.yaml")

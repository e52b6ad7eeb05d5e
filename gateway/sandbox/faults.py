"""Fault injection for the sandbox network: ASGI middleware that breaks chosen requests on purpose.

A rule picks requests by method and path pattern (fnmatch on the whole path, e.g. `/broker/*/upload`),
with a probability (drawn from one seeded RNG, so a run can be repeated) and/or a count (`times`: the
next N requests it picks), and does one of:

    error     answer `status` (500 unless set) instead of the app's answer, with Retry-After when
              `retry_after_seconds` is set (503, 429); before the app runs, or with `after: true`
              once the app has acted (the effect happens, the client sees only the error)
    reset     take the first part of the request, then reset the connection (TCP RST); `after: true`
              lets the app act first
    stall     take the request, then answer nothing for `stall_seconds` (past the client's timeout)
              and close; `after: true` lets the app act first
    truncate  let the app answer, send its headers (with the full Content-Length) and `keep_fraction`
              of the body, then close
    latency   wait `delay_ms` before the app runs; every latency rule that fires adds its delay,
              and the first other rule that fires (in order) applies too

Rules come from config (`fault_plan_from_dict`, a YAML file for `efm-gateway sandbox --faults`), from the
Python API (`SandboxServer.faults`), or at run time from the control endpoint `/_faults`: GET shows the
rules and how often each fired, POST replaces them (JSON `{"seed": 7, "rules": [...]}`), DELETE clears
them. The control endpoint is never faulted. The daemon never knows: it only sees HTTP.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import socket
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ConfigError

CONTROL_PATH = "/_faults"
FAULT_KINDS = ("error", "reset", "stall", "truncate", "latency")
_COMMON_KEYS = {"fault", "method", "path", "probability", "times"}
_KEYS_OF_KIND = {
    "error": {"status", "after", "retry_after_seconds"},
    "reset": {"after"},
    "stall": {"after", "stall_seconds"},
    "truncate": {"keep_fraction"},
    "latency": {"delay_ms"},
}
_VALUE_KINDS = {
    "fault": "text", "method": "text", "path": "text", "after": "true or false",
    "times": "a whole number", "status": "a whole number", "retry_after_seconds": "a whole number",
    "probability": "a number", "stall_seconds": "a number", "keep_fraction": "a number", "delay_ms": "a number",
}
_DISCONNECT_WAIT_S = 5.0  # how long a faulted request waits for uvicorn to notice the closed connection
_STALL_POLL_S = 0.05

# Finds the transport of the connection a request came on, by the scope's client address; the fault
# needs the connection itself (to reset or close it), which ASGI does not hand to an app.
TransportFinder = Callable[[Scope], asyncio.Transport | None]


@dataclass(frozen=True)
class FaultRule:
    """One rule; see the module docstring for what each fault does."""

    fault: str
    method: str = "*"
    path: str = "*"
    probability: float = 1.0
    times: int | None = None
    status: int = 500
    after: bool = False
    retry_after_seconds: int | None = None
    stall_seconds: float = 30.0
    keep_fraction: float = 0.5
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if self.fault not in FAULT_KINDS:
            return f"unknown fault {self.fault!r}; the faults are {', '.join(FAULT_KINDS)}"
        if not isinstance(self.method, str) or not isinstance(self.path, str) or not self.path:
            return "method and path must be text (a method name or '*', a path pattern such as /broker/*)"
        if not 0.0 <= self.probability <= 1.0:
            return f"probability must be between 0 and 1, not {self.probability!r}"
        if self.times is not None and self.times < 1:
            return f"times must be at least 1 (or left out for no limit), not {self.times!r}"
        if not 400 <= self.status <= 599:
            return f"status must be an HTTP error status (400-599), not {self.status!r}"
        if self.retry_after_seconds is not None and self.retry_after_seconds < 0:
            return f"retry_after_seconds must be 0 or more, not {self.retry_after_seconds!r}"
        if self.stall_seconds <= 0:
            return f"stall_seconds must be more than 0, not {self.stall_seconds!r}"
        if self.delay_ms < 0:
            return f"delay_ms must be 0 or more, not {self.delay_ms!r}"
        if not 0.0 <= self.keep_fraction < 1.0:
            return f"keep_fraction must be at least 0 and less than 1, not {self.keep_fraction!r}"
        return None

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict[str, Any]:
        """The rule in its config form, with only the keys its fault uses."""
        keys = _COMMON_KEYS | _KEYS_OF_KIND[self.fault]
        return {key: value for key, value in asdict(self).items() if key in keys}


@dataclass(frozen=True)
class FaultPlan:
    """Rules in order, and the seed of the RNG that draws their probabilities."""

    rules: tuple[FaultRule, ...] = ()
    seed: int | None = None


def fault_rule_from_dict(raw: Mapping[str, Any], where: str = "fault rule") -> FaultRule:
    """A rule from its config (or JSON) form; ConfigError naming `where` and the key when it is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping such as {{fault: error, path: /broker/*}}, not {raw!r}")
    kind = raw.get("fault")
    if kind not in FAULT_KINDS:
        raise ConfigError(f"{where}: fault must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
    allowed = _COMMON_KEYS | _KEYS_OF_KIND[kind]
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: {key!r} does not apply to {kind} faults; their keys are "
                              f"{', '.join(sorted(allowed))}")
    for key, value in raw.items():
        expected = _VALUE_KINDS[key]
        if not (value is None and key in ("times", "retry_after_seconds")) and not _is_value_of_kind(value, expected):
            raise ConfigError(f"{where}: {key} must be {expected}, not {value!r}")
    try:
        return FaultRule(**raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _is_value_of_kind(value: Any, expected: str) -> bool:
    if expected == "text":
        return isinstance(value, str)
    if expected == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if expected == "a whole number" else isinstance(value, int | float)


def fault_plan_from_dict(raw: Any, where: str = "faults") -> FaultPlan:
    """A plan from `{"seed": 7, "rules": [...]}` or a bare list of rules."""
    if isinstance(raw, list):
        raw = {"rules": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'rules' (a list) and optionally 'seed', not {raw!r}")
    unknown = set(raw) - {"rules", "seed"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; the keys are rules and seed")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"{where}: seed must be a whole number, not {seed!r}")
    rules = raw.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError(f"{where}: rules must be a list of rules, not {rules!r}")
    return FaultPlan(tuple(fault_rule_from_dict(r, f"{where}, rule {i + 1}") for i, r in enumerate(rules)), seed)


def load_fault_plan(path: Path) -> FaultPlan:
    """A plan from a YAML (or JSON) file."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such faults file; give the path of a YAML file with the fault rules") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return fault_plan_from_dict(raw if raw is not None else [], where=str(path))


@dataclass
class _RuleState:
    rule: FaultRule
    remaining: int | None
    injected: int = 0


@dataclass(frozen=True)
class _Choice:
    delay_ms: float = 0.0
    fault: FaultRule | None = None


@dataclass
class FaultInjector:
    """The rules in force and how often each fired; shared by the middleware (the server's thread), the
    control endpoint and the Python API (a test's thread), hence the lock."""

    plan: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._releasing = threading.Event()
        self.set_plan(self.plan)

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace every rule, restart the counters and reseed the RNG."""
        with self._lock:
            self.plan = plan
            self._states = [_RuleState(rule, rule.times) for rule in plan.rules]
            self._random = random.Random(plan.seed)

    def set_rules(self, *rules: FaultRule, seed: int | None = None) -> None:
        self.set_plan(FaultPlan(tuple(rules), seed))

    def add_rule(self, rule: FaultRule) -> None:
        """Add a rule after the others, keeping their counters."""
        with self._lock:
            self.plan = FaultPlan((*self.plan.rules, rule), self.plan.seed)
            self._states.append(_RuleState(rule, rule.times))

    def clear(self) -> None:
        self.set_plan(FaultPlan(seed=self.plan.seed))

    def injected(self) -> dict[str, int]:
        """How many requests each fault kind broke (latency included), since the rules were last set."""
        with self._lock:
            totals = dict.fromkeys(FAULT_KINDS, 0)
            for state in self._states:
                totals[state.rule.fault] += state.injected
            return totals

    def describe(self) -> dict[str, Any]:
        """The rules with their counters, as the control endpoint shows them."""
        with self._lock:
            rules = [{**s.rule.as_dict(), "injected": s.injected, "remaining": s.remaining} for s in self._states]
            seed = self.plan.seed
        return {"seed": seed, "rules": rules, "injected": self.injected()}

    def choose(self, method: str, path: str) -> _Choice:
        delay_ms = 0.0
        with self._lock:
            for state in self._states:
                if state.remaining == 0 or not state.rule.matches(method, path):
                    continue
                if state.rule.probability < 1.0 and self._random.random() >= state.rule.probability:
                    continue
                state.injected += 1
                if state.remaining is not None:
                    state.remaining -= 1
                if state.rule.fault == "latency":
                    delay_ms += state.rule.delay_ms
                else:
                    return _Choice(delay_ms, state.rule)
        return _Choice(delay_ms)

    # Stalled requests end when the server stops, so that uvicorn's shutdown does not wait for them.
    def release_stalls(self) -> None:
        self._releasing.set()

    def arm_stalls(self) -> None:
        self._releasing.clear()

    @property
    def releasing(self) -> bool:
        return self._releasing.is_set()


class FaultMiddleware:
    """Wraps the sandbox's whole app; requests no rule picks pass through untouched."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, find_transport: TransportFinder) -> None:
        self.app = app
        self.injector = injector
        self.find_transport = find_transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == CONTROL_PATH:
            await self.app(scope, receive, send)
            return
        choice = self.injector.choose(scope["method"], scope["path"])
        if choice.delay_ms:
            await asyncio.sleep(choice.delay_ms / 1000)
        rule = choice.fault
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.fault == "truncate":
            await self._truncate(rule, scope, receive, send)
            return
        if rule.after:
            await self.app(scope, receive, _discard)
        elif rule.fault == "reset":
            await receive()  # the first part of the request, so the reset comes mid-request
        else:
            await _drain(receive)
        if rule.fault == "error":
            await _error_response(rule)(scope, receive, send)
        elif rule.fault == "reset":
            self._reset(scope)
            await _until_disconnected(receive)
        else:
            await self._stall(rule, scope, receive)

    def _transport(self, scope: Scope) -> asyncio.Transport:
        transport = self.find_transport(scope)
        if transport is None:
            raise RuntimeError(f"the sandbox cannot find the connection from {scope.get('client')} to fault it")
        return transport

    def _reset(self, scope: Scope) -> None:
        transport = self._transport(scope)
        # A zero linger turns the close into a TCP RST instead of an orderly FIN.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def _stall(self, rule: FaultRule, scope: Scope, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rule.stall_seconds
        gone = asyncio.ensure_future(_until_disconnected(receive, rule.stall_seconds))
        while not gone.done() and loop.time() < deadline and not self.injector.releasing:
            await asyncio.wait({gone}, timeout=_STALL_POLL_S)
        if gone.done() and gone.result():
            return  # the client gave up, as it should
        gone.cancel()
        self._transport(scope).close()  # the client outwaited the stall: close without an answer
        await _until_disconnected(receive)

    async def _truncate(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        start = next((m for m in captured if m["type"] == "http.response.start"), None)
        if start is None:
            return  # the app gave no answer to cut
        body = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        announced = max(len(body), 1)  # an empty body is announced as one byte, so there is still a cut
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",
                                                                                   b"transfer-encoding")]
        headers.append((b"content-length", str(announced).encode("ascii")))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body[: int(len(body) * rule.keep_fraction)],
                    "more_body": True})
        self._transport(scope).close()  # what was written is flushed first, then FIN
        await _until_disconnected(receive)


def _error_response(rule: FaultRule) -> Response:
    headers = {"Retry-After": str(rule.retry_after_seconds)} if rule.retry_after_seconds is not None else {}
    problem = {"title": "Fault injected by the sandbox", "status": rule.status,
               "detail": f"rule {json.dumps(rule.as_dict(), sort_keys=True)}"}
    return JSONResponse(problem, status_code=rule.status, headers=headers, media_type="application/problem+json")


async def _discard(message: Message) -> None:
    """The app's own answer, which the client never sees."""


async def _drain(receive: Receive) -> None:
    """Read the request body to its end, as a server that takes the request before failing would."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return


async def _until_disconnected(receive: Receive, timeout: float = _DISCONNECT_WAIT_S) -> bool:
    """Wait until uvicorn reports the connection gone; False when it is still there after `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def control_route(injector: FaultInjector) -> Route:
    """`/_faults`: GET the rules and counters, POST a new plan (replaces the rules), DELETE them all."""

    async def control(request: Request) -> Response:
        if request.method == "POST":
            try:
                raw = json.loads(await request.body())
                injector.set_plan(fault_plan_from_dict(raw, where="POST /_faults"))
            except json.JSONDecodeError as exc:
                return JSONResponse({"title": f"POST /_faults: the body is not JSON ({exc.msg})"}, status_code=400)
            except ConfigError as exc:
                return JSONResponse({"title": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            injector.clear()
        return JSONResponse(injector.describe())

    return Route(CONTROL_PATH, control, methods=["GET", "POST", "DELETE"])


def uvicorn_transport_finder(connections: Callable[[], Sequence[Any]]) -> TransportFinder:
    """A TransportFinder over uvicorn's open connections (its protocol objects, each with `client` and
    `transport`), matched to the request by the client's address and port."""

    def find(scope: Scope) -> asyncio.Transport | None:
        client = tuple(scope.get("client") or ())
        for protocol in connections():
            if tuple(getattr(protocol, "client", None) or ()) == client:
                return protocol.transport
        return None

    return find


__all__ = [
    "CONTROL_PATH",
    "FAULT_KINDS",
    "FaultInjector",
    "FaultMiddleware",
    "FaultPlan",
    "FaultRule",
    "control_route",
    "fault_plan_from_dict",
    "fault_rule_from_dict",
    "load_fault_plan",
    "uvicorn_transport_finder",
]

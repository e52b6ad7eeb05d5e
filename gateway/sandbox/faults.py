"""Fault injection for the sandbox network: ASGI middleware that breaks chosen requests on purpose.

A rule picks requests by method and path pattern (fnmatch on the whole path, e.g. `/broker/*/upload`),
optionally by `caller` (the organisation number a request's access token is for, or its HTTP Basic user
name: one gateway's requests apart from the automatic peers'), with a probability (drawn from one seeded
RNG, so a run can be repeated) and/or a count (`times`: the next N requests it picks), and does one of:

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
rules, how often each fired and when (`fired_at`, epoch seconds), POST replaces them (JSON
`{"seed": 7, "rules": [...]}`), DELETE clears them. The control endpoint is never faulted. The daemon never
knows: it only sees HTTP. The rules, their config form and the injector that picks requests and counts them
are in fault_rules.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ConfigError
from gateway.sandbox.fault_rules import (
    FAULT_KINDS,
    FaultInjector,
    FaultPlan,
    FaultRule,
    fault_plan_from_dict,
    fault_rule_from_dict,
    load_fault_plan,
)

CONTROL_PATH = "/_faults"
_DISCONNECT_WAIT_S = 5.0  # how long a faulted request waits for uvicorn to notice the closed connection
_STALL_POLL_S = 0.05

# Finds the transport of the connection a request came on, by the scope's client address; the fault
# needs the connection itself (to reset or close it), which ASGI does not hand to an app.
TransportFinder = Callable[[Scope], asyncio.Transport | None]


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
        choice = self.injector.choose(scope["method"], scope["path"], caller_of(scope))
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


def caller_of(scope: Scope) -> str:
    """The organisation a request is made for: its bearer token's consumer (read, not verified: the apps
    verify it), or its HTTP Basic user name; "" when it names none."""
    header = next((value for name, value in scope.get("headers", []) if name == b"authorization"), b"")
    scheme, _, credentials = header.decode("latin-1").partition(" ")
    try:
        if scheme.lower() == "bearer":
            payload = credentials.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            consumer = str(claims.get("consumer", {}).get("ID", ""))
            return consumer.removeprefix("0192:")
        if scheme.lower() == "basic":
            return base64.b64decode(credentials).decode("utf-8").partition(":")[0]
    except (ValueError, IndexError, AttributeError, UnicodeDecodeError):
        return ""
    return ""


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
    "caller_of",
    "control_route",
    "fault_plan_from_dict",
    "fault_rule_from_dict",
    "load_fault_plan",
    "uvicorn_transport_finder",
]

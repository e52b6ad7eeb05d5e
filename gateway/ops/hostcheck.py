"""Only requests addressed to a name in ops.allowed_hosts are answered (DNS rebinding).

A web page on another site can make a browser resolve its own name to 127.0.0.1 and then read our
loopback listeners as if they were that site; the Host header still carries the other site's name,
so a listener that answers only its own names gives such a page nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.config import host_name

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
MISDIRECTED = 421  # "this server does not answer under that name"


def host_of(header: str) -> str:
    """The host part of a Host header (`name:port`, `[::1]:port`, `name`), as host_name compares it."""
    header = header.strip()
    if header.startswith("["):
        return host_name(header.partition("]")[0] + "]")
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return host_name(header)


class HostCheck:
    """ASGI middleware: a request whose Host is not one of `allowed` gets 421 and one line of text."""

    def __init__(self, app: App, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"host")
        host = host_of(raw.decode("latin-1")) if raw else ""
        if host and host in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = host or "(none)"
        line = (
            f"efm-gateway: this endpoint does not answer to the host name {shown[:100]!r}; "
            "add it to ops.allowed_hosts if it is yours\n"
        ).encode()
        await send({
            "type": "http.response.start", "status": MISDIRECTED,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(line)).encode()),
                        (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")],
        })
        await send({"type": "http.response.body", "body": line})

"""Watching the sandbox's answers: ASGI middleware that hands every finished exchange to a callback.

Tests install one (`SandboxServer.observe`) to check each answer the services give against the real
APIs' OpenAPI descriptions. A server nobody observes never has it in its path: it costs nothing then.
Bodies are kept up to `keep_bytes` each (the start of a large upload or download is enough to see
its shape); `Exchange.complete` says whether both were kept whole, and `request_read` whether the app
read the request body at all (one refused for its token is answered unread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KEEP_BYTES = 1 << 20


@dataclass(frozen=True)
class Exchange:
    """One request to the sandbox and the answer it got (header names in lower case)."""

    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    complete: bool
    request_read: bool = True

    @property
    def request_content_type(self) -> str | None:
        return self.request_headers.get("content-type")

    @property
    def response_content_type(self) -> str | None:
        return self.response_headers.get("content-type")


Observer = Callable[[Exchange], None]


class _Body:
    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        room = self.keep_bytes - min(self.size, self.keep_bytes)
        if room:
            self.parts.append(chunk[:room])
        self.size += len(chunk)

    @property
    def kept(self) -> bytes:
        return b"".join(self.parts)

    @property
    def whole(self) -> bool:
        return self.size <= self.keep_bytes


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


class ObservingMiddleware:
    """Passes every message through unchanged; once the app has answered, calls `observer` with the exchange."""

    def __init__(self, app: ASGIApp, observer: Observer, keep_bytes: int = KEEP_BYTES) -> None:
        self.app = app
        self.observer = observer
        self.keep_bytes = keep_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request, response = _Body(self.keep_bytes), _Body(self.keep_bytes)
        start: dict[str, Message] = {}
        read: list[bool] = []

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.add(message.get("body", b""))
                if not message.get("more_body", False):
                    read.append(True)
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                start["message"] = message
            elif message["type"] == "http.response.body":
                response.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:
            answer = start.get("message")
            if answer is not None:
                self.observer(Exchange(
                    method=scope["method"], path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    request_headers=_headers(scope.get("headers", [])), request_body=request.kept,
                    status=int(answer["status"]), response_headers=_headers(answer.get("headers", [])),
                    response_body=response.kept, complete=request.whole and response.whole,
                    request_read=bool(read),
                ))


__all__ = ["KEEP_BYTES", "Exchange", "Observer", "ObservingMiddleware"]

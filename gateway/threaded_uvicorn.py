"""uvicorn in a thread of its own, saying when it listens: for the ops endpoint and the sandbox."""

from __future__ import annotations

import socket
import threading

import uvicorn


class ThreadedUvicorn(uvicorn.Server):
    """Off the main thread uvicorn leaves the signals to the process; `ready` is set once it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

"""A real forward HTTP proxy on 127.0.0.1 for the tests, as a corporate proxy works: absolute-URI
requests (`GET http://host/path`) are forwarded with a `Via` header added, `CONNECT host:port` opens a
tunnel (for https://). It counts what it carried per host, may ask for Basic credentials (407), and
knows the local ports of its own upstream connections (so a server can tell a proxied request from a
direct one)."""

from __future__ import annotations

import base64
import contextlib
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import urlsplit

VIA = "1.1 efm-test-proxy"
HOP_BY_HOP = {b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive"}
CHUNK = 64 * 1024


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.requests: Counter[str] = Counter()  # "host:port" -> requests carried (a tunnel counts once)
        self.refused = 0  # requests answered 407
        self.upstream_ports: set[int] = set()  # local ports of the connections this proxy opened upstream
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with_credentials(self) -> str:
        assert self.credentials is not None
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def start(self) -> ForwardProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in list(self._sockets):
                _close(sock)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- one client connection -------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        reader = client.makefile("rb")
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                method, target, _version = head[0].decode("latin-1").split(" ", 2)
                headers = _headers(head[1:])
                if not self._authorised(headers):
                    with self._lock:
                        self.refused += 1
                    _skip_body(reader, headers)
                    client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                   b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                    continue
                if method == "CONNECT":
                    self._tunnel(client, target)
                    return
                if not self._forward(client, reader, method, target, headers):
                    return
        except (OSError, ValueError):
            return
        finally:
            self._untrack(client)
            _close(client)

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        given = _header(headers, b"proxy-authorization")
        return given is not None and given.decode("latin-1").strip() == f"Basic {expected}"

    def _connect(self, host: str, port: int) -> socket.socket:
        upstream = socket.create_connection((host, port), timeout=60)
        upstream.settimeout(None)
        self._track(upstream)
        with self._lock:
            self.upstream_ports.add(upstream.getsockname()[1])
        return upstream

    def _count(self, host: str, port: int) -> None:
        with self._lock:
            self.requests[f"{host}:{port}"] += 1

    def _tunnel(self, client: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream = self._connect(host.strip("[]"), int(port))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self._count(host, int(port))
        # The client sends nothing more before this answer, so nothing of the tunnel sits in `reader`.
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        pump.start()
        _pump(client, upstream)
        pump.join(timeout=60)
        self._untrack(upstream)
        _close(upstream)

    def _forward(self, client: socket.socket, reader: BinaryIO, method: str, target: str,
                 headers: list[tuple[bytes, bytes]]) -> bool:
        """Forward one absolute-URI request on a connection of its own, and its answer back; False when
        the client connection must close (an answer framed by the close)."""
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            _skip_body(reader, headers)
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return True
        host, port = parts.hostname, parts.port or 80
        try:
            upstream = self._connect(host, port)
        except OSError:
            _skip_body(reader, headers)
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return True
        try:
            self._count(host, port)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]
            lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), *(n + b": " + v for n, v in kept),
                     b"Via: " + VIA.encode(), b"Connection: close"]
            upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            _relay_body(reader, upstream.sendall, headers, response=False)
            upstream_reader = upstream.makefile("rb")
            head = _read_head(upstream_reader)
            while head is not None and head[0].split(b" ")[1].startswith(b"1"):  # 1xx: pass on, then the answer
                client.sendall(b"\r\n".join(head) + b"\r\n\r\n")
                head = _read_head(upstream_reader)
            if head is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return True
            status = int(head[0].split(b" ")[1])
            answer = [(n, v) for n, v in _headers(head[1:]) if n.lower() not in HOP_BY_HOP]
            client.sendall(b"\r\n".join([head[0], *(n + b": " + v for n, v in answer), b"Via: " + VIA.encode()])
                           + b"\r\n\r\n")
            bodiless = method == "HEAD" or status in (204, 304)
            return not _relay_body(upstream_reader, client.sendall, answer, response=not bodiless)
        finally:
            self._untrack(upstream)
            _close(upstream)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def _read_head(reader: BinaryIO) -> list[bytes] | None:
    lines = []
    while True:
        line = reader.readline(65536)
        if not line:
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            if lines:
                return lines
            continue
        lines.append(line)


def _headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    pairs = []
    for line in lines:
        name, _, value = line.partition(b":")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _relay_body(
    reader: BinaryIO, write: Callable[[bytes], None], headers: list[tuple[bytes, bytes]], response: bool
) -> bool:
    """Copy one message body by its framing; True when it was framed by the connection's close."""
    encoding = (_header(headers, b"transfer-encoding") or b"").lower()
    length = _header(headers, b"content-length")
    if b"chunked" in encoding:
        while True:
            size_line = reader.readline(65536)
            write(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = reader.readline(65536)
                    write(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return False
            _copy(reader, write, size + 2)
    if length is not None:
        _copy(reader, write, int(length))
        return False
    if not response:
        return False
    while True:
        data = reader.read1(CHUNK)  # type: ignore[attr-defined] - a BufferedReader
        if not data:
            return True
        write(data)


def _skip_body(reader: BinaryIO, headers: list[tuple[bytes, bytes]]) -> None:
    _relay_body(reader, lambda _data: None, headers, response=False)


def _copy(reader: BinaryIO, write: Callable[[bytes], None], size: int) -> None:
    while size > 0:
        data = reader.read(min(CHUNK, size))
        if not data:
            raise ConnectionError("the peer closed the connection inside a body")
        write(data)
        size -= len(data)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()

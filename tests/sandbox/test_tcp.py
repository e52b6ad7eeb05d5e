"""The sandbox's TCP connections: Nagle off, so a kept-alive request costs no delayed-ACK wait."""

from __future__ import annotations

import os
import socket

import psutil

from gateway.sandbox import SandboxServer


def _server_side_nodelay(server_port: int, client_port: int) -> int:
    """TCP_NODELAY of the server's end of the connection from `client_port`, read from its file descriptor
    (the sandbox runs in this process, so the accepted socket is one of ours)."""
    for connection in psutil.Process().net_connections(kind="tcp"):
        if connection.laddr and connection.raddr and connection.laddr.port == server_port \
                and connection.raddr.port == client_port:
            duplicate = socket.socket(fileno=os.dup(connection.fd))
            try:
                return duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            finally:
                duplicate.close()
    raise AssertionError(f"no accepted connection from port {client_port} on port {server_port}")


def test_the_server_side_of_an_accepted_connection_has_tcp_nodelay(sandbox: SandboxServer) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as client:
        client.sendall(b"GET /nowhere HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        assert client.recv(64).startswith(b"HTTP/1.1 404")
        assert _server_side_nodelay(sandbox.port, client.getsockname()[1]) != 0


"""The operations endpoint and the operator page over real HTTP: the page on a listener of its own,
national identity numbers masked on it, and both answering only the host names they are meant to
(a web page that rebinds its own name to 127.0.0.1 gets nothing)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.foundation.drops import make_folder_drop, sidecar_xml, write_config
from tests.foundation.process import status_files, wait_for
from tests.ops.support import OpsDaemon, edit_config

PERSON = "01017010170"  # a valid fødselsnummer (check digits right)
MISTYPED_PERSON = "01017010171"  # the same with a wrong last digit: rejected, and its error names it
MASKED = "010170*****"
PAGE = re.compile(r"operator page on (http://\S+)/")


def _daemon(tmp_path: Path, **ops: object) -> tuple[OpsDaemon, Path]:
    config = write_config(tmp_path)
    edit_config(config, ops={"enabled": True, "port": 0, "operator_page": True, "operator_port": 0, **ops})
    return OpsDaemon(config, tmp_path / "daemon.log").start(), config


def _page_url(daemon: OpsDaemon) -> str:
    daemon.endpoint()  # the ops endpoint is named first, the page right after it
    wait_for(lambda: PAGE.search(daemon.text()), 10, message="the log naming the operator page")
    return PAGE.findall(daemon.text())[-1]


def _get(url: str, host: str | None = None) -> httpx.Response:
    return httpx.get(url, headers={"Host": host} if host else None, timeout=10)


def _without_host(url: str) -> tuple[int, str]:
    """An HTTP/1.0 request with no Host header at all, on a raw socket."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(f"GET {parts.path or '/'} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _cli(config: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", command, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=config.parent)


def test_the_page_has_its_own_listener_and_masks_national_identity_numbers(tmp_path):
    daemon, _config = _daemon(tmp_path)
    outbox = tmp_path / "var" / "outbox"
    try:
        base, page = daemon.endpoint(), _page_url(daemon)
        assert urlsplit(page).port != urlsplit(base).port
        message_id = str(uuid.uuid4())
        make_folder_drop(outbox, f"brev-{PERSON}",
                         sidecar=sidecar_xml(receiver=PERSON, extra=f"<messageId>{message_id}</messageId>"))
        make_folder_drop(outbox, "feiltastet", sidecar=sidecar_xml(receiver=MISTYPED_PERSON))
        wait_for(lambda: len(status_files(tmp_path / "var" / "status")) == 2, 30, message="two status files")

        overview = _get(f"{page}/?state=all")
        assert overview.status_code == 200
        assert message_id in overview.text  # a message id is never taken for a number to hide
        assert f"brev-{MASKED}" in overview.text and MASKED in overview.text
        for target in ("/?state=all", f"/messages/{message_id}", f"/?state=all&receiver={PERSON}",
                       f"/messages/{PERSON}"):
            text = _get(page + target).text
            assert PERSON not in text and MISTYPED_PERSON not in text, target
        one = _get(f"{page}/messages/{message_id}").text
        assert f'<td id="receiver">{MASKED}</td>' in one
        # The filter takes the whole number and finds the message; the form shows it masked.
        filtered = _get(f"{page}/?state=all&receiver={PERSON}").text
        assert f'data-message-id="{message_id}"' in filtered and f'value="{MASKED}"' in filtered
        rejected = _get(f"{page}/?state=failed").text
        assert "010170***** is not a valid national identity number" in rejected

        # The operations address serves metrics and health, not the page.
        assert _get(f"{base}/").status_code == 404
        assert _get(f"{base}/messages/{message_id}").status_code == 404
        assert _get(f"{base}/metrics").status_code == 200
    finally:
        daemon.stop()


def test_only_the_allowed_host_names_are_answered(tmp_path):
    daemon, config = _daemon(tmp_path)
    try:
        base, page = daemon.endpoint(), _page_url(daemon)
        for url in (f"{base}/metrics", f"{base}/healthz", f"{base}/readyz", f"{page}/"):
            port = urlsplit(url).port
            for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
                assert _get(url, host).status_code in (200, 503), (url, host)
            refused = _get(url, f"rebound.example:{port}")
            assert refused.status_code == 421, url
            assert refused.text == ("efm-gateway: this endpoint does not answer to the host name 'rebound.example'; "
                                    "add it to ops.allowed_hosts if it is yours\n")
            assert _get(url, "127.0.0.1.rebound.example").status_code == 421
            code, body = _without_host(url)
            assert code == 421 and body.count("\n") == 1 and "(none)" in body
    finally:
        daemon.stop()

    edit_config(config, ops={"allowed_hosts": ["efm.kommune.example", "10.1.2.3"]})
    daemon = OpsDaemon(config, tmp_path / "daemon2.log").start()
    try:
        base, page = daemon.endpoint(), _page_url(daemon)
        for url in (f"{base}/metrics", f"{page}/"):
            assert _get(url, "efm.kommune.example").status_code == 200
            assert _get(url, f"10.1.2.3:{urlsplit(url).port}").status_code == 200
            assert _get(url).status_code == 421  # 127.0.0.1 is no longer one of them
    finally:
        daemon.stop()


@pytest.mark.parametrize(("ops", "expected"), [
    ({"operator_page": True}, "ops.operator_page is true but ops.enabled is false"),
    ({"enabled": True, "operator_page": True, "port": 9300, "operator_port": 9300},
     "ops.operator_port is ops.port (9300); give the operator page a port of its own"),
    ({"allowed_hosts": ["http://efm.kommune.example"]},
     "ops.allowed_hosts: 'http://efm.kommune.example' is not a host name or address"),
    ({"allowed_hosts": ["efm.kommune.example:9181"]},
     "ops.allowed_hosts: 'efm.kommune.example:9181' is not a host name or address"),
    ({"allowed_hosts": "efm.kommune.example"}, "ops.allowed_hosts must be a list of names"),
    ({"operator_port": 70000}, "ops.operator_port must be 0 (any free port) or a port number up to 65535"),
])
def test_ops_settings_are_checked_with_one_line(tmp_path, ops, expected):
    config = write_config(tmp_path)
    edit_config(config, ops=ops)
    result = _cli(config, "check-config")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_allowed_ipv6_hosts_are_accepted_with_or_without_brackets(tmp_path):
    config = write_config(tmp_path)
    edit_config(config, ops={"allowed_hosts": ["[::1]", "fd00::5", "efm.kommune.example"]})
    assert _cli(config, "check-config").returncode == 0


def test_a_page_port_already_taken_stops_the_start_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path)
        edit_config(config, ops={"enabled": True, "port": 0, "operator_page": True, "operator_port": port})
        result = _cli(config, "run")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"efm-gateway: ops.operator_address/ops.operator_port: cannot listen on 127.0.0.1:{port} (Address already "
        "in use); choose a free port (or 0 for any) or turn the page off with ops.operator_page: false"
    ]

"""gateway/outbound_http.py: which way each URL goes (the environment read as httpx and curl read it,
network.proxy and network.no_proxy over it), and real requests through a real proxy on loopback,
with the gateway's User-Agent, the proxy's credentials, and the metrics' wrapper seeing them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.config import Config, FoldersConfig, NetworkConfig, OrganisationConfig, SandboxConfig, load_config
from gateway.errors import ConfigError
from gateway.ops.httpwatch import HttpOutcomes, WatchedTransport
from gateway.outbound_http import masked, outbound_client, proxy_settings, user_agent

from .forward_proxy import VIA, ForwardProxy


def config(**network: str) -> Config:
    return Config(
        source=Path("/etc/efm-gateway/config.yaml"),
        organisation=OrganisationConfig("991825827"),
        folders=FoldersConfig(*[Path("/var/lib/efm-gateway")] * 6),
        network=NetworkConfig(**network),
    )


def way(url: str, environ: dict[str, str], **network: str) -> str:
    return str(proxy_settings(config(**network), environ).way_for(url))


# ---- which way a URL goes ------------------------------------------------------------------------------


def test_each_scheme_takes_its_own_proxy_and_all_proxy_the_rest():
    environ = {"HTTPS_PROXY": "http://secure:3128", "ALL_PROXY": "http://any:8080"}
    assert way("https://eformidling.no/x", environ) == "through the proxy http://secure:3128 (from HTTPS_PROXY)"
    assert way("http://svarut.ks.no/x", environ) == "through the proxy http://any:8080 (from ALL_PROXY)"
    assert way("http://svarut.ks.no/x", {"HTTPS_PROXY": "http://secure:3128"}) == (
        "direct (no proxy is set for http://)"
    )


def test_lower_case_names_win_and_an_empty_one_unsets_the_upper_case_one():
    assert way("https://a.no/", {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}) == (
        "through the proxy http://lower:2 (from https_proxy)"
    )
    assert way("https://a.no/", {"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}).startswith("direct")
    # A proxy given without a scheme is http://, as curl and httpx take it.
    assert way("https://a.no/", {"HTTPS_PROXY": "proxy.example.no:3128"}) == (
        "through the proxy http://proxy.example.no:3128 (from HTTPS_PROXY)"
    )


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("example.no", "https://example.no/x", True),
        ("example.no", "https://api.example.no/x", True),  # a domain takes its subdomains
        ("example.no", "https://notexample.no/x", False),
        (".example.no", "https://example.no/x", True),
        ("*.example.no", "https://a.b.example.no/x", True),
        ("10.0.0.0/8", "https://10.20.30.40/x", True),
        ("10.0.0.0/8", "https://11.0.0.1/x", False),
        ("fd00::/8", "https://[fd12::1]:8443/x", True),
        ("127.0.0.1", "http://127.0.0.1:9000/x", True),
        ("127.0.0.1", "http://127.0.0.2:9000/x", False),
        ("example.no:8443", "https://example.no:8443/x", True),
        ("example.no:8443", "https://example.no/x", False),
        ("*", "https://anything.no/x", True),
        ("", "https://anything.no/x", False),
        (" other.no , EXAMPLE.NO ", "https://example.no/x", True),
    ],
)
def test_no_proxy_names_hosts_domains_addresses_and_networks(no_proxy, url, direct):
    environ = {"HTTP_PROXY": "http://p:1", "HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    assert way(url, environ).startswith("direct") is direct
    assert way(url, {"HTTPS_PROXY": "http://p:1", "HTTP_PROXY": "http://p:1"}, no_proxy=no_proxy).startswith(
        "direct"
    ) is direct


def test_network_proxy_replaces_the_whole_environment():
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "example.no"}
    assert way("https://example.no/x", environ, proxy="http://corp:3128") == (
        "through the proxy http://corp:3128 (from network.proxy)"
    )
    assert way("http://plain.no/x", environ, proxy="http://corp:3128").startswith("through the proxy http://corp")
    assert way("https://example.no/x", environ, proxy="http://corp:3128", no_proxy="example.no") == (
        "direct (network.no_proxy names example.no)"
    )
    # network.no_proxy alone replaces NO_PROXY for the environment's proxy.
    assert way("https://example.no/x", environ, no_proxy="other.no").startswith("through the proxy http://env")


def test_the_built_in_sandbox_is_reached_directly_whatever_the_environment():
    sandboxed = Config(**{**config().__dict__, "sandbox": SandboxConfig(enabled=True)})
    settings = proxy_settings(sandboxed, {"HTTP_PROXY": "http://p:1"})
    assert str(settings.way_for("http://127.0.0.1:8080/sr")) == (
        "direct (the built-in sandbox (sandbox.enabled) runs in this process)"
    )


def test_credentials_never_show_in_a_proxy_line():
    assert masked("http://user:s3cret@proxy.example.no:3128") == "http://***@proxy.example.no:3128"
    assert masked("http://proxy.example.no:3128") == "http://proxy.example.no:3128"
    assert way("https://a.no/", {"HTTPS_PROXY": "http://user:s3cret@p:3128"}) == (
        "through the proxy http://***@p:3128 (from HTTPS_PROXY)"
    )


def test_a_proxy_variable_that_is_no_proxy_url_stops_with_one_line_naming_it():
    for value, words in (("ftp://user:s3cret@p:21", "is not a proxy URL"), ("socks5://user:s3cret@p:1080", "socksio")):
        with pytest.raises(ConfigError) as caught:
            proxy_settings(config(), {"ALL_PROXY": value})
        message = str(caught.value)
        assert message.startswith("ALL_PROXY (") and words in message and "s3cret" not in message
        assert "\n" not in message


# ---- config.yaml's keys --------------------------------------------------------------------------------


def _load(tmp_path: Path, **network: object) -> Config:
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {key: f"var/{key}" for key in ("outbox", "status", "inbox", "failed", "sent", "state")},
        "network": network,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def test_network_proxy_must_be_an_http_url_and_its_password_is_not_repeated(tmp_path):
    assert _load(tmp_path, proxy="https://u:p@proxy.example.no:3128").network.proxy == (
        "https://u:p@proxy.example.no:3128"
    )
    for value, found in (("socks5://u:s3cret@p:1080", "the scheme 'socks5'"), ("proxy.example.no:3128", "no scheme"),
                         ("http://u:s3cret@p:port", "a port that is not a number"), ("http://", "no host")):
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, proxy=value)
        message = str(caught.value)
        assert "network.proxy must be an http(s) URL" in message and found in message, message
        assert "s3cret" not in message and "\n" not in message


def test_network_no_proxy_networks_are_checked(tmp_path):
    assert _load(tmp_path, no_proxy="example.no, 10.0.0.0/8, fd00::/8").network.no_proxy
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, no_proxy="example.no, 10.0.0.0/33")
    assert "network.no_proxy: '10.0.0.0/33' is not a network" in str(caught.value)


# ---- real requests through a real proxy ----------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Answers with the headers that matter here; POST echoes the body (length-framed or chunked)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(json.dumps({"user_agent": self.headers.get("User-Agent"), "via": self.headers.get("Via")}))

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(body.decode())

    def _answer(self, text: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_pass_the_proxy_with_its_credentials_and_name_the_gateway(echo, proxy):
    environ = {"HTTP_PROXY": proxy.url_with_credentials(), "NO_PROXY": ""}
    with outbound_client(config(), 10, environ=environ) as client:
        answer = client.get(f"{echo}/sr/identifier/910075918").json()
        assert client.post(f"{echo}/upload", content=b"a body of known length").text == "a body of known length"
        assert client.post(f"{echo}/upload", content=iter([b"streamed ", b"in chunks"])).text == "streamed in chunks"
    assert answer == {"user_agent": user_agent(), "via": VIA}
    assert user_agent().startswith("efm-gateway/") and user_agent() != "efm-gateway/"
    assert proxy.requests == {echo.removeprefix("http://"): 3}
    assert proxy.refused == 0


def test_a_proxy_without_the_credentials_refuses_and_no_proxy_goes_around_it(echo, proxy):
    with outbound_client(config(), 10, environ={"HTTP_PROXY": proxy.url}) as client:
        assert client.get(f"{echo}/x").status_code == 407
    assert proxy.refused == 1
    with outbound_client(config(), 10, environ={"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}) as client:
        assert client.get(f"{echo}/x").json() == {"user_agent": user_agent(), "via": None}
    assert proxy.total() == 0


def test_the_metrics_wrapper_sees_the_requests_that_go_through_the_proxy(echo, proxy):
    outcomes = HttpOutcomes({"service_registry": f"{echo}/sr"})
    wrap = lambda transport: WatchedTransport(transport, outcomes)  # noqa: E731
    with outbound_client(config(), 10, environ={"HTTP_PROXY": proxy.url_with_credentials()}, wrap=wrap) as client:
        client.get(f"{echo}/sr/identifier/910075918")
    _errors, last = outcomes.snapshot()
    assert last["service_registry"].detail == "OK"
    assert proxy.total() == 1
    # A proxy that is not there: the wrapper counts the failure against the endpoint the request was for.
    with ForwardProxy() as gone:
        dead = gone.url
    unreachable = outbound_client(config(), 10, environ={"HTTP_PROXY": dead}, wrap=wrap)
    with unreachable, pytest.raises(httpx.ConnectError):
        unreachable.get(f"{echo}/sr/identifier/910075918")
    errors, last = outcomes.snapshot()
    assert errors == {("service_registry", "connect", ""): 1}
    assert last["service_registry"].reachable is False

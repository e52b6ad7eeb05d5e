"""Every outbound HTTP client of the daemon and the CLI, built in one place: the way out (a proxy from
`network.proxy` or the environment, with the hosts that go direct), the trust for TLS (the default CAs
plus `network.tls_ca_bundle`) and the User-Agent.

httpx reads HTTP(S)_PROXY only when it builds its own transport; the daemon wraps its transports (the
metrics see every request), so the routing is done here, by one transport that picks a proxied or a
direct connection pool per request. The environment is read as httpx and curl read it: lower-case
names first (`https_proxy`, then `HTTPS_PROXY`), ALL_PROXY for any scheme without its own, NO_PROXY
as a comma list of hosts, domains (their subdomains too), IP addresses and CIDR networks, `*` for all.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from gateway.config import Config
from gateway.errors import ConfigError

FALLBACK_VERSION = "0.1.0"
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's own default
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")

Wrap = Callable[[httpx.BaseTransport], httpx.BaseTransport]


def user_agent() -> str:
    """`efm-gateway/<version>`: every request says which gateway made it (a proxy's or a service's log)."""
    try:
        version = metadata.version("efm-gateway")
    except metadata.PackageNotFoundError:
        version = FALLBACK_VERSION
    return f"efm-gateway/{version}"


def masked(url: str) -> str:
    """`url` without the user name and password it may carry: a proxy URL fit for a log line."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


@dataclass(frozen=True)
class Proxy:
    url: str  # may hold credentials: only the transport sees it whole
    source: str  # the setting it comes from: network.proxy, HTTPS_PROXY, all_proxy...

    def __str__(self) -> str:
        return f"{masked(self.url)} (from {self.source})"


@dataclass(frozen=True)
class Way:
    """How one URL is reached: through `proxy`, or direct (and why)."""

    proxy: Proxy | None
    reason: str = ""

    def __str__(self) -> str:
        if self.proxy is not None:
            return f"through the proxy {self.proxy}"
        return f"direct ({self.reason})" if self.reason else "direct"


@dataclass(frozen=True)
class ProxySettings:
    by_scheme: Mapping[str, Proxy] = field(default_factory=dict)  # "http", "https" -> the proxy for that scheme
    no_proxy: tuple[str, ...] = ()
    no_proxy_source: str = ""
    direct_reason: str = ""  # set when nothing goes through a proxy, for the log line

    @property
    def proxies(self) -> list[Proxy]:
        return list({proxy.url: proxy for proxy in self.by_scheme.values()}.values())

    def way_for(self, url: httpx.URL | str) -> Way:
        url = httpx.URL(url) if isinstance(url, str) else url
        proxy = self.by_scheme.get(url.scheme)
        if proxy is None:
            return Way(None, self.direct_reason or f"no proxy is set for {url.scheme}://")
        entry = _bypass_entry(self.no_proxy, url)
        if entry is not None:
            return Way(None, f"{self.no_proxy_source} names {entry}")
        return Way(proxy)


def proxy_settings(config: Config, environ: Mapping[str, str] | None = None) -> ProxySettings:
    """The proxies `config` and the environment give; `network.proxy` wins over the environment whole."""
    network = config.network
    if config.sandbox.enabled:
        # The built-in sandbox runs in this very process on loopback: no proxy stands between them.
        return ProxySettings(direct_reason="the built-in sandbox (sandbox.enabled) runs in this process")
    if network.proxy:
        proxy = _checked(Proxy(network.proxy, "network.proxy"))
        return ProxySettings({"http": proxy, "https": proxy}, _entries(network.no_proxy), "network.no_proxy")
    environ = os.environ if environ is None else environ
    found = {name: _from_environment(environ, name) for name in ("http", "https", "all")}
    by_scheme = {}
    for scheme in ("http", "https"):
        chosen = found[scheme] or found["all"]
        if chosen is not None:
            variable, value = chosen
            by_scheme[scheme] = _checked(Proxy(value, variable))
    if network.no_proxy is not None:
        no_proxy, source = _entries(network.no_proxy), "network.no_proxy"
    else:
        variable = _from_environment(environ, "no")
        no_proxy, source = (_entries(variable[1]), variable[0]) if variable else ((), "NO_PROXY")
    reason = "" if by_scheme else "no proxy is set: network.proxy, HTTPS_PROXY, HTTP_PROXY, ALL_PROXY"
    return ProxySettings(by_scheme, no_proxy, source, reason)


def default_tls_context() -> ssl.SSLContext:
    """httpx's default trust (certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR), built once per process and
    environment: reading the CA file is most of what a client costs to make."""
    return _tls_context(None, None, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


def tls_context(config: Config) -> ssl.SSLContext:
    """httpx's default trust (certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR) plus `network.tls_ca_bundle`; one
    context per process for the same trust (the bundle's content is told by its modification time)."""
    bundle = config.network.tls_ca_bundle
    try:
        changed = bundle.stat().st_mtime_ns if bundle is not None else None
    except OSError:
        changed = None  # _tls_context says why it cannot be read
    return _tls_context(bundle, changed, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _tls_context(
    bundle: Path | None, changed: int | None, cert_file: str | None, cert_dir: str | None
) -> ssl.SSLContext:
    # cert_file and cert_dir are the environment httpx reads: they key the cache, httpx reads them itself.
    context = httpx.create_ssl_context(verify=True, trust_env=True)
    if bundle is not None:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"network.tls_ca_bundle ({bundle}) cannot be read as PEM CA certificates: {exc}"
            ) from None
    return context


def outbound_client(
    config: Config,
    timeout: float | httpx.Timeout,
    connections: int | None = None,
    wrap: Wrap | None = None,
    environ: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An httpx.Client that takes the configured way out, trusts the configured CAs and names itself.
    `connections` sizes each connection pool (httpx's default without it); `wrap` wraps the whole
    transport (the daemon's metrics), so it sees every request, proxied or not."""
    settings = proxy_settings(config, environ)
    tls = tls_context(config)
    limits = DEFAULT_LIMITS if connections is None else httpx.Limits(
        max_connections=connections + 2, max_keepalive_connections=connections + 2
    )

    def pool(proxy: Proxy | None) -> httpx.BaseTransport:
        if proxy is None:
            return httpx.HTTPTransport(verify=tls, limits=limits)
        # An https:// proxy is itself reached over TLS, with the same trust.
        proxy_tls = tls if proxy.url.lower().startswith("https://") else None
        return httpx.HTTPTransport(verify=tls, limits=limits, proxy=httpx.Proxy(proxy.url, ssl_context=proxy_tls))

    transport: httpx.BaseTransport = RoutedTransport(settings, pool)
    if wrap is not None:
        transport = wrap(transport)
    # trust_env=False: the environment's proxies are read above; a transport of our own makes httpx skip them.
    return httpx.Client(
        timeout=timeout, transport=transport, headers={"User-Agent": user_agent()}, trust_env=False
    )


class RoutedTransport(httpx.BaseTransport):
    """One connection pool per proxy and one direct; each request goes to the one its URL's way names."""

    def __init__(self, settings: ProxySettings, pool: Callable[[Proxy | None], httpx.BaseTransport]) -> None:
        self.settings = settings
        self._direct = pool(None)
        self._proxied = {proxy.url: pool(proxy) for proxy in settings.proxies}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        way = self.settings.way_for(request.url)
        transport = self._direct if way.proxy is None else self._proxied[way.proxy.url]
        return transport.handle_request(request)

    def close(self) -> None:
        self._direct.close()
        for transport in self._proxied.values():
            transport.close()


def _from_environment(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of `<name>_proxy`, else `<NAME>_PROXY`; a lower-case name set empty unsets it, as
    Python's urllib (and so httpx) reads it."""
    for variable in (f"{name}_proxy", f"{name.upper()}_PROXY"):
        if variable in environ:
            value = environ[variable].strip()
            return (variable, value) if value else None
    return None


def _checked(proxy: Proxy) -> Proxy:
    url = proxy.url if "://" in proxy.url else f"http://{proxy.url}"  # "proxy:3128", as curl and httpx take it
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        scheme, host = "", None
    if scheme not in PROXY_SCHEMES or not host:
        raise ConfigError(
            f"{proxy.source} ({masked(url)}) is not a proxy URL; give http://host:port (or https://, socks5://)"
        )
    if scheme.startswith("socks"):
        try:
            import socksio  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{proxy.source} ({masked(url)}) names a SOCKS proxy, which needs the Python package socksio "
                "(pip install 'httpx[socks]'); or give an http:// proxy"
            ) from None
    return Proxy(url, proxy.source)


def _entries(text: str | None) -> tuple[str, ...]:
    return tuple(entry.strip().lower() for entry in (text or "").split(",") if entry.strip())


def _bypass_entry(entries: tuple[str, ...], url: httpx.URL) -> str | None:
    """The NO_PROXY entry that sends `url` direct, or None."""
    host = url.host.lower().strip("[]").rstrip(".")
    address = _address(host)
    for entry in entries:
        if entry == "*":
            return entry
        target = entry
        if "://" in target:
            scheme, _, target = target.partition("://")
            if scheme != url.scheme:
                continue
        if "/" in target:  # a CIDR network
            try:
                if address is not None and address in ipaddress.ip_network(target, strict=False):
                    return entry
            except ValueError:
                pass
            continue
        name, port = _split_port(target)
        if port is not None and port != (url.port or {"http": 80, "https": 443}.get(url.scheme)):
            continue
        if address is not None:
            if _address(name) == address:
                return entry
            continue
        domain = name.removeprefix("*").lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return entry
    return None


def _split_port(target: str) -> tuple[str, int | None]:
    """"host:port", "[v6]:port", "v6" or "host" -> (host, port)."""
    if target.startswith("["):
        name, _, rest = target[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if target.count(":") == 1:
        name, _, port = target.partition(":")
        return name, int(port) if port.isdigit() else None
    return target, None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def describe_tls(config: Config) -> str:
    """The line that says what outbound TLS trusts."""
    bundle: Path | None = config.network.tls_ca_bundle
    if bundle is None:
        return "tls: the default CAs (network.tls_ca_bundle not set)"
    return f"tls: the default CAs plus those in network.tls_ca_bundle ({bundle})"


__all__ = [
    "Proxy",
    "ProxySettings",
    "RoutedTransport",
    "Way",
    "describe_tls",
    "masked",
    "outbound_client",
    "proxy_settings",
    "tls_context",
    "user_agent",
]

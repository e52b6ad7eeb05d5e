"""Start-up checks beyond config.yaml's own: the keys against the trust store, the certificate's
remaining life, and whether the network answers (a warning: intake runs and messages wait)."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from gateway.channels.registry import KINDS
from gateway.config import Config
from gateway.credentials import load_identity, load_trust
from gateway.errors import ConfigError, SecurityError
from gateway.ops.httpwatch import HttpOutcomes
from gateway.outbound_http import Way, describe_tls, outbound_client, proxy_settings

EXPIRY_WARNING = timedelta(days=30)
PROBE_TIMEOUT_S = 3.0  # check-config runs before every start (ExecStartPre): keep it short


def keystore_warnings(config: Config, now: datetime) -> list[str]:
    """Check the keystore and the trust store together; ConfigError stops the start, warnings do not."""
    identity = load_identity(config, now)
    trust = load_trust(config)
    try:
        trust.verify(identity.certificate, identity.chain, at=now)
    except SecurityError as exc:
        raise ConfigError(
            f"trust.ca_bundle ({config.trust.ca_bundle}) does not hold the CA that signed our own certificate "
            f"({identity.certificate.issuer.rfc4514_string()}): {exc}; add that CA (and its intermediates) to the "
            "bundle, or receivers' answers signed by the same CA will be refused"
        ) from None
    warnings = []
    left = identity.certificate.not_valid_after_utc - now
    if left < EXPIRY_WARNING:
        warnings.append(
            f"keystore: the certificate expires on {identity.certificate.not_valid_after_utc:%Y-%m-%d} "
            f"(in {max(0, left.days)} days); order a new enterprise certificate and replace it before then"
        )
    return warnings


def network_endpoints(config: Config) -> dict[str, str]:
    """The URLs the daemon talks to, by config key: the registry, the token endpoint, and the URLs every enabled
    channel names as its own (its settings' url_keys), so a channel added is probed and measured with no edit here."""
    urls = {
        "network.service_registry_url": config.network.service_registry_url,
        "network.token_url": config.network.token_url,
    }
    for key, block in config.channels.enabled().items():
        urls.update(KINDS[key].endpoint_keys(block))
    return {key: url for key, url in urls.items() if url}


def endpoint_names(config: Config) -> dict[str, str]:
    """The same URLs by short name, the metrics' and /healthz's labels: service_registry, token, and each channel's
    labels (its key where it has one URL, else the key and the URL's name)."""
    names = {
        key.split(".")[1].removesuffix("_url"): url
        for key, url in network_endpoints(config).items() if key.startswith("network.")
    }
    for key, block in config.channels.enabled().items():
        names.update(KINDS[key].endpoints(block))
    return names


def outbound_lines(config: Config) -> list[str]:
    """How the endpoints are reached, grouped by way (through which proxy, its credentials masked, or
    direct and why), and what outbound TLS trusts: for check-config and the start-up log."""
    settings = proxy_settings(config)
    keys_by_way: dict[str, list[str]] = {}
    for key, url in network_endpoints(config).items():
        keys_by_way.setdefault(str(settings.way_for(url)), []).append(key)
    lines = [f"outbound: {way} for {', '.join(keys)}" for way, keys in keys_by_way.items()]
    return [*lines, f"outbound {describe_tls(config)}"]


def reachability_warnings(
    config: Config, timeout: float = PROBE_TIMEOUT_S, outcomes: HttpOutcomes | None = None
) -> list[str]:
    """One line per endpoint that does not answer at all; any HTTP answer (401, 404...) counts as reachable.
    The probe takes the daemon's way out (outbound_http): through its proxy when it has one."""
    warnings = []
    settings = proxy_settings(config)
    with outbound_client(config, timeout) as client:
        for key, url in network_endpoints(config).items():
            try:
                answer = client.get(url)
                if outcomes is not None:
                    outcomes.note_probe(url, True, f"HTTP {answer.status_code} at start")
            except httpx.HTTPError as exc:
                if outcomes is not None:
                    outcomes.note_probe(url, False, f"{type(exc).__name__} at start")
                warnings.append(
                    f"{key} ({url}) {_why_unreachable(settings.way_for(url), exc)}; intake keeps running and "
                    "messages wait until it does"
                )
    return warnings


def _why_unreachable(way: Way, exc: httpx.HTTPError) -> str:
    name = type(exc).__name__
    if way.proxy is None:
        return f"does not answer ({name})"
    if isinstance(exc, httpx.ProxyError):
        return f"cannot be reached: the proxy {way.proxy} would not connect to it ({name}: {exc})"
    # With a proxy, every connection goes to the proxy: a failed connection is the proxy's.
    if isinstance(exc, httpx.ConnectError):
        return f"cannot be reached: no connection to the proxy {way.proxy} ({name}: {exc})"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot be reached: the proxy {way.proxy} does not answer ({name})"
    return f"does not answer through the proxy {way.proxy} ({name})"

"""`efm-gateway check-config` says which way out it takes (the proxy's credentials masked) and probes
the network through it: a live proxy carries the probes, a dead one is named as what fails,
NO_PROXY sends the probes direct, and `network.proxy` wins over the environment."""

from __future__ import annotations

import socket

from .forward_proxy import VIA, ForwardProxy
from .support import check_config, config_for, environment_without_proxies

A = "991825827"
PROBED = ("network.service_registry_url", "network.token_url", "channels.dpo.broker_url",
          "channels.dpv.correspondence_url", "channels.dpf.svarut_url", "channels.dpf.svarinn_url",
          "channels.dpi.corner2_url", "channels.dpi.print_certificate_url")


def dead_port() -> int:
    """A port on loopback where nothing listens (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sandbox_host(network) -> str:
    return network.url.removeprefix("http://")


def test_check_config_names_the_masked_proxy_and_probes_through_it(shared_network, proxy, tmp_path):
    network, observer = shared_network
    observer.clear()
    config = config_for(tmp_path, network, A)
    env = environment_without_proxies(HTTP_PROXY=proxy.url_with_credentials(),
                                      HTTPS_PROXY=proxy.url_with_credentials(), NO_PROXY="")
    result = check_config(config, env)

    assert result.returncode == 0, result.stderr
    masked = f"http://***@127.0.0.1:{proxy.port} (from HTTP_PROXY)"
    assert f"outbound: through the proxy {masked} for {', '.join(PROBED)}" in result.stdout
    assert "warning" not in result.stdout
    assert "pr0xy-s3cret" not in result.stdout + result.stderr
    # Each endpoint was asked once, through the proxy, with its credentials (none refused) ...
    assert proxy.requests == {_sandbox_host(network): len(PROBED)}
    assert proxy.refused == 0
    # ... and the sandbox saw the probes come from the proxy, naming the gateway.
    probes = [seen for seen in observer.seen() if seen.user_agent.startswith("efm-gateway/")]
    assert len(probes) == len(PROBED)
    assert all(seen.via == VIA and seen.client_port in proxy.upstream_ports for seen in probes)


def test_a_proxy_that_refuses_connections_is_named_in_the_probe_lines(shared_network, tmp_path):
    network, _observer = shared_network
    config = config_for(tmp_path, network, A)
    port = dead_port()
    env = environment_without_proxies(HTTP_PROXY=f"http://gateway:pr0xy-s3cret@127.0.0.1:{port}", NO_PROXY="")
    result = check_config(config, env)

    assert result.returncode == 0, result.stderr  # a warning: intake runs, messages wait
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(PROBED), result.stdout
    for key, line in zip(PROBED, warnings, strict=True):
        assert line.startswith(f"warning: {key} (")
        assert f"no connection to the proxy http://***@127.0.0.1:{port} (from HTTP_PROXY)" in line
        assert "Connection refused" in line
    assert "pr0xy-s3cret" not in result.stdout + result.stderr


def test_no_proxy_naming_the_sandbox_host_sends_the_probes_direct(shared_network, proxy, tmp_path):
    network, observer = shared_network
    observer.clear()
    config = config_for(tmp_path, network, A)
    env = environment_without_proxies(HTTP_PROXY=proxy.url, NO_PROXY="example.org,127.0.0.1")
    result = check_config(config, env)

    assert result.returncode == 0, result.stderr
    assert f"outbound: direct (NO_PROXY names 127.0.0.1) for {', '.join(PROBED)}" in result.stdout
    assert "warning" not in result.stdout
    assert proxy.total() == 0
    probes = [seen for seen in observer.seen() if seen.user_agent.startswith("efm-gateway/")]
    assert len(probes) == len(PROBED)
    assert all(seen.via is None and not seen.from_this_process for seen in probes)


def test_network_proxy_wins_over_the_environment(shared_network, proxy, tmp_path):
    network, _observer = shared_network
    with ForwardProxy() as other:
        config = config_for(tmp_path, network, A, network={"proxy": proxy.url_with_credentials()})
        # The environment names another proxy and would send the sandbox host direct: both are overridden.
        env = environment_without_proxies(HTTP_PROXY=other.url, NO_PROXY="127.0.0.1")
        result = check_config(config, env)
        assert other.total() == 0

    assert result.returncode == 0, result.stderr
    assert f"through the proxy http://***@127.0.0.1:{proxy.port} (from network.proxy)" in result.stdout
    assert "warning" not in result.stdout
    assert proxy.requests == {_sandbox_host(network): len(PROBED)}
    assert "pr0xy-s3cret" not in result.stdout + result.stderr


def test_network_no_proxy_replaces_no_proxy_and_takes_cidr_networks(shared_network, proxy, tmp_path):
    network, _observer = shared_network
    config = config_for(tmp_path, network, A, network={"no_proxy": "10.0.0.0/8, 127.0.0.0/8"})
    env = environment_without_proxies(HTTP_PROXY=proxy.url, NO_PROXY="example.org")
    result = check_config(config, env)

    assert result.returncode == 0, result.stderr
    assert "outbound: direct (network.no_proxy names 127.0.0.0/8)" in result.stdout
    assert proxy.total() == 0


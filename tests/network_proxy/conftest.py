"""The sandbox network in the test process, observed, and reached directly by its own peers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.sandbox.network import SandboxNetwork, start_network
from gateway.sandbox.server import SandboxServer

from .forward_proxy import ForwardProxy
from .support import PROXY_VARIABLES, SandboxObserver


@contextmanager
def observed_network(data: Path, reply: bool) -> Iterator[tuple[SandboxNetwork, SandboxObserver]]:
    observer = SandboxObserver()
    with pytest.MonkeyPatch.context() as patch:
        # The sandbox's own peers run here: they must not take a proxy the machine may have set.
        for name in list(os.environ):
            if name.lower() in PROXY_VARIABLES:
                patch.delenv(name)
        with pytest.MonkeyPatch.context() as observing:
            build = SandboxServer._build_app
            observing.setattr(SandboxServer, "_build_app", lambda server: observer.wrap(build(server)))
            network = start_network(data, reply=reply)
        try:
            yield network, observer
        finally:
            network.stop()


@pytest.fixture(scope="module")
def shared_network(tmp_path_factory) -> Iterator[tuple[SandboxNetwork, SandboxObserver]]:
    """One network for tests that only probe it (check-config); each test clears the observer."""
    with observed_network(tmp_path_factory.mktemp("proxy-network"), reply=False) as pair:
        yield pair


@pytest.fixture
def network(tmp_path) -> Iterator[tuple[SandboxNetwork, SandboxObserver]]:
    """A network of its own, whose peers reply, for tests that run gateways."""
    with observed_network(tmp_path / "sandbox", reply=True) as pair:
        yield pair


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=("gateway", "pr0xy-s3cret")) as running:
        yield running

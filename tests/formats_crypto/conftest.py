"""A dev PKI shared by the crypto format tests, and a second one nobody trusts."""

from __future__ import annotations

import pytest

from gateway.devcerts import DevPki, create_dev_pki, dev_identity
from gateway.formats.keys import OrgIdentity, TrustStore

from .support import RECEIVER, SENDER


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), {SENDER: "Avsender Test AS", RECEIVER: "Mottaker Test AS"})


@pytest.fixture(scope="session")
def stranger_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("stranger-pki"), {SENDER: "Falsk Avsender AS"})


@pytest.fixture(scope="session")
def sender(pki: DevPki) -> OrgIdentity:
    return dev_identity(pki, SENDER)


@pytest.fixture(scope="session")
def receiver(pki: DevPki) -> OrgIdentity:
    return dev_identity(pki, RECEIVER)


@pytest.fixture(scope="session")
def trust(pki: DevPki) -> TrustStore:
    return TrustStore.from_pem_files([pki.trust_bundle])

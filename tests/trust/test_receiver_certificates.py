"""The receiver's certificate is checked before we encrypt to it: against a running sandbox network, whose
dev CA publishes its CRLs and answers OCSP on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from gateway.devcerts import create_dev_pki, dev_identity, issue_identity, key_usage, revoke
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.sandbox.network import SandboxNetwork, start_network
from gateway.trust.policy import SANDBOX_SVARUT_ORGNR
from gateway.trust.receivers import ReceiverTrust
from gateway.trust.revocation import RevocationSource
from gateway.trust.store import Revocation, TrustStore

A, B = "991825827", "910077473"
HOST = "944444440"  # receives for B in trust.served_by


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxNetwork]:
    with start_network(tmp_path_factory.mktemp("receiver-certs"), peers=()) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def receivers(bundle: Path, http: httpx.Client, policy: str = "refuse", recheck_seconds: float = 0.0,
              monotonic: Callable[[], float] = time.monotonic) -> ReceiverTrust:
    trust = TrustStore.from_pem_files([bundle], Revocation(policy, RevocationSource(http),
                                                          recheck_seconds=recheck_seconds), monotonic)
    return ReceiverTrust(trust, served_by={B: (HOST,)}, svarut_orgnr=SANDBOX_SVARUT_ORGNR)


def test_the_receivers_own_good_certificate_is_used_and_named(network: SandboxNetwork, http: httpx.Client) -> None:
    certificate = dev_identity(network.pki, B).certificate
    checked = receivers(network.pki.trust_bundle, http).check(B, pem(certificate))
    assert checked.certificate == certificate and checked.owner == B
    assert checked.note == f"encrypted to {B}'s own certificate (serial {certificate.serial_number:x})"


def test_another_organisations_certificate_is_refused_with_both_numbers(network: SandboxNetwork,
                                                                        http: httpx.Client) -> None:
    with pytest.raises(PermanentChannelError,
                       match=rf"the registry gave a certificate for {A}, not the receiver {B}; .*trust.served_by"):
        receivers(network.pki.trust_bundle, http).check(B, pem(dev_identity(network.pki, A).certificate))


def test_another_organisation_is_accepted_where_the_record_or_served_by_says_so(network: SandboxNetwork,
                                                                              http: httpx.Client) -> None:
    trust = receivers(network.pki.trust_bundle, http)
    parent = dev_identity(network.pki, A).certificate
    by_record = trust.check(B, pem(parent), record_orgnr=A)
    assert by_record.owner == A and f"the service record names {A} as the integration point of {B}" in by_record.note
    host = issue_identity(network.pki, HOST, "Vertskommune").certificate
    by_config = trust.check(B, pem(host))
    assert f"trust.served_by lets {HOST} receive for {B}" in by_config.note


def test_an_expired_certificate_is_refused(network: SandboxNetwork, http: httpx.Client) -> None:
    now = datetime.now(UTC)
    expired = issue_identity(network.pki, B, "Utgått", not_before=now - timedelta(days=400),
                             not_after=now - timedelta(days=1)).certificate
    with pytest.raises(PermanentChannelError, match=r"refused before encrypting: .* has expired: valid until"):
        receivers(network.pki.trust_bundle, http).check(B, pem(expired))


def test_a_certificate_revoked_by_ocsp_is_refused(network: SandboxNetwork, http: httpx.Client) -> None:
    certificate = issue_identity(network.pki, B, "Tilbakekalt").certificate
    trust = receivers(network.pki.trust_bundle, http)
    trust.check(B, pem(certificate))  # good before the CA revokes it
    revoke(network.pki, certificate)
    with pytest.raises(PermanentChannelError, match=r"is revoked: OCSP response indicates .* revoked"):
        trust.check(B, pem(certificate))


def test_a_certificate_that_passed_stands_for_the_recheck_window_then_its_revocation_shows(
    network: SandboxNetwork, http: httpx.Client
) -> None:
    now = [0.0]
    certificate = issue_identity(network.pki, B, "Tilbakekalt senere").certificate
    trust = receivers(network.pki.trust_bundle, http, recheck_seconds=60, monotonic=lambda: now[0])
    trust.check(B, pem(certificate))
    revoke(network.pki, certificate)
    now[0] = 59.0
    assert trust.check(B, pem(certificate)).owner == B  # checked 59 s ago: not asked again
    with pytest.raises(PermanentChannelError, match="the registry gave a certificate for"):
        trust.check(A, pem(certificate))  # whose it is, and its validity and usage, are checked at every use
    now[0] = 61.0
    with pytest.raises(PermanentChannelError, match=r"is revoked: OCSP response indicates .* revoked"):
        trust.check(B, pem(certificate))


def test_a_certificate_accepted_only_with_a_warning_is_asked_about_at_every_use(http: httpx.Client,
                                                                               tmp_path: Path) -> None:
    silent = create_dev_pki(tmp_path / "silent", {B: "Mottaker"})
    certificate = pem(dev_identity(silent, B).certificate)
    trust = receivers(silent.trust_bundle, http, "warn", recheck_seconds=60, monotonic=lambda: 0.0)
    for _ in range(2):
        assert "accepted because trust.revocation is warn" in trust.check(B, certificate).note


def test_a_certificate_revoked_in_the_crl_is_refused_and_the_crl_is_kept_until_its_next_update(
    network: SandboxNetwork, http: httpx.Client
) -> None:
    first = issue_identity(network.pki, B, "Bare CRL", ocsp=False).certificate
    second = issue_identity(network.pki, B, "Bare CRL 2", ocsp=False).certificate
    revoke(network.pki, first)
    trust = receivers(network.pki.trust_bundle, http)
    with pytest.raises(PermanentChannelError, match=r"is revoked: CRL indicates .* revoked"):
        trust.check(B, pem(first))
    source = trust.trust.revocation.source  # type: ignore[union-attr]
    fetched = source.crls.fetches
    revoke(network.pki, second)
    trust.check(B, pem(second))  # the CRL fetched a moment ago is good until its nextUpdate (an hour)
    assert source.crls.fetches == fetched


def test_a_self_signed_certificate_with_the_receivers_number_is_refused(network: SandboxNetwork,
                                                                       http: httpx.Client) -> None:
    key = issue_identity(network.pki, B, "Selvlaget").private_key
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, B), x509.NameAttribute(NameOID.COMMON_NAME, "B")])
    now = datetime.now(UTC)
    self_signed = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30))
                   .add_extension(key_usage(key_encipherment=True, digital_signature=True), critical=True)
                   .sign(key, hashes.SHA256()))
    with pytest.raises(PermanentChannelError, match=r"untrusted issuer: .* is self-signed"):
        receivers(network.pki.trust_bundle, http).check(B, pem(self_signed))


def test_a_certificate_from_another_ca_is_refused(network: SandboxNetwork, http: httpx.Client,
                                                  tmp_path: Path) -> None:
    stranger = dev_identity(create_dev_pki(tmp_path / "stranger", {B: "Falsk B"}), B).certificate
    with pytest.raises(PermanentChannelError, match=r"untrusted issuer: .* does not chain to the trust store"):
        receivers(network.pki.trust_bundle, http).check(B, pem(stranger))


def test_a_certificate_that_may_not_encrypt_is_refused(network: SandboxNetwork, http: httpx.Client) -> None:
    signing_only = issue_identity(network.pki, B, "Bare signering", usage=key_usage(digital_signature=True))
    with pytest.raises(PermanentChannelError, match="keyUsage lacks keyEncipherment"):
        receivers(network.pki.trust_bundle, http).check(B, pem(signing_only.certificate))


def test_unanswered_revocation_is_tried_again_under_refuse_and_noted_under_warn(http: httpx.Client,
                                                                                tmp_path: Path) -> None:
    # A PKI whose revocation address nobody serves: its CRL and OCSP addresses are refused on loopback.
    silent = create_dev_pki(tmp_path / "silent", {B: "Mottaker"})
    certificate = pem(dev_identity(silent, B).certificate)
    with pytest.raises(RetryableChannelError, match=r"revocation status of .* could not be checked"):
        receivers(silent.trust_bundle, http, "refuse").check(B, certificate)
    checked = receivers(silent.trust_bundle, http, "warn").check(B, certificate)
    assert "could not be checked" in checked.note and "accepted because trust.revocation is warn" in checked.note


def test_dpf_encrypts_only_to_ks_svarut(network: SandboxNetwork, http: httpx.Client) -> None:
    trust = receivers(network.pki.trust_bundle, http)
    ks = dev_identity(network.pki, SANDBOX_SVARUT_ORGNR).certificate
    municipality = "944444408"
    assert "KS SvarUt's certificate" in trust.check(municipality, pem(ks), dpf=True).note
    with pytest.raises(PermanentChannelError, match=f"is for {municipality}, not KS SvarUt"):
        trust.check(municipality, pem(dev_identity(network.pki, municipality).certificate), dpf=True)

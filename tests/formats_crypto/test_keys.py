"""Loading the organisation's keystore, checking it, and verifying peers' certificate chains."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.devcerts import P12_PASSWORD, DevPki, create_dev_pki, dev_identity, issue_identity
from gateway.errors import KeystoreError, SecurityError
from gateway.formats.keys import OrgIdentity, TrustStore, identity_problems, load_pem, load_pkcs12

from .support import RECEIVER, SENDER, key_and_cert_paths


def test_pkcs12_and_pem_give_the_same_identity(pki: DevPki) -> None:
    from_p12 = load_pkcs12(pki.folder / f"{SENDER}.p12", P12_PASSWORD, alias=SENDER)
    key_path, cert_path = key_and_cert_paths(pki, SENDER)
    from_pem = load_pem(key_path, cert_path, pki.folder / f"{SENDER}-chain.pem")
    assert from_p12.orgnr == from_pem.orgnr == SENDER
    assert from_p12.certificate == from_pem.certificate
    assert from_p12.chain == from_pem.chain and len(from_p12.chain) == 2
    assert identity_problems(from_p12, SENDER, datetime.now(UTC)) == []


def test_wrong_pkcs12_password_says_so_in_one_line(pki: DevPki) -> None:
    path = pki.folder / f"{SENDER}.p12"
    with pytest.raises(KeystoreError) as caught:
        load_pkcs12(path, "not-the-password")
    message = str(caught.value)
    assert f"wrong password for keystore {path}" in message and "\n" not in message


def test_missing_keystore_and_unknown_alias(pki: DevPki, tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="does not exist"):
        load_pkcs12(tmp_path / "nope.p12", P12_PASSWORD)
    with pytest.raises(KeystoreError, match="no entry with alias 'someone-else'"):
        load_pkcs12(pki.folder / f"{SENDER}.p12", P12_PASSWORD, alias="someone-else")


def test_key_that_does_not_match_the_certificate(pki: DevPki) -> None:
    key_path, _ = key_and_cert_paths(pki, RECEIVER)
    _, cert_path = key_and_cert_paths(pki, SENDER)
    mixed = load_pem(key_path, cert_path)
    problems = identity_problems(mixed, SENDER, datetime.now(UTC))
    assert len(problems) == 1
    assert "private key does not belong to the certificate" in problems[0]


def test_expired_certificate_and_wrong_orgnr(pki: DevPki) -> None:
    now = datetime.now(UTC)
    expired = issue_identity(
        pki, SENDER, "Gammel AS", not_before=now - timedelta(days=400), not_after=now - timedelta(days=35)
    )
    problems = identity_problems(expired, RECEIVER, now)
    assert len(problems) == 2
    assert problems[0].startswith("the certificate") and "expired on" in problems[0]
    assert f"{(now - timedelta(days=35)):%Y-%m-%d}" in problems[0]
    assert problems[1] == f"the certificate is for organisation {SENDER}, but config.yaml says {RECEIVER}"
    assert all("\n" not in problem for problem in problems)


def test_dev_pki_is_idempotent_and_adds_missing_organisations(tmp_path: Path) -> None:
    first = create_dev_pki(tmp_path, {SENDER: "Avsender Test AS"})
    root_before = first.ca_certificate.read_bytes()
    sender_before = (tmp_path / f"{SENDER}.p12").read_bytes()
    second = create_dev_pki(tmp_path, {SENDER: "Avsender Test AS", RECEIVER: "Mottaker Test AS"})
    assert second == first
    assert second.ca_certificate.read_bytes() == root_before
    assert (tmp_path / f"{SENDER}.p12").read_bytes() == sender_before
    added = dev_identity(second, RECEIVER)
    TrustStore.from_pem_files([second.trust_bundle]).verify(added.certificate)
    for secret in (f"{RECEIVER}.p12", f"{RECEIVER}-key.pem", "root-ca-key.pem", "intermediate-ca-key.pem"):
        assert stat.S_IMODE((tmp_path / secret).stat().st_mode) == 0o600, secret


def test_trust_store_accepts_leaf_alone_and_names_each_failed_rule(
    pki: DevPki, stranger_pki: DevPki, trust: TrustStore, sender: OrgIdentity
) -> None:
    trust.verify(sender.certificate)
    root_only = TrustStore.from_pem_files([pki.ca_certificate])
    with pytest.raises(SecurityError, match="untrusted issuer"):
        root_only.verify(sender.certificate)
    root_only.verify(sender.certificate, untrusted=sender.chain)

    stranger = dev_identity(stranger_pki, SENDER)
    with pytest.raises(SecurityError, match="untrusted issuer"):
        trust.verify(stranger.certificate, untrusted=stranger.chain)

    with pytest.raises(SecurityError, match=r"has expired: valid until .* UTC \(checked at 2099-01-01 00:00:00 UTC"):
        trust.verify(sender.certificate, at=datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(SecurityError, match=r"not yet valid: valid from .* UTC \(checked at 2001-01-01 00:00:00 UTC"):
        trust.verify(sender.certificate, at=datetime(2001, 1, 1, tzinfo=UTC))


def test_trust_store_rejects_a_forged_issuer_with_the_same_name(trust: TrustStore, sender: OrgIdentity) -> None:
    intermediate = sender.chain[0]
    forger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    forged_leaf = (
        x509.CertificateBuilder()
        .subject_name(sender.certificate.subject)
        .issuer_name(intermediate.subject)
        .public_key(forger_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(forger_key, hashes.SHA256())
    )
    with pytest.raises(SecurityError, match="bad signature in chain"):
        trust.verify(forged_leaf)

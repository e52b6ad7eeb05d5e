"""Loading the organisation's keystore, checking it, and verifying peers' certificate chains."""

from __future__ import annotations

import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.devcerts import P12_PASSWORD, DevPki, create_dev_pki, dev_identity, issue_identity
from gateway.errors import KeystoreError, SecurityError
from gateway.formats.keys import OrgIdentity, TrustStore, identity_problems, load_pem, load_pkcs12

from .keystores import multi_entry_keystore, single_entry
from .support import RECEIVER, SENDER, key_and_cert_paths, openssl


def test_pkcs12_and_pem_give_the_same_identity(pki: DevPki) -> None:
    from_p12 = load_pkcs12(pki.folder / f"{SENDER}.p12", P12_PASSWORD, alias=SENDER)
    key_path, cert_path = key_and_cert_paths(pki, SENDER)
    from_pem = load_pem(key_path, cert_path, pki.folder / f"{SENDER}-chain.pem")
    assert from_p12.orgnr == from_pem.orgnr == SENDER
    assert from_p12.certificate == from_pem.certificate
    assert from_p12.chain == from_pem.chain and len(from_p12.chain) == 2
    assert identity_problems(from_p12, SENDER, datetime.now(UTC)) == []


def test_a_keystore_written_here_reads_back_and_a_rewritten_one_is_read_anew(pki: DevPki, tmp_path: Path) -> None:
    # The dev PKI's own keystores are known to this process without reading them back: these are new files.
    first, second = (issue_identity(pki, SENDER, "Sender AS") for _ in range(2))
    keystore = tmp_path / "rewritten.p12"
    keystore.write_bytes(single_entry(first, "one", "pw"))
    loaded = load_pkcs12(keystore, "pw", alias="one")
    assert loaded.certificate == first.certificate and loaded.chain == first.chain
    assert loaded.private_key.private_numbers() == first.private_key.private_numbers()
    keystore.write_bytes(single_entry(second, "one", "pw"))  # same path, same size, within the same tick
    assert load_pkcs12(keystore, "pw", alias="one").certificate == second.certificate
    with pytest.raises(KeystoreError, match="wrong password"):
        load_pkcs12(keystore, "not-pw", alias="one")


def test_wrong_pkcs12_password_says_so_in_one_line(pki: DevPki) -> None:
    path = pki.folder / f"{SENDER}.p12"
    with pytest.raises(KeystoreError) as caught:
        load_pkcs12(path, "not-the-password")
    message = str(caught.value)
    assert f"wrong password for keystore {path}" in message and "\n" not in message


def test_missing_keystore_and_unknown_alias(pki: DevPki, tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="does not exist"):
        load_pkcs12(tmp_path / "nope.p12", P12_PASSWORD)
    with pytest.raises(KeystoreError, match="no key entry with alias 'someone-else'; its key entry is '910077473'"):
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


# ---- keystores with several key entries, as real ones are (issue #10, section 2) -----------------------


@pytest.fixture(scope="module")
def eight_entries(pki: DevPki, stranger_pki: DevPki) -> list[tuple[str, OrgIdentity]]:
    """Seven entries from the dev PKI (two organisations, several certificate generations), one from another CA."""
    entries = [
        (f"virksomhet-{year}", issue_identity(pki, SENDER if year % 2 else RECEIVER, f"Generasjon {year}"))
        for year in range(2019, 2026)
    ]
    stranger = dev_identity(stranger_pki, SENDER)
    assert stranger.chain and stranger.chain[0] not in entries[0][1].chain
    entries.insert(3, ("annen-ca", stranger))
    return entries


@pytest.fixture(scope="module")
def eight_entry_keystore(tmp_path_factory: pytest.TempPathFactory, eight_entries) -> Path:
    return multi_entry_keystore(tmp_path_factory.mktemp("p12") / "eight.p12", eight_entries, P12_PASSWORD)


def test_a_keystore_with_eight_key_entries_is_read_by_alias_with_that_entrys_own_chain(
    eight_entry_keystore: Path, eight_entries: list[tuple[str, OrgIdentity]]
) -> None:
    leaves = {identity.certificate for _, identity in eight_entries}
    for alias, expected in eight_entries:
        loaded = load_pkcs12(eight_entry_keystore, P12_PASSWORD, alias=alias.upper())  # keytool's aliases ignore case
        assert loaded.certificate == expected.certificate, alias
        assert loaded.private_key.public_key().public_numbers() == expected.certificate.public_key().public_numbers()
        assert loaded.chain == expected.chain, alias
        assert not leaves & set(loaded.chain), "another entry's certificate is not part of this entry's chain"
        assert identity_problems(loaded, expected.orgnr or "", datetime.now(UTC)) == []


def test_an_unknown_or_missing_alias_lists_the_entries_there_are(
    eight_entry_keystore: Path, eight_entries: list[tuple[str, OrgIdentity]]
) -> None:
    listed = ", ".join(f"'{alias}'" for alias, _ in eight_entries)
    with pytest.raises(KeystoreError) as unknown:
        load_pkcs12(eight_entry_keystore, P12_PASSWORD, alias="virksomhet-2030")
    assert str(unknown.value) == (
        f"keystore {eight_entry_keystore} has no key entry with alias 'virksomhet-2030'; its key entries are {listed}"
    )
    with pytest.raises(KeystoreError) as missing:
        load_pkcs12(eight_entry_keystore, P12_PASSWORD)
    assert str(missing.value) == (
        f"keystore {eight_entry_keystore} holds 8 key entries ({listed}); set keystore.alias to the one to use"
    )
    with pytest.raises(KeystoreError, match="wrong password"):
        load_pkcs12(eight_entry_keystore, "feil", alias="annen-ca")


@pytest.mark.skipif(shutil.which("keytool") is None, reason="needs Java's keytool")
def test_a_keystore_written_by_java_keytool_is_read_by_alias(
    eight_entry_keystore: Path, eight_entries: list[tuple[str, OrgIdentity]], tmp_path: Path
) -> None:
    java_written = tmp_path / "java.p12"
    converted = subprocess.run(
        ["keytool", "-importkeystore", "-noprompt", "-srckeystore", eight_entry_keystore, "-srcstoretype", "PKCS12",
         "-srcstorepass", P12_PASSWORD, "-destkeystore", java_written, "-deststoretype", "PKCS12",
         "-deststorepass", P12_PASSWORD],
        capture_output=True, text=True, timeout=120,
    )
    assert converted.returncode == 0, converted.stderr + converted.stdout
    assert "8 entries successfully imported" in converted.stdout + converted.stderr
    alias, expected = eight_entries[3]
    loaded = load_pkcs12(java_written, P12_PASSWORD, alias=alias)
    assert loaded.certificate == expected.certificate and loaded.chain == expected.chain
    with pytest.raises(KeystoreError, match="holds 8 key entries"):
        load_pkcs12(java_written, P12_PASSWORD)


@pytest.mark.parametrize("encryption", ["PBE-SHA1-3DES", "AES-256-CBC"])
def test_a_keystore_written_by_openssl_with_older_or_newer_encryption_loads(
    pki: DevPki, tmp_path: Path, encryption: str
) -> None:
    key, cert = key_and_cert_paths(pki, SENDER)
    keystore = tmp_path / "openssl.p12"
    openssl(
        "pkcs12", "-export", "-inkey", key, "-in", cert, "-certfile", pki.folder / f"{SENDER}-chain.pem",
        "-name", "Virksomhetssertifikat", "-keypbe", encryption, "-certpbe", encryption, "-macalg", "sha1",
        "-passout", f"pass:{P12_PASSWORD}", "-out", keystore,
    )
    loaded = load_pkcs12(keystore, P12_PASSWORD, alias="virksomhetssertifikat")
    expected = load_pem(key, cert, pki.folder / f"{SENDER}-chain.pem")
    assert loaded.certificate == expected.certificate and loaded.chain == expected.chain
    assert load_pkcs12(keystore, P12_PASSWORD).certificate == expected.certificate  # one entry: no alias needed

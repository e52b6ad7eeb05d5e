"""Real Buypass and Commfides certificates against the shipped anchor bundles, at the vectors' T0.

The verdicts are those of reference/vectors/pki/README.md, which holds at T0 = 2025-04-03T12:00Z with the
CRLs in crl/ (each inside its thisUpdate..nextUpdate window then). No network: the CRLs are given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from gateway.environments import anchors_file
from gateway.errors import SecurityError
from gateway.trust.orgnr import certificate_orgnr
from gateway.trust.store import Purpose, Revocation, RevocationUnavailable, TrustStore

T0 = datetime(2025, 4, 3, 12, 0, tzinfo=UTC)
NOW_OF_THE_VECTORS = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(reference_dir: Path) -> Path:
    return reference_dir / "vectors" / "pki"


def leaf(pki: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki / "leaf" / f"{name}.pem").read_bytes())


def store(pki: Path, environment: str, policy: str = "refuse") -> TrustStore:
    crls = tuple(path.read_bytes() for path in sorted((pki / "crl" / environment[:4]).glob("*.crl")))
    return TrustStore.from_pem_files([anchors_file(environment)], Revocation(policy, crls=crls))


BUYPASS_SEID2_EFORMIDLING = "buypass-g2st-test_digdir-eformidling-NTRNO-991825827_2026-05-05_expired"
BUYPASS_SEID2_NONREP = "buypass-g2st-test_digdir-NTRNO-991825827_2026-09-05_expired"
COMMFIDES_KARTVERKET = "commfides-g3-test_kartverket-971040238_2025-09-15_expired"
COMMFIDES_DIGDIR_2028 = "commfides-g3-test_digdir-991825827_2028-11-28"
KS_SIGN = "commfides-g3-PROD_ks-971032146_sign_2026-09-27_expired"
KS_ENCIPHERMENT = "commfides-g3-PROD_ks-971032146_encipherment_2026-09-27_expired"


def test_a_buypass_seid2_certificate_chains_and_its_orgnr_is_read_from_organization_identifier(pki: Path) -> None:
    certificate = leaf(pki, BUYPASS_SEID2_EFORMIDLING)
    # SEID 2 from Buypass: no serialNumber at all, only NTRNO- in organizationIdentifier.
    assert not certificate.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    assert certificate_orgnr(certificate) == "991825827"
    test = store(pki, "test")
    assert test.verify(certificate, at=T0, purpose=Purpose.SIGNING).warnings == ()
    assert test.verify(certificate, at=T0, purpose=Purpose.ENCRYPTION).warnings == ()


def test_a_nonrepudiation_only_certificate_chains_but_may_not_sign_messages(pki: Path) -> None:
    certificate = leaf(pki, BUYPASS_SEID2_NONREP)
    test = store(pki, "test")
    test.verify(certificate, at=T0)  # the chain and the CRL: VALID, as the README says
    with pytest.raises(SecurityError, match="keyUsage lacks digitalSignature"):
        test.verify(certificate, at=T0, purpose=Purpose.SIGNING)


def test_commfides_g3_test_certificates_are_valid_in_test_and_not_in_production(pki: Path) -> None:
    certificate = leaf(pki, COMMFIDES_KARTVERKET)
    assert certificate_orgnr(certificate) == "971040238"
    store(pki, "test").verify(certificate, at=T0, purpose=Purpose.SIGNING)
    with pytest.raises(SecurityError, match="untrusted issuer"):
        store(pki, "production").verify(certificate, at=T0, purpose=Purpose.SIGNING)


def test_ks_production_certificates_each_fit_only_their_own_use(pki: Path) -> None:
    production = store(pki, "production")
    signing, encipherment = leaf(pki, KS_SIGN), leaf(pki, KS_ENCIPHERMENT)
    assert certificate_orgnr(encipherment) == "971032146"
    production.verify(signing, at=T0, purpose=Purpose.SIGNING)
    production.verify(encipherment, at=T0, purpose=Purpose.ENCRYPTION)
    with pytest.raises(SecurityError, match="keyUsage lacks digitalSignature"):
        production.verify(encipherment, at=T0, purpose=Purpose.SIGNING)
    with pytest.raises(SecurityError, match="keyUsage lacks keyEncipherment"):
        production.verify(signing, at=T0, purpose=Purpose.ENCRYPTION)
    with pytest.raises(SecurityError, match="untrusted issuer"):  # a production certificate in test
        store(pki, "test").verify(signing, at=T0)


@pytest.mark.parametrize("name", [
    "buypass-g2st-test_digdir-NTRNO-991825827_2024-05-21_expired",
    "buypass-t4ca3-test_digdir-991825827_2023-06-16_expired",
    "buypass-t4ca3-test_kollektiv-tiger-810969342_2023-03-11_expired",
])
def test_expired_certificates_are_refused_with_their_end_date(pki: Path, name: str) -> None:
    with pytest.raises(SecurityError, match=r"has expired: valid until 20\d\d-"):
        store(pki, "test").verify(leaf(pki, name), at=T0)


def test_a_certificate_not_valid_yet_is_refused(pki: Path) -> None:
    with pytest.raises(SecurityError, match="not yet valid: valid from 2025-11-14"):
        store(pki, "test").verify(leaf(pki, COMMFIDES_DIGDIR_2028), at=T0)


def test_a_stale_crl_is_refused_under_refuse_and_accepted_with_a_warning_under_warn(pki: Path) -> None:
    certificate = leaf(pki, COMMFIDES_DIGDIR_2028)  # valid in 2026, but the bundled TEST CRL ended 2025-04-09
    with pytest.raises(RevocationUnavailable, match=r"revocation status of .*Digitaliseringsdirektoratet.* could not"):
        store(pki, "test", "refuse").verify(certificate, at=NOW_OF_THE_VECTORS)
    verdict = store(pki, "test", "warn").verify(certificate, at=NOW_OF_THE_VECTORS)
    [warning] = verdict.warnings
    assert "could not be checked" in warning and "trust.revocation is warn" in warning


@pytest.mark.parametrize("name", [
    "selfsigned_test-selfsigned_2125-08-05", "selfsigned_digipost-receipt-signer_3007-03-22",
])
def test_self_signed_certificates_are_refused(pki: Path, name: str) -> None:
    with pytest.raises(SecurityError, match="self-signed"):
        store(pki, "test").verify(leaf(pki, name), at=NOW_OF_THE_VECTORS)


def test_a_certificate_of_a_dropped_legacy_ca_is_refused(pki: Path) -> None:
    certificate = leaf(pki, "commfides-cpn-test_finanstilsynet-840747972_2022-10-03_expired")
    legacy = [x509.load_pem_x509_certificate(p.read_bytes()) for p in (pki / "ca" / "legacy").glob("*test*.pem")]
    with pytest.raises(SecurityError, match="untrusted issuer"):
        store(pki, "test").verify(certificate, legacy, at=datetime(2021, 3, 29, tzinfo=UTC))


def test_the_psd2_form_of_the_organisation_number_is_read(pki: Path) -> None:
    certificate = leaf(pki, "buypass-g2st-test_digdir-PSD2-PSDNO-FSA-991825827_2023-05-07_expired")
    assert certificate_orgnr(certificate) == "991825827"

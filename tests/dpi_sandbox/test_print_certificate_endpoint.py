"""The sandbox's KRR print certificate endpoint: answered without a token, shaped as KRR's (the reference's
KrrPrintResponse), the same certificate as the registry's print records, and named by the sandbox join, so the
gateway in the sandbox takes a print letter's certificate the way it does in test and production."""

from __future__ import annotations

import httpx
from cryptography import x509

from gateway.channels.dpi.print_certificate import PrintCertificates
from gateway.clock import SystemClock
from gateway.formats.keys import TrustStore
from gateway.sandbox.network import SandboxNetwork
from gateway.sandbox.persons import PRINT_PROVIDER, RESERVED_PERSON, VEDTAK_PROCESS
from gateway.trust.receivers import ReceiverTrust
from tests.dpi_sandbox.conftest import GATEWAY
from tests.dpi_sandbox.test_person_records import lookup


def test_answered_anonymously_in_krrs_shape(network: SandboxNetwork, http: httpx.Client,
                                            print_certificate: x509.Certificate) -> None:
    url = network.gateway_settings(GATEWAY)["channels"]["dpi"]["print_certificate_url"]
    assert url == network.print_certificate_url and url.endswith("/rest/v2/printSertifikat")
    answer = http.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"postkasseleverandoerAdresse", "x509Sertifikat"}
    assert body["postkasseleverandoerAdresse"] == PRINT_PROVIDER[0]
    assert x509.load_pem_x509_certificate(body["x509Sertifikat"].encode()) == print_certificate
    assert http.post(url).status_code == 405
    assert network.describe()["print_certificate_url"] == url


def test_the_same_certificate_as_the_registrys_print_record(network: SandboxNetwork, http: httpx.Client) -> None:
    response = lookup(network, http, RESERVED_PERSON, process=VEDTAK_PROCESS)
    [printed] = [record for record in response.json()["serviceRecords"] if record.get("fysiskPost")]
    fetched = http.get(network.print_certificate_url).json()["x509Sertifikat"]
    assert x509.load_pem_x509_certificate(fetched.encode()) == x509.load_pem_x509_certificate(
        printed["pemCertificate"].encode())


def test_the_gateway_fetches_and_checks_it_without_credentials(network: SandboxNetwork, http: httpx.Client,
                                                                print_certificate: x509.Certificate) -> None:
    stats = f"{network.url}/kontaktregisteret/_sandbox/stats"
    before = http.get(stats).json()
    printing = PrintCertificates(network.print_certificate_url, http,
                                 ReceiverTrust(TrustStore.from_pem_files([network.pki.trust_bundle])), SystemClock())
    checked = printing.certificate(None)
    assert checked.certificate == print_certificate and checked.owner == PRINT_PROVIDER[0]
    after = http.get(stats).json()
    assert after["print_certificate_requests"] == before["print_certificate_requests"] + 1
    assert after["with_authorization"] == before["with_authorization"]

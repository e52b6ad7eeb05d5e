"""The print service's certificate: fetched from KRR without credentials, in any of the forms KRR may answer
with, kept for `cache_seconds`, and checked against the trust store like every certificate we encrypt to."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.channels.dpi.print_certificate import PrintCertificates
from gateway.clock import FakeClock
from gateway.devcerts import DevPki, create_dev_pki, dev_identity
from gateway.errors import PermanentChannelError, RetryableChannelError
from gateway.formats.keys import TrustStore
from gateway.trust.receivers import ReceiverTrust

PRINT_PROVIDER = "944444513"


class Krr:
    """A loopback printSertifikat endpoint: answers `body` with `status`, and remembers the requests' headers."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests: list[dict[str, str]] = []
        krr = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                krr.requests.append({key.lower(): value for key, value in self.headers.items()})
                self.send_response(krr.status)
                self.send_header("Content-Length", str(len(krr.body)))
                self.end_headers()
                self.wfile.write(krr.body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rest/v2/printSertifikat"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"), {PRINT_PROVIDER: "Utskrift og forsendelse AS"})


@pytest.fixture
def krr() -> Iterator[Krr]:
    service = Krr()
    yield service
    service.server.shutdown()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def certificates(pki: DevPki, krr: Krr, http: httpx.Client, clock: FakeClock) -> PrintCertificates:
    return PrintCertificates(krr.url, http, ReceiverTrust(TrustStore.from_pem_files([pki.trust_bundle])), clock,
                             cache_seconds=3600)


def pem_of(pki: DevPki) -> bytes:
    return dev_identity(pki, PRINT_PROVIDER).certificate.public_bytes(serialization.Encoding.PEM)


def test_fetched_without_credentials_checked_and_kept_for_the_cache_time(pki: DevPki, krr: Krr,
                                                                           http: httpx.Client) -> None:
    krr.body = pem_of(pki)
    clock = FakeClock()
    printing = certificates(pki, krr, http, clock)
    first = printing.certificate(None)
    assert first.owner == PRINT_PROVIDER and "the print service" in first.note
    assert "authorization" not in krr.requests[0]
    printing.certificate(None)
    clock.advance(3599)
    printing.certificate(None)
    assert len(krr.requests) == 1
    clock.advance(2)
    printing.certificate(None)
    assert len(krr.requests) == 2


@pytest.mark.parametrize("form", ["json", "der"])
def test_krr_answers_in_json_or_base64_der_are_read(pki: DevPki, krr: Krr, http: httpx.Client, form: str) -> None:
    der = x509.load_pem_x509_certificate(pem_of(pki)).public_bytes(serialization.Encoding.DER)
    encoded = base64.b64encode(der).decode("ascii")
    krr.body = json.dumps({"x509Sertifikat": encoded}).encode() if form == "json" else encoded.encode()
    assert certificates(pki, krr, http, FakeClock()).certificate(None).owner == PRINT_PROVIDER


def _self_signed(tmp: Path) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Falsk utskrift"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, PRINT_PROVIDER)])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(7).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=9))
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_a_certificate_outside_the_trust_store_is_refused_before_encrypting(pki: DevPki, krr: Krr,
                                                                              http: httpx.Client,
                                                                              tmp_path: Path) -> None:
    krr.body = _self_signed(tmp_path)
    with pytest.raises(PermanentChannelError, match="refused before encrypting"):
        certificates(pki, krr, http, FakeClock()).certificate(None)


def test_krr_down_is_retried_and_a_wrong_url_is_said(pki: DevPki, krr: Krr, http: httpx.Client) -> None:
    krr.status, krr.body = 503, b"busy"
    with pytest.raises(RetryableChannelError, match="HTTP 503"):
        certificates(pki, krr, http, FakeClock()).certificate(None)
    krr.status = 404
    with pytest.raises(PermanentChannelError, match=r"check channels\.dpi\.print_certificate_url"):
        certificates(pki, krr, http, FakeClock()).certificate(None)
    krr.status, krr.body = 200, b"<html>maintenance</html>"
    with pytest.raises(PermanentChannelError, match="no certificate in the answer"):
        certificates(pki, krr, http, FakeClock()).certificate(None)


def test_without_a_url_the_print_records_certificate_is_checked_the_same_way(pki: DevPki, http: httpx.Client,
                                                                             tmp_path: Path) -> None:
    printing = PrintCertificates(None, http, ReceiverTrust(TrustStore.from_pem_files([pki.trust_bundle])),
                                 FakeClock())
    assert printing.certificate(pem_of(pki).decode()).owner == PRINT_PROVIDER
    with pytest.raises(PermanentChannelError, match="refused before encrypting"):
        printing.certificate(_self_signed(tmp_path).decode())
    with pytest.raises(PermanentChannelError, match="no certificate"):
        printing.certificate(None)

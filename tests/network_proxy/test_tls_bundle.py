"""network.tls_ca_bundle: a loopback HTTPS server with a certificate from a throwaway CA (as a
TLS-inspecting proxy presents) is refused without the bundle and accepted with it, directly and through
a CONNECT tunnel; the bundle adds to the default trust and does not replace it."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import Config, FoldersConfig, NetworkConfig, OrganisationConfig, load_config
from gateway.errors import ConfigError
from gateway.outbound_http import outbound_client, tls_context


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    server_cert: Path
    server_key: Path
    ca_name: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("tls-pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = "efm-gateway test inspecting proxy CA"
    ca = (
        x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key", ca_name)
    paths.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths.server_key.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return paths


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello over TLS"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_url(pki: Pki) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/sr"
    server.shutdown()
    server.server_close()


def config(bundle: Path | None = None) -> Config:
    return Config(
        source=Path("/etc/efm-gateway/config.yaml"),
        organisation=OrganisationConfig("991825827"),
        folders=FoldersConfig(*[Path("/var/lib/efm-gateway")] * 6),
        network=NetworkConfig(tls_ca_bundle=bundle),
    )


def test_a_server_of_the_extra_ca_is_refused_without_the_bundle_and_accepted_with_it(pki, https_url):
    with outbound_client(config(), 10, environ={}) as client, pytest.raises(httpx.ConnectError) as refused:
        client.get(https_url)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    with outbound_client(config(pki.ca_pem), 10, environ={}) as client:
        assert client.get(https_url).text == "hello over TLS"


def test_the_bundle_holds_through_a_connect_tunnel(pki, https_url, proxy):
    environ = {"HTTPS_PROXY": proxy.url_with_credentials()}
    with outbound_client(config(), 10, environ=environ) as client, pytest.raises(httpx.ConnectError):
        client.get(https_url)
    with outbound_client(config(pki.ca_pem), 10, environ=environ) as client:
        assert client.get(https_url).text == "hello over TLS"
    # Both went into a tunnel to the server, the second one's TLS inside it succeeded.
    assert proxy.requests == {https_url.removeprefix("https://").removesuffix("/sr"): 2}


def test_the_bundle_adds_to_the_default_cas(pki):
    default = tls_context(config()).get_ca_certs()
    extended = tls_context(config(pki.ca_pem)).get_ca_certs()
    assert len(default) > 10  # the public CAs every outbound TLS connection trusts
    assert len(extended) == len(default) + 1
    assert [dict(field[0] for field in ca["subject"])["commonName"] for ca in extended if ca not in default] == [
        pki.ca_name
    ]


# ---- the key in config.yaml ----------------------------------------------------------------------------


def _load(tmp_path: Path, bundle: str) -> Config:
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {key: f"var/{key}" for key in ("outbox", "status", "inbox", "failed", "sent", "state")},
        "network": {"tls_ca_bundle": bundle},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def test_config_takes_a_pem_bundle_relative_to_the_config_file(pki, tmp_path):
    (tmp_path / "corporate-ca.pem").write_bytes(pki.ca_pem.read_bytes())
    assert _load(tmp_path, "corporate-ca.pem").network.tls_ca_bundle == tmp_path / "corporate-ca.pem"


def test_config_refuses_a_bundle_that_is_missing_or_not_pem(pki, tmp_path):
    cases = {
        "missing.pem": "is not a readable file",
        "server.key": "holds no PEM CA certificate",  # a key, not a certificate
        "ca.der": "holds no PEM CA certificate",
    }
    (tmp_path / "server.key").write_bytes(pki.server_key.read_bytes())
    (tmp_path / "ca.der").write_bytes(
        x509.load_pem_x509_certificate(pki.ca_pem.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    for name, words in cases.items():
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, name)
        message = str(caught.value)
        assert f"network.tls_ca_bundle ({tmp_path / name}) {words}" in message and "\n" not in message

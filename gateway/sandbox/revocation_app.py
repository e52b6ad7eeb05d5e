"""The dev PKI's revocation services, as a CA publishes them: CRLs and an OCSP responder (`/pki`).

    GET  /pki/crl/root.crl           the root CA's CRL (lists revoked intermediates)
    GET  /pki/crl/intermediate.crl   the enterprise CA's CRL (lists revoked enterprise certificates)
    POST /pki/ocsp                   RFC 6960 over HTTP POST (application/ocsp-request)

Answers are made at request time from the PKI's folder (`devcerts.revoke` lists a certificate there), signed
by the CA that issued the certificate asked about, as Buypass's and Commfides's are. A CRL is valid for an
hour (its nextUpdate), an OCSP answer for five minutes; OCSP echoes the request's nonce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.devcerts import INTERMEDIATE_CRL, ROOT_CRL, DevPki, load_authorities, revoked_serials

CRL_LIFETIME = timedelta(hours=1)
OCSP_LIFETIME = timedelta(minutes=5)
MAX_OCSP_REQUEST = 64 << 10


def _key_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """The hash of the issuer's public key an OCSP request names it by (over the BIT STRING's content)."""
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    from asn1crypto import keys

    bits = keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]  # drop the unused-bits byte
    return hashlib.new(algorithm.name, bits).digest()


def _name_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    return hashlib.new(algorithm.name, certificate.subject.public_bytes()).digest()


def certificate_list(pki: DevPki, which: str, now: datetime, authorities: tuple | None = None) -> bytes:
    """The DER CRL of the root (`root.crl`) or the enterprise CA (`intermediate.crl`), made now."""
    root, intermediate = authorities or load_authorities(pki)
    issuer = root if which == ROOT_CRL else intermediate
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for serial, when in revoked_serials(pki).items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build()
        )
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def ocsp_answer(pki: DevPki, request_der: bytes, now: datetime, authorities: tuple | None = None) -> bytes:
    """The DER OCSP response to one request: good, revoked, or unknown (not our issuer)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
    except ValueError:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
            serialization.Encoding.DER)
    algorithm = request.hash_algorithm
    issuer = next((authority for authority in authorities or load_authorities(pki)
                   if _key_hash(authority.certificate, algorithm) == request.issuer_key_hash
                   and _name_hash(authority.certificate, algorithm) == request.issuer_name_hash), None)
    if issuer is None:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
            serialization.Encoding.DER)
    revoked_at = revoked_serials(pki).get(request.serial_number)
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number,
        algorithm=algorithm,
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked_at else ocsp.OCSPCertStatus.GOOD,
        this_update=now - timedelta(minutes=1),
        next_update=now + OCSP_LIFETIME,
        revocation_time=revoked_at,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def revocation_app(pki: DevPki, now: Callable[[], datetime]) -> Starlette:
    authorities = load_authorities(pki)  # the CAs never change under a running sandbox; reading keys is slow
    async def crl(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in (ROOT_CRL, INTERMEDIATE_CRL):
            return Response(status_code=404)
        return Response(certificate_list(pki, name, now(), authorities), media_type="application/pkix-crl")

    async def responder(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/ocsp-request":
            return Response("an OCSP request is application/ocsp-request", status_code=415)
        try:
            body = await request.body()
        except ClientDisconnect:  # the asker went away (a gateway killed mid-request): nobody to answer
            return Response(status_code=400)
        if len(body) > MAX_OCSP_REQUEST:
            return Response(status_code=413)
        return Response(ocsp_answer(pki, body, now(), authorities), media_type="application/ocsp-response")

    return Starlette(routes=[Route("/crl/{name}", crl), Route("/ocsp", responder, methods=["POST"])])

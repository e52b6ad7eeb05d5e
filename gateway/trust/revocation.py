"""Revocation information over HTTP: CRLs from a certificate's distribution points, cached until their
nextUpdate, and OCSP from the responder its Authority Information Access names.

The fetchers plug into pyhanko-certvalidator's fetcher interface and make their requests with the
daemon's own HTTP client (gateway/outbound_http.py: the proxy settings, the TLS trust, the User-Agent).
A CRL is shared by every validation until its nextUpdate; OCSP answers are asked anew each time (they
are small, and a responder knows of a revocation before the next CRL does). No issuer certificate is
ever fetched from the network (AIA caIssuers): a chain is built from the trust bundle and what the peer
sent, nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Iterable
from datetime import UTC, datetime, timedelta

import httpx
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers import CertificateFetcher, CRLFetcher, Fetchers, OCSPFetcher
from pyhanko_certvalidator.fetchers.common_utils import (
    enumerate_delivery_point_urls,
    format_ocsp_request,
    process_ocsp_response_data,
)
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps, issuer_serial

from gateway.trust import asn1_classes  # noqa: F401 - asn1crypto's classes set up before any thread uses them

log = logging.getLogger(__name__)

# A CRL without nextUpdate (none of the CAs we trust issues one) is kept this long.
DEFAULT_CRL_LIFETIME = timedelta(hours=1)
# A distribution point that did not answer is not asked again for this long: one unreachable CRL must not
# cost every message a timeout.
FAILED_FETCH_PAUSE = timedelta(seconds=30)
MAX_CRL_BYTES = 64 << 20  # Buypass's production CA 3 CRL is ~150 kB; this leaves ample room
MAX_OCSP_BYTES = 1 << 20
_HTTP_SCHEMES = ("http://", "https://")


class CrlCache:
    """CRLs by URL, each kept until its nextUpdate; failed fetches remembered for a short pause."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # DER bytes, parsed afresh for each caller: asn1crypto's lazily parsed objects are not safe to share
        # between threads validating at once.
        self._crls: dict[str, tuple[datetime, bytes]] = {}
        self._failures: dict[str, tuple[datetime, str]] = {}
        self.fetches = 0  # requests made, for tests and the curious

    def get(self, url: str, now: datetime) -> asn1_crl.CertificateList | None:
        with self._lock:
            cached = self._crls.get(url)
        if cached is not None and cached[0] > now:
            return asn1_crl.CertificateList.load(cached[1])
        return None

    def recent_failure(self, url: str, now: datetime) -> str | None:
        with self._lock:
            failed = self._failures.get(url)
        return failed[1] if failed is not None and failed[0] > now else None

    def put(self, url: str, certificate_list: asn1_crl.CertificateList, now: datetime) -> None:
        next_update = certificate_list["tbs_cert_list"]["next_update"].native
        expires = next_update if isinstance(next_update, datetime) else now + DEFAULT_CRL_LIFETIME
        with self._lock:
            self._crls[url] = (expires, certificate_list.dump())
            self._failures.pop(url, None)

    def failed(self, url: str, why: str, now: datetime) -> None:
        with self._lock:
            self._failures[url] = (now + FAILED_FETCH_PAUSE, why)


class RevocationSource:
    """Where revocation information comes from: an HTTP client and the CRL cache shared by validations."""

    def __init__(self, http: httpx.Client, timeout_s: float = 10.0) -> None:
        self.http = http
        self.timeout_s = timeout_s
        self.crls = CrlCache()

    def fetchers(self) -> Fetchers:
        """Fresh fetchers for one validation (pyhanko keeps per-validation state in them)."""
        return Fetchers(ocsp_fetcher=_OcspFetcher(self), crl_fetcher=_CrlFetcher(self),
                        cert_fetcher=_NoCertificateFetcher())

    def get(self, url: str, accept: str, limit: int) -> bytes:
        response = self.http.get(url, headers={"Accept": accept}, timeout=self.timeout_s)
        return _body(response, url, limit)

    def post(self, url: str, content: bytes, content_type: str, accept: str, limit: int) -> bytes:
        response = self.http.post(url, content=content, timeout=self.timeout_s,
                                  headers={"Content-Type": content_type, "Accept": accept})
        return _body(response, url, limit)


def _body(response: httpx.Response, url: str, limit: int) -> bytes:
    if response.status_code != 200:
        raise ValueError(f"{url} answered HTTP {response.status_code}")
    if len(response.content) > limit:
        raise ValueError(f"{url} answered with more than {limit} bytes")
    return response.content


def _now() -> datetime:
    return datetime.now(UTC)


class _CrlFetcher(CRLFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self.source = source
        self._by_cert: dict[bytes, list[asn1_crl.CertificateList]] = {}
        self._fetched: list[asn1_crl.CertificateList] = []

    async def fetch(self, cert: asn1_x509.Certificate, *, use_deltas: bool | None = None) -> list:  # type: ignore[override]
        key = issuer_serial(cert)
        if key in self._by_cert:
            return self._by_cert[key]
        urls = [url for point in get_relevant_crl_dps(cert, use_deltas=bool(use_deltas))
                for url in enumerate_delivery_point_urls(point) if url.lower().startswith(_HTTP_SCHEMES)]
        results, problems = [], []
        for url in dict.fromkeys(urls):
            try:
                results.append(self._one(url))
            except CRLFetchError as exc:
                problems.append(str(exc))
        if not results:
            raise CRLFetchError("; ".join(problems) or "the certificate names no CRL reachable over HTTP")
        self._by_cert[key] = results
        self._fetched.extend(results)
        return results

    def _one(self, url: str) -> asn1_crl.CertificateList:
        cache = self.source.crls
        now = _now()
        cached = cache.get(url, now)
        if cached is not None:
            return cached
        failure = cache.recent_failure(url, now)
        if failure:
            raise CRLFetchError(failure)
        try:
            cache.fetches += 1
            data = self.source.get(url, "application/pkix-crl", MAX_CRL_BYTES)
            if pem.detect(data):
                _, _, data = pem.unarmor(data)
            certificate_list = asn1_crl.CertificateList.load(data)
            certificate_list.native  # noqa: B018 - asn1crypto parses lazily: a broken CRL fails here, not later
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            why = f"the CRL at {url} could not be fetched ({exc})"
            cache.failed(url, why, now)
            log.warning("%s", why)
            raise CRLFetchError(why) from None
        cache.put(url, certificate_list, now)
        return certificate_list

    def fetched_crls(self) -> Iterable[asn1_crl.CertificateList]:
        return list(self._fetched)

    def fetched_crls_for_cert(self, cert: asn1_x509.Certificate) -> Iterable[asn1_crl.CertificateList]:
        return self._by_cert[issuer_serial(cert)]


class _OcspFetcher(OCSPFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self.source = source
        self._responses: list[tuple[bytes, asn1_ocsp.OCSPResponse]] = []

    async def fetch(self, cert: asn1_x509.Certificate, authority: Authority) -> asn1_ocsp.OCSPResponse:  # type: ignore[override]
        request = format_ocsp_request(cert, authority, certid_hash_algo="sha1", request_nonces=True)
        urls = [url for url in get_ocsp_urls(cert) if url.lower().startswith(_HTTP_SCHEMES)]
        if not urls:
            raise OCSPFetchError("the certificate names no OCSP responder reachable over HTTP")
        problems = []
        for url in urls:
            try:
                data = self.source.post(url, request.dump(), "application/ocsp-request", "application/ocsp-response",
                                        MAX_OCSP_BYTES)
                response = process_ocsp_response_data(data, ocsp_request=request, ocsp_url=url)
            except (httpx.HTTPError, ValueError, TypeError, OCSPFetchError) as exc:
                problems.append(f"the OCSP responder at {url} did not answer usably ({exc})")
                continue
            self._responses.append((issuer_serial(cert), response))
            return response
        log.warning("%s", "; ".join(problems))
        raise OCSPFetchError("; ".join(problems))

    def fetched_responses(self) -> Iterable[asn1_ocsp.OCSPResponse]:
        return [response for _, response in self._responses]

    def fetched_responses_for_cert(self, cert: asn1_x509.Certificate) -> Iterable[asn1_ocsp.OCSPResponse]:
        key = issuer_serial(cert)
        return [response for serial, response in self._responses if serial == key]


class _NoCertificateFetcher(CertificateFetcher):
    """Issuers are never fetched: a path is built from the trust bundle and what the peer sent."""

    async def fetch_cert_issuers(self, cert: object) -> AsyncGenerator[asn1_x509.Certificate, None]:  # type: ignore[override]
        return
        yield

    async def fetch_crl_issuers(self, certificate_list: object) -> AsyncGenerator[asn1_x509.Certificate, None]:  # type: ignore[override]
        return
        yield

    def fetched_certs(self) -> Iterable[asn1_x509.Certificate]:
        return []

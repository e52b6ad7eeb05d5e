"""The service-registry client: who receives a process on which channel, with which certificate.

Every answer is requested as `application/jose` and its signature checked (gateway/trust/registry.py:
the x5c certificate chained to the trust anchors and naming the registry, or a pinned key) before a
single field is read: an unsigned answer, a bad signature or an unknown signer is a SecurityError, never
a fallback. The registry is asked over https, or over http on loopback only (the sandbox). Answers are
cached per (identifier, process, security level), and threads asking the same question at once share
one request.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt

from gateway.channels.records import InfoRecord, RegistryAnswer, ServiceRecord
from gateway.clock import Clock, SystemClock
from gateway.errors import ConfigError, PermanentChannelError, SecurityError
from gateway.tokens import TokenSource, bearer_request, check_response
from gateway.trust.registry import RegistrySigners

JOSE = "application/jose"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_registry_url(url: str) -> None:
    """ConfigError unless `url` is https, or http on loopback (a signed answer over plain http elsewhere can
    be withheld or replayed by anyone on the way)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or "")):
        return
    raise ConfigError(f"network.service_registry_url {url}: the service registry is asked over https only "
                      "(http is allowed on loopback, for the sandbox)")


class ReceiverNotFound(PermanentChannelError):
    """The registry has no record of the receiver for the process asked about."""


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_answer(body: Any) -> RegistryAnswer:
    """A RegistryAnswer from the registry's JSON shape (reference/samples/service-registry/)."""
    if not isinstance(body, dict) or not isinstance(body.get("infoRecord"), dict):
        raise SecurityError("the service registry's answer has no infoRecord; refusing to use it")
    info = body["infoRecord"]
    name = _optional_str(info.get("organizationName")) or None
    records = []
    for entry in body.get("serviceRecords") or []:
        service = entry.get("service") or {}
        level = service.get("securityLevel")
        records.append(
            ServiceRecord(
                service=str(service.get("identifier", "")),
                process=str(entry.get("process", "")),
                document_types=tuple(str(t) for t in entry.get("documentTypes") or []),
                certificate_pem=_optional_str(entry.get("pemCertificate")),
                endpoint_url=_optional_str(service.get("endpointUrl")),
                service_code=_optional_str(service.get("serviceCode")),
                service_edition_code=_optional_str(service.get("serviceEditionCode")),
                security_level=int(level) if level is not None else None,
                resource=_optional_str(service.get("resource")),
                organisation_number=_optional_str(entry.get("organisationNumber")),
                organisation_name=name,
                fields=_other_fields(entry),
            )
        )
    return RegistryAnswer(
        info_record=InfoRecord(str(info.get("identifier", "")), str(info.get("organizationName", ""))),
        service_records=records,
    )


_READ_KEYS = frozenset({"process", "documentTypes", "pemCertificate", "organisationNumber", "service"})
_READ_SERVICE_KEYS = frozenset({"identifier", "endpointUrl", "serviceCode", "serviceEditionCode", "securityLevel",
                                "resource"})


def _other_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The record's keys this module does not read itself, for the channel that does."""
    others = {key: value for key, value in entry.items() if key not in _READ_KEYS}
    service = entry.get("service") or {}
    extra = {key: value for key, value in service.items() if key not in _READ_SERVICE_KEYS}
    if extra:
        others["service"] = extra
    return others


class _Flight:
    """One lookup under way; threads asking the same question wait for it instead of asking again."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: RegistryAnswer | None = None
        self.error: BaseException | None = None


class ServiceRegistryClient:
    """Looks receivers up in the service registry at `base_url` (…/adressetjeneste or sandbox /sr)."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        http: httpx.Client,
        cache_ttl_s: float = 300,
        clock: Clock | None = None,
        *,
        signers: RegistrySigners,
    ) -> None:
        check_registry_url(base_url)
        self.signers = signers
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, int | None], tuple[float, RegistryAnswer]] = {}
        self._flights: dict[tuple[str, str, int | None], _Flight] = {}  # lookups under way, by question
        self.cache_hits = 0  # for the metrics
        self.cache_misses = 0

    def lookup(
        self,
        identifier: str,
        process: str,
        security_level: int | None = None,
        conversation_id: str | None = None,
    ) -> RegistryAnswer:
        """The receiver's records for `process`; ReceiverNotFound when it has none."""
        identifier = identifier.removeprefix("0192:")
        key = (identifier, process, security_level)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > self.clock.monotonic():
                self.cache_hits += 1
                return cached[1]
            flight = self._flights.get(key)
            leading = flight is None
            if leading:
                self.cache_misses += 1  # one request for the question, however many wait for it
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            # The same question is being asked already: its answer (or its error) is ours too.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.answer is not None
            with self._lock:
                self.cache_hits += 1  # answered without a request of its own
            return flight.answer
        try:
            flight.answer = self._ask(key, conversation_id)
            return flight.answer
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def _ask(self, key: tuple[str, str, int | None], conversation_id: str | None) -> RegistryAnswer:
        identifier, process, security_level = key
        params: dict[str, str] = {}
        if security_level is not None:
            params["securityLevel"] = str(security_level)
        if conversation_id:
            params["conversationId"] = conversation_id
        url = f"{self.base_url}/identifier/{quote(identifier, safe='')}/process/{quote(process, safe=':')}"
        what = f"looking up {identifier} for {process} in the service registry"
        not_found = f"the service registry has no record of {identifier} for process {process}"
        response = bearer_request(self.http, self.tokens, what, "GET", url, params=params,
                                  headers={"Accept": JOSE})
        if response.status_code == 404:
            raise ReceiverNotFound(not_found)
        check_response(response, what)
        answer = parse_answer(self._verified_body(response))
        if not answer.service_records:
            raise ReceiverNotFound(not_found)
        with self._lock:
            self._cache[key] = (self.clock.monotonic() + self.cache_ttl_s, answer)
        return answer

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _verified_body(self, response: httpx.Response) -> Any:
        content_type = response.headers.get("content-type", "")
        compact = response.text.strip()
        if not content_type.startswith(JOSE) or compact.startswith(("{", "[")) or compact.count(".") != 2:
            raise SecurityError(
                "the service registry answered without a signature (not application/jose); "
                "unsigned answers are never accepted"
            )
        try:
            header = jwt.get_unverified_header(compact)
        except jwt.PyJWTError as exc:
            raise SecurityError(f"the service registry's answer is not a valid JWS: {exc}") from exc
        if header.get("alg") != "RS256":
            raise SecurityError(
                f"the service registry's answer is signed with {header.get('alg')!r}, not RS256"
            )
        try:
            payload = self.signers.payload(compact)
        except jwt.PyJWTError as exc:
            raise SecurityError(f"the service registry's answer has a bad signature: {exc}") from exc
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise SecurityError("the service registry's signed answer does not hold JSON") from exc

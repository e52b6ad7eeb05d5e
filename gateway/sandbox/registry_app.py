"""The sandbox service registry ("adressetjeneste"): who receives what, on which channel.

Answers have the shape of the real SR (see reference/samples/service-registry/); with
`Accept: application/jose` they come as a compact JWS signed with the sandbox key, verifiable
against `/jwk`. Every route but `/jwk` needs an access token with an `eformidling:*` scope.

A citizen in the catalogue's DPI directory (persons.py) is looked up in the sandbox's KRR as the real
registry looks one up: the token needs `eformidling:dpi` (403 without) and the KRR scopes, which the
registry's KRR call is made with (400 naming the missing ones); the records are chosen per process by the
real registry's DpiMessageRouter, with a print record unless `print=false`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.identifiers import is_person
from gateway.sandbox.auth import AccessTokens, Unauthorised, problem, unauthorised_handler
from gateway.sandbox.catalogue import (
    CHANNELS,
    SandboxCatalogue,
    SandboxOrganisation,
    document_types_for,
    dpv_resource_for,
)
from gateway.sandbox.persons import (
    DPI_REGISTRY_SCOPES,
    INFO_PROCESS,
    KRR_SCOPES,
    VEDTAK_PROCESS,
    PostalAddress,
    SandboxPerson,
    citizen_info,
    person_records,
)
from gateway.sandbox.signing import SandboxSigningKey

log = logging.getLogger(__name__)

REGISTRY_SCOPES = ("eformidling:dpo", "eformidling:dpv", "eformidling:dpf", "eformidling:dpi")
JOSE = "application/jose"
DIGITALPOST = (INFO_PROCESS, VEDTAK_PROCESS)

# serviceCode, serviceEditionCode, securityLevel, Altinn resource per channel.
SERVICE_DETAILS: dict[str, tuple[str | None, str | None, int, str | None]] = {
    "DPO": ("4192", "270815", 4, "eformidling-dpo-meldingsutveksling"),
    "DPF": (None, None, 4, None),
    "DPV": ("4255", "10", 3, None),  # the resource depends on the process: dpv_resource_for
    "DPI": ("4192", "270815", 4, None),
}


def info_record(organisation: SandboxOrganisation) -> dict[str, Any]:
    entity_type = "PERSON" if is_person(organisation.orgnr) else "ORGL"
    return {
        "identifier": organisation.orgnr,
        "organizationName": organisation.name,
        "postadresse": None,
        "entityType": {"name": entity_type},
    }


def service_record(
    organisation: SandboxOrganisation, channel: str, process: str, endpoint_url: str | None
) -> dict[str, Any]:
    service_code, edition_code, security_level, resource = SERVICE_DETAILS[channel]
    certificate = None if channel == "DPV" else organisation.certificate_pem
    if channel == "DPV":
        resource = dpv_resource_for(process)
    if channel == "DPF":
        certificate = organisation.dpf_certificate_pem or certificate
        security_level = organisation.dpf_security_level
    return {
        "organisationNumber": organisation.orgnr,
        "pemCertificate": certificate,
        "process": process,
        "documentTypes": document_types_for(process, channel),
        "service": {
            "identifier": channel,
            "endpointUrl": endpoint_url,
            "serviceCode": service_code,
            "serviceEditionCode": edition_code,
            "securityLevel": security_level,
            "resource": resource,
        },
    }


def registry_app(
    catalogue: SandboxCatalogue,
    signing_key: SandboxSigningKey,
    access_tokens: AccessTokens,
    endpoint_urls: dict[str, str],
) -> Starlette:
    """`endpoint_urls` maps channel code to the base URL the sandbox serves it at."""

    def answer(request: Request, body: dict[str, Any]) -> Response:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if JOSE in request.headers.get("accept", ""):
            return Response(signing_key.sign_bytes(raw), media_type=JOSE)
        return Response(raw, media_type="application/json")

    def organisation_or_404(request: Request) -> SandboxOrganisation | Response:
        access_tokens.caller_of(request, REGISTRY_SCOPES)
        identifier = request.path_params["identifier"]
        organisation = catalogue.find(identifier)
        if organisation is None:
            return problem(404, "Not Found", f"no organisation or person {identifier} in the registry")
        return organisation

    def person_or_none(request: Request) -> SandboxPerson | None:
        directory = catalogue.dpi
        identifier = request.path_params["identifier"]
        return directory.find(identifier) if directory is not None else None

    def person_answer(request: Request, person: SandboxPerson, processes: list[str]) -> Response:
        assert catalogue.dpi is not None
        caller = access_tokens.caller_of(request, DPI_REGISTRY_SCOPES)
        missing = [scope for scope in KRR_SCOPES if not {scope, f"krr:{scope}"} & caller.scopes]
        if missing:
            # The registry asks KRR with the caller's own token; KRR refuses it (a KontaktInfoException: 400).
            return JSONResponse({"error_code": "", "error_description": (
                f"KRR refused the lookup: the access token lacks the scope(s) {' '.join(missing)}")}, status_code=400)
        sender = catalogue.find(caller.orgnr)
        sender_name = sender.name if sender else f"Avsender {caller.orgnr}"
        return_address = PostalAddress(sender_name, "Postboks 1", "0101", "OSLO")  # the sender's, from BRREG
        print_wanted = request.query_params.get("print", "true").lower() != "false"
        service_records = person_records(person, processes, catalogue.dpi, endpoint_urls, return_address,
                                         print_wanted)
        if not service_records:
            return problem(404, "Not Found", f"no service record for the person for {', '.join(processes)}")
        return answer(request, {"infoRecord": citizen_info(person), "serviceRecords": service_records})

    def records(organisation: SandboxOrganisation, processes: list[str]) -> list[dict[str, Any]]:
        return [
            service_record(organisation, channel, process, endpoint_urls.get(channel))
            for process in processes
            for channel in organisation.channels_for(process)
        ]

    async def identifier_for_process(request: Request) -> Response:
        person = person_or_none(request)
        if person is not None:
            process = request.path_params["process"]
            if process not in DIGITALPOST:
                return problem(404, "Not Found", f"a person has no service record for process {process}")
            return person_answer(request, person, [process])
        found = organisation_or_404(request)
        if isinstance(found, Response):
            return found
        process = request.path_params["process"]
        service_records = records(found, [process])
        if not service_records:
            return problem(404, "Not Found", f"{found.orgnr} has no service record for process {process}")
        return answer(request, {"infoRecord": info_record(found), "serviceRecords": service_records})

    async def identifier(request: Request) -> Response:
        person = person_or_none(request)
        if person is not None:
            return person_answer(request, person, list(DIGITALPOST))
        found = organisation_or_404(request)
        if isinstance(found, Response):
            return found
        processes = sorted({p for channel in CHANNELS for p in found.channels.get(channel, set())})
        body = {"infoRecord": info_record(found), "serviceRecords": records(found, processes)}
        return answer(request, body)

    async def info(request: Request) -> Response:
        person = person_or_none(request)
        if person is not None:
            access_tokens.caller_of(request, REGISTRY_SCOPES)
            return answer(request, {"infoRecord": citizen_info(person)})
        found = organisation_or_404(request)
        if isinstance(found, Response):
            return found
        return answer(request, {"infoRecord": info_record(found)})

    async def virksert(request: Request) -> Response:
        found = organisation_or_404(request)
        if isinstance(found, Response):
            return found
        if not found.certificate_pem:
            return problem(404, "Not Found", f"{found.orgnr} has no enterprise certificate in the registry")
        return Response(found.certificate_pem, media_type="text/plain")

    async def jwk(request: Request) -> Response:
        return JSONResponse(signing_key.jwk_set())

    return Starlette(
        routes=[
            Route("/identifier/{identifier}/process/{process}", identifier_for_process),
            Route("/identifier/{identifier}", identifier),
            Route("/info/{identifier}", info),
            Route("/virksert/{identifier}", virksert),
            Route("/jwk", jwk),
        ],
        exception_handlers={Unauthorised: unauthorised_handler},
    )

"""A SvarUt/SvarInn service on loopback: the subset of KS's APIs that DPF uses.

Mounted at `/svarut` (through SandboxServer's `extra_apps`). SvarUt, REST v2 (reference/api/svarut/;
a Maskinporten token with scope ks:fiks from the sandbox token endpoint, and the headers IntegrasjonId
and IntegrasjonPassord of the account's integration):

    POST /svarut/api/v2/kontoer/{kontoId}/forsendelser              multipart: part `forsendelse` (JSON),
         then one part per document, in the order of `dokumenter`, `filename` = filnavn -> {"id": ...}
    GET  /svarut/api/v2/kontoer/{kontoId}/forsendelser/?eksternRef=  -> {"forsendelseIds": [...]}
    POST /svarut/api/v2/kontoer/{kontoId}/forsendelser/status-sok   {"forsendelseIds": [...]}
         -> {"statuser": [{id, status, sisteStatusEndring}]}

SvarInn, mottaksservice v1 (HTTP Basic: the receiving system's user name, which here is its orgnr, and
service password):

    GET  /svarut/tjenester/svarinn/mottaker/hentNyeForsendelser     forsendelser waiting (up to 100)
    GET  /svarut/tjenester/svarinn/forsendelse/{id}                 the file, CMS-encrypted to the receiver
    POST /svarut/tjenester/svarinn/kvitterMottak/forsendelse/{id}   taken: the forsendelse becomes LEST
    POST /svarut/tjenester/svarinn/mottakFeilet/forsendelse/{id}    {"feilmelding", "permanent"}

Errors are KS's ErrorMessage ({status, error, message, path}). Sandbox extras, without credentials:

    GET  /svarut/_sandbox/forsendelser     every forsendelse (status, history, files' SHA-256)
    DELETE /svarut/_sandbox/forsendelser/{id}  forget it, as SvarUt does once it is deleted there
    GET  /svarut/_sandbox/stats            request counters (status_sok_requests, ...)
    POST /svarut/_sandbox/inject           {"sender", "receiver", "kind": wrong_key|bad_zip|dotdot}
    POST /svarut/_sandbox/send             {"sender", "receiver", "title", "messageId", "conversationId"}:
         a one-PDF forsendelse from a municipality's archive, as if it had sent it through SvarUt
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.channels.dpf.client import FIKS_SCOPE
from gateway.sandbox.auth import AccessTokens, Unauthorised
from gateway.sandbox.svarut_store import Refused, SvarUtStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.sandbox.server import SandboxContext

log = logging.getLogger(__name__)
MAX_PART_BYTES = 1 << 30


def error(status: int, message: str, path: str = "") -> JSONResponse:
    return JSONResponse({"status": status, "error": {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                                                     404: "Not Found"}.get(status, "Error"),
                         "message": message, "path": path}, status_code=status)


def svarut_app(store: SvarUtStore, access_tokens: AccessTokens) -> Starlette:
    def account_of(request: Request) -> str:
        caller = access_tokens.caller_of(request, (FIKS_SCOPE,))
        owner = store.account_owner(request.path_params["konto"], request.headers.get("integrasjonid"),
                                    request.headers.get("integrasjonpassord"))
        if owner != caller.orgnr:
            raise Refused(403, f"the access token is {caller.orgnr}'s, not the account owner's")
        return owner

    def receiver_of(request: Request) -> str:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise Refused(401, "SvarInn needs HTTP Basic authentication")
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(401, "malformed Basic credentials") from None
        return store.receiving_system(username, password)

    async def send(request: Request) -> Response:
        sender = account_of(request)
        try:
            form = await request.form(max_part_size=MAX_PART_BYTES)
        except MultiPartException as exc:
            raise Refused(400, f"the multipart body cannot be read: {exc.message}") from None
        except ClientDisconnect:
            # The sender went away mid-upload (a crash, a lost connection): nothing was made.
            log.info("SvarUt: a send was cut off by its client; nothing made")
            return Response(status_code=400)
        try:
            items = list(form.multi_items())
            if not items or items[0][0] != "forsendelse":
                raise Refused(400, "the first part must be named 'forsendelse'")
            raw = items[0][1]
            text = (await raw.read()).decode() if isinstance(raw, UploadFile) else raw
            try:
                forsendelse = json.loads(text)
            except ValueError:
                raise Refused(400, "the forsendelse part is not JSON") from None
            parts: list[tuple[str, bytes]] = []
            for _name, value in items[1:]:
                if not isinstance(value, UploadFile) or not value.filename:
                    raise Refused(400, "every document part needs a filename")
                parts.append((value.filename, await value.read()))
        finally:
            await form.close()
        forsendelse_id = store.accept(sender, forsendelse, parts)
        log.info("SvarUt: forsendelse %s from %s", forsendelse_id, sender)
        return JSONResponse({"id": forsendelse_id})

    async def by_external_reference(request: Request) -> Response:
        sender = account_of(request)
        reference = request.query_params.get("eksternRef")
        if not reference:
            raise Refused(400, "the query parameter eksternRef is required")
        return JSONResponse({"forsendelseIds": store.by_external_reference(sender, reference)})

    async def status_search(request: Request) -> Response:
        sender = account_of(request)
        try:
            body = await request.json()
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        ids = body.get("forsendelseIds") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise Refused(400, "forsendelseIds is required")
        return JSONResponse({"statuser": store.statuses(sender, [str(i) for i in ids])})

    async def new_forsendelser(request: Request) -> Response:
        return JSONResponse(store.waiting_for(receiver_of(request)))

    async def download(request: Request) -> Response:
        path = store.download_of(receiver_of(request), request.path_params["id"])
        return FileResponse(path, media_type="application/octet-stream")

    async def acknowledge(request: Request) -> Response:
        store.acknowledge(receiver_of(request), request.path_params["id"])
        return Response(status_code=200)

    async def failed(request: Request) -> Response:
        receiver = receiver_of(request)
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("feilmelding"), str):
            raise Refused(400, "feilmelding is required")
        store.failed(receiver, request.path_params["id"], body["feilmelding"], bool(body.get("permanent")))
        return Response(status_code=200)

    async def sandbox_forsendelser(request: Request) -> Response:
        return JSONResponse(store.summary())

    async def sandbox_delete(request: Request) -> Response:
        if not store.delete(request.path_params["id"]):
            raise Refused(404, f"no forsendelse {request.path_params['id']}")
        return Response(status_code=204)

    async def sandbox_stats(request: Request) -> Response:
        return JSONResponse(dict(store.counters))

    async def sandbox_inject(request: Request) -> Response:
        body = await request.json()
        forsendelse_id = store.inject(str(body["sender"]), str(body["receiver"]), str(body["kind"]),
                                      str(body.get("title") or "Feil forsendelse"))
        return JSONResponse({"id": forsendelse_id})

    async def sandbox_send(request: Request) -> Response:
        body = await request.json()
        forsendelse_id = store.send_as(str(body["sender"]), str(body["receiver"]), str(body["title"]),
                                       str(body["messageId"]), str(body["conversationId"]))
        return JSONResponse({"id": forsendelse_id})

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return error(exc.status, exc.message, request.url.path)

    async def unauthorised(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Unauthorised)
        return error(exc.status, exc.detail, request.url.path)

    konto = "/api/v2/kontoer/{konto}/forsendelser"
    svarinn = "/tjenester/svarinn"
    return Starlette(
        routes=[
            Route(konto, send, methods=["POST"]),
            Route(f"{konto}/", by_external_reference, methods=["GET"]),
            Route(f"{konto}/status-sok", status_search, methods=["POST"]),
            Route(f"{svarinn}/mottaker/hentNyeForsendelser", new_forsendelser, methods=["GET"]),
            Route(f"{svarinn}/forsendelse/{{id}}", download, methods=["GET"]),
            Route(f"{svarinn}/kvitterMottak/forsendelse/{{id}}", acknowledge, methods=["POST"]),
            Route(f"{svarinn}/mottakFeilet/forsendelse/{{id}}", failed, methods=["POST"]),
            Route("/_sandbox/forsendelser", sandbox_forsendelser, methods=["GET"]),
            Route("/_sandbox/forsendelser/{id}", sandbox_delete, methods=["DELETE"]),
            Route("/_sandbox/stats", sandbox_stats, methods=["GET"]),
            Route("/_sandbox/inject", sandbox_inject, methods=["POST"]),
            Route("/_sandbox/send", sandbox_send, methods=["POST"]),
        ],
        exception_handlers={Refused: refused, Unauthorised: unauthorised},
    )


class SvarUtService:
    """The sandbox's SvarUt/SvarInn, for `SandboxServer(extra_apps={"/svarut": service})`; `store` is live
    once the server has started it."""

    def __init__(self, build_store: Any) -> None:
        self._build_store = build_store
        self._store: SvarUtStore | None = None

    def __call__(self, context: SandboxContext) -> ASGIApp:
        self._store = self._build_store(context)
        return svarut_app(self._store, context.access_tokens)

    @property
    def store(self) -> SvarUtStore:
        if self._store is None:
            raise RuntimeError("the SvarUt service has not been started by a SandboxServer")
        return self._store

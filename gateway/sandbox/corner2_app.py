"""DPI's Corner 2 (the sender's access point) on loopback, with a digital mailbox and a print service behind it.

Mounted at `/dpi` (the DPI endpoint the sandbox registry names). The API of Digdir's description
(reference/vectors/dpi/reference/c2-openapi_spec.yaml), every call with a Maskinporten token carrying
`digitalpostinnbygger:send` (401 without a token, 403 without the scope; problem+json):

    POST /dpi/messages/out[?kanal=]            multipart: `forretningsmelding` (the SBD as a JWT) and
                                               `dokumentpakke` (the CMS) -> 201; 400 with the reason when the
                                               JWT's signature, its x5c chain, the sender, the embedded token,
                                               the fingerprint or the 50 MB limit is wrong, or the id was sent
    GET  /dpi/messages/out/{id}/statuses       [{status OPPRETTET|SENDT|FEILET, timestamp, beskrivelse}];
                                               404 for a message Corner 2 never had, 410 for one it let go
    GET  /dpi/messages/in[?avsenderidentifikator=&kanal=&page_size=]
                                               receipts waiting: [{forretningsmelding}] (204 when none)
    POST /dpi/messages/in/{id}/read            the receipts offered under that id (a receipt carries its letter's
                                               messageId) are taken; 404 when there is none unread
    GET  /dpi/messages/in/{id}                 404: in version 1.0 only receipts come in

Sandbox extras, without credentials (as the other sandbox services have them):

    GET    /dpi/_sandbox/messages              every message: statuses, receipts, times accepted and delivered, polls
    DELETE /dpi/_sandbox/messages/{id}         let a message go (its statuses then answer 410)
    GET    /dpi/_sandbox/mailbox/{fnr}         the letters in a person's mailbox, with notifications
    GET    /dpi/_sandbox/mailbox/{fnr}/{messageId}/{name}   one document, byte for byte
    GET    /dpi/_sandbox/print                 the print jobs
    GET    /dpi/_sandbox/stats                 refused sends, the most status polls answered at once
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cryptography import x509
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.formats.keys import OrgIdentity
from gateway.sandbox.auth import Unauthorised, problem, unauthorised_handler
from gateway.sandbox.corner2_checks import DPI_SCOPE, Refused, verify_forretningsmelding
from gateway.sandbox.corner2_mailbox import Providers
from gateway.sandbox.corner2_store import Corner2Options, Corner2Store, Gone, OutMessage
from gateway.sandbox.streamed_form import StreamedForm

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.sandbox.server import SandboxContext

log = logging.getLogger(__name__)

MAX_DOKUMENTPAKKE_BYTES = 50 * 1024 * 1024  # DPI's limit (eformidling.md: DPI 50 MB)
KANAL = re.compile(r"^[A-Za-z0-9_-]{1,28}$")
DEFAULT_PAGE_SIZE = 100


class SendForm(StreamedForm):
    """The send's two parts: `forretningsmelding` kept in memory, `dokumentpakke` straight to a file, its
    SHA-256 taken and its size capped on the way."""

    max_fields = 8
    max_field_bytes = 1 << 20

    def __init__(self, target: Path) -> None:
        super().__init__()
        self.target = target
        self.size = 0
        self.digest = hashlib.sha256()
        self.has_package = False

    def _open_file(self, name: str, options: dict[bytes, bytes], headers: dict[bytes, bytes]) -> BinaryIO | None:
        if name != "dokumentpakke":
            return None
        if self.has_package:
            raise Refused(400, "the form holds more than one dokumentpakke")
        self.has_package = True
        return open(self.target, "wb")

    def _file_data(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_DOKUMENTPAKKE_BYTES:
            raise Refused(400, f"the dokumentpakke is larger than DPI's limit of {MAX_DOKUMENTPAKKE_BYTES} bytes "
                               "(50 MB)")
        self.digest.update(chunk)

    def _problem(self, words: str) -> Exception:
        return Refused(400, words)

    def discard(self) -> None:
        self._close_file()
        self.target.unlink(missing_ok=True)


def _validation_problem(exc: Refused) -> JSONResponse:
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
    return problem(exc.status, titles.get(exc.status, "Error"), exc.detail)


def corner2_app(store: Corner2Store, providers: Providers, context: SandboxContext) -> Starlette:
    certificates = [cert for pem in context.catalogue.trusted_ca_pems
                    for cert in x509.load_pem_x509_certificates(pem.encode("ascii"))]
    roots = [cert for cert in certificates if cert.subject == cert.issuer]
    intermediates = [cert for cert in certificates if cert.subject != cert.issuer]
    incoming = context.data_dir / "corner2" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    access_tokens, clock = context.access_tokens, context.clock

    def caller(request: Request) -> str:
        # A token delegated to us (consumer_org) still speaks for the client that sends: its messages, statuses
        # and receipts are the supplier's, who polls for them with a token of its own.
        found = access_tokens.caller_of(request, (DPI_SCOPE,))
        return found.supplier or found.orgnr

    async def read_form(request: Request, form: SendForm) -> str:
        media_type, options = parse_options_header(request.headers.get("content-type"))
        if media_type != b"multipart/form-data" or not options.get(b"boundary"):
            raise Refused(400, "the body must be multipart/form-data with the parts forretningsmelding and "
                               "dokumentpakke")
        refused: Refused | None = None
        parser = MultipartParser(options[b"boundary"], form.callbacks())
        # A refused body is still read to its end (and dropped), so the client hears the answer instead of
        # a connection closed under its upload.
        async for chunk in request.stream():
            if refused is not None:
                continue
            try:
                parser.write(chunk)
            except Refused as exc:
                refused = exc
            except FormParserError as exc:
                refused = Refused(400, f"the multipart body cannot be read: {exc}")
        if refused is not None:
            raise refused
        try:
            parser.finalize()
        except FormParserError as exc:
            raise Refused(400, f"the multipart body cannot be read: {exc}") from exc
        if not form.complete:
            raise Refused(400, "the multipart body ends before its closing boundary")
        token = next((value for name, value in form.fields if name == "forretningsmelding"), None)
        if not token or not form.has_package:
            raise Refused(400, "the form needs both parts: forretningsmelding (the JWT) and dokumentpakke (the CMS)")
        return token.strip()

    async def send(request: Request) -> Response:
        owner = caller(request)
        kanal = request.query_params.get("kanal")
        form = SendForm(incoming / f"{uuid.uuid4()}.cms")
        message_id = None
        try:
            if kanal is not None and not KANAL.match(kanal):
                raise Refused(400, "kanal may hold only a-z, A-Z, 0-9, _ and -, at most 28 characters")
            token = await read_form(request, form)
            now = clock.now()
            message = await run_in_threadpool(verify_forretningsmelding, token, form.digest.digest(), access_tokens,
                                              roots, intermediates, now)
            message_id = message.message_id
            if not store.claim(message_id):
                raise Refused(400, f"a message with the id {message_id} has already been sent; a new message needs "
                                   "a new instanceIdentifier")
        except Refused as exc:
            form.discard()
            store.refuse(message_id, exc.status, exc.detail)
            log.info("Corner 2 refused a message from %s: %s", owner, exc.detail)
            return _validation_problem(exc)
        except ClientDisconnect:
            form.discard()
            return Response(status_code=400)
        failure = providers.handled_by(message)
        store.add(OutMessage(message_id, message.conversation_id, owner, message.sender, message.receiver,
                             message.type, kanal, message.avsenderidentifikator, now), failure is None, failure)
        try:
            if failure is None:
                await run_in_threadpool(providers.deliver, message, form.target, now)
        finally:
            form.target.unlink(missing_ok=True)
        return Response(status_code=201)

    async def statuses(request: Request) -> Response:
        owner = caller(request)
        store.status_request_started()
        try:
            if store.status_delay_s:
                await asyncio.sleep(store.status_delay_s)  # a slow Corner 2: polls on the wire at the same time
            message_id = request.path_params["id"]
            try:
                found = store.statuses(message_id, owner, clock.now())
            except Gone:
                return problem(410, "Gone", f"the message {message_id} is no longer kept by Corner 2")
            if found is None:
                return problem(404, "Not Found", f"no message {message_id} sent by 0192:{owner}")
            return JSONResponse([status.to_json() for status in found])
        finally:
            store.status_request_ended()

    async def messages_in(request: Request) -> Response:
        owner = caller(request)
        size = request.query_params.get("page_size", str(DEFAULT_PAGE_SIZE))
        if not size.isdigit() or not 0 < int(size) <= 1000:
            return problem(400, "Bad Request", "page_size must be a number from 1 to 1000")
        waiting = store.waiting_receipts(owner, clock.now(), request.query_params.get("kanal"),
                                         request.query_params.get("avsenderidentifikator"), int(size))
        if not waiting:
            return Response(status_code=204)
        return JSONResponse([{"forretningsmelding": receipt.forretningsmelding} for receipt in waiting])

    async def mark_read(request: Request) -> Response:
        owner = caller(request)
        if not store.mark_read(request.path_params["id"], owner, clock.now()):
            return problem(404, "Not Found", f"no incoming message {request.path_params['id']} for 0192:{owner}")
        return Response(status_code=200)

    async def message_in(request: Request) -> Response:
        caller(request)
        return problem(404, "Not Found", "no dokumentpakke: only receipts come in (version 1.0)")

    # ---- sandbox inspection ----------------------------------------------------------------------
    async def sandbox_messages(request: Request) -> Response:
        def describe() -> list[dict[str, Any]]:
            delivered = providers.delivery_counts()
            return [{**entry, "deliveries": delivered[entry["messageId"]]} for entry in store.describe()]

        # Off the event loop: thousands of letters take a while to list, and Corner 2 keeps answering meanwhile.
        return JSONResponse(await run_in_threadpool(describe))

    async def sandbox_forget(request: Request) -> Response:
        if not store.forget(request.path_params["id"]):
            return problem(404, "Not Found", f"no message {request.path_params['id']}")
        return Response(status_code=204)

    async def sandbox_mailbox(request: Request) -> Response:
        return JSONResponse([letter.to_json() for letter in providers.mailbox(request.path_params["fnr"])])

    async def sandbox_document(request: Request) -> Response:
        for letter in providers.mailbox(request.path_params["fnr"]):
            if letter.message_id == request.path_params["message_id"]:
                for document in letter.documents:
                    if document.name == request.path_params["name"]:
                        return FileResponse(document.path, media_type=document.mime_type)
        return problem(404, "Not Found", "no such document in that mailbox")

    async def sandbox_print(request: Request) -> Response:
        return JSONResponse([job.to_json() for job in providers.print_jobs()])

    async def sandbox_stats(request: Request) -> Response:
        return JSONResponse({"refused": [{"messageId": m, "status": s, "detail": d} for m, s, d in store.refused],
                             "mostStatusRequestsAtOnce": store.most_status_requests_at_once})

    return Starlette(
        routes=[
            Route("/messages/out", send, methods=["POST"]),
            Route("/messages/out/{id}/statuses", statuses, methods=["GET"]),
            Route("/messages/in", messages_in, methods=["GET"]),
            Route("/messages/in/{id}/read", mark_read, methods=["POST"]),
            Route("/messages/in/{id}", message_in, methods=["GET"]),
            Route("/_sandbox/messages", sandbox_messages, methods=["GET"]),
            Route("/_sandbox/messages/{id}", sandbox_forget, methods=["DELETE"]),
            Route("/_sandbox/mailbox/{fnr}", sandbox_mailbox, methods=["GET"]),
            Route("/_sandbox/mailbox/{fnr}/{message_id}/{name:path}", sandbox_document, methods=["GET"]),
            Route("/_sandbox/print", sandbox_print, methods=["GET"]),
            Route("/_sandbox/stats", sandbox_stats, methods=["GET"]),
        ],
        exception_handlers={Unauthorised: unauthorised_handler},
    )


@dataclass
class Corner2Service:
    """The sandbox's Corner 2, for `SandboxServer(extra_apps={"/dpi": service})`. `mailbox_identity` and
    `print_identity` are the providers' keys (receipts are signed, packages decrypted with them); `store` and
    `providers` are live once a server has started it."""

    mailbox_identity: OrgIdentity
    print_identity: OrgIdentity
    options: Corner2Options = field(default_factory=Corner2Options)

    def __post_init__(self) -> None:
        self._store: Corner2Store | None = None
        self._providers: Providers | None = None

    def __call__(self, context: SandboxContext) -> ASGIApp:
        directory = context.catalogue.dpi
        if directory is None:
            raise RuntimeError("the sandbox's Corner 2 needs persons: the catalogue has no DPI directory")
        self._store = Corner2Store(self.options)
        self._providers = Providers(context.data_dir / "corner2", directory, self.mailbox_identity,
                                    self.print_identity, self._store, self.options)
        return corner2_app(self._store, self._providers, context)

    @property
    def store(self) -> Corner2Store:
        if self._store is None:
            raise RuntimeError("Corner 2 has not been started by a SandboxServer")
        return self._store

    @property
    def providers(self) -> Providers:
        if self._providers is None:
            raise RuntimeError("Corner 2 has not been started by a SandboxServer")
        return self._providers

    def describe(self) -> dict[str, Any]:
        return {"messages": self.store.describe()}


__all__ = ["MAX_DOKUMENTPAKKE_BYTES", "Corner2Service", "corner2_app"]

"""A DPV correspondence service on loopback: the subset of the Altinn 3 Correspondence API DPV uses.

Mounted at `/correspondence` (through SandboxServer's `extra_apps`), its routes are
`/api/v1/correspondence...`, so the full paths match reference/api/altinn-correspondence-v1.json:

    POST /correspondence/api/v1/correspondence/upload         multipart: the correspondence, its
         notification and its attachments (`attachments` file parts, metadata in
         Correspondence.Content.Attachments[i].*); scope altinn:correspondence.write
    GET  /correspondence/api/v1/correspondence                ids; query sendersReference, resourceId,
         status, role (Sender, Recipient, RecipientAndSender: the default)
    GET  /correspondence/api/v1/correspondence/{id}           CorrespondenceOverviewExt (with `read`)
    GET  /correspondence/api/v1/correspondence/{id}/details   CorrespondenceDetailsExt (history, notifications)
    POST /correspondence/api/v1/correspondence/{id}/markasread  as the recipient, scope .read
    POST /correspondence/api/v1/correspondence/{id}/confirm     as the recipient, scope .read
    GET  /correspondence/api/v1/correspondence/{id}/attachment/{attachmentId}/download  as the recipient

Reads need altinn:correspondence.read or .write; the sender sees its own correspondences, the
recipient sees them once published; anyone else gets 404, as for one that does not exist. Errors
are ProblemDetails with Altinn's words and error number (`errorCode`): 400 for a bad form, 401
without a valid token, 403 without the scope or for a resource that is not a DPV resource, 404 for
a recipient who is not on the sandbox network (1029), 409 for a known IdempotentKey (1034).
Recipients may be organisations or people in the catalogue; one correspondence is made per recipient.

Sandbox extras, without a token (loopback only):
    GET  /correspondence/_sandbox/notifications[?recipient=<orgnr>&all=true]  the varsler sent
    GET  /correspondence/_sandbox/correspondences                            every correspondence
    POST /correspondence/_sandbox/correspondences/{id}/markasread            as if the recipient read it
    POST /correspondence/_sandbox/correspondences/{id}/fail  {"reason": ...}  make it Failed
The lifecycle (publish, notification, read after a delay) is described in correspondence_store.py.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.channels.dpv.client import (
    CORRESPONDENCE_READ_SCOPE,
    CORRESPONDENCE_WRITE_SCOPE,
    DPV_PROXY_SCOPE,
    ORGANISATION_URN,
    PERSON_URN,
)
from gateway.clock import Clock
from gateway.sandbox.altinn_problem import download_errors, unauthorised_handler
from gateway.sandbox.altinn_problem import problem as altinn_problem
from gateway.sandbox.auth import ALTINN, AccessTokens, Caller, Unauthorised
from gateway.sandbox.catalogue import DPV_RESOURCES, SandboxCatalogue
from gateway.sandbox.correspondence_form import UploadForm, UploadProblem
from gateway.sandbox.correspondence_records import CorrespondenceOptions, RecordedNotification, StoredCorrespondence
from gateway.sandbox.correspondence_rules import read_upload
from gateway.sandbox.correspondence_store import CorrespondenceStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.sandbox.server import SandboxContext

log = logging.getLogger(__name__)

# A sender comes through Digdir's proxy (eformidling:dpv) or to Altinn itself (.write); either way with an
# Altinn token, exchanged for the Maskinporten token.
SEND_SCOPES = (DPV_PROXY_SCOPE, CORRESPONDENCE_WRITE_SCOPE)
READ_SCOPES = (CORRESPONDENCE_READ_SCOPE, *SEND_SCOPES)
ATTACHMENT_LIFETIME = timedelta(days=365)
ROLES = ("Recipient", "Sender", "RecipientAndSender")


def problem(status: int, detail: str, code: int = 0) -> JSONResponse:
    """An RFC 7807 ProblemDetails, with Altinn's error number as `errorCode` where it has one."""
    return altinn_problem(status, None, detail, code)


def not_found(correspondence_id: str) -> JSONResponse:
    return problem(404, f"The requested correspondence was not found ({correspondence_id})", 1001)


def party_urn(party: str) -> str:
    return f"{PERSON_URN if len(party) == 11 else ORGANISATION_URN}{party}"


def _contact(recipient: str) -> dict[str, Any]:
    """The fictional contact details of a sandbox recipient, where the varsel "goes"."""
    key = "nationalIdentityNumber" if len(recipient) == 11 else "organizationNumber"
    return {"emailAddress": f"varsel@{recipient}.sandbox.invalid", "mobileNumber": "+4799999999",
            key: recipient, "isReserved": False}


def _notification_json(notification: RecordedNotification, correspondence: StoredCorrespondence) -> dict[str, Any]:
    """NotificationExt: the order and how it went."""
    if notification.cancelled:
        processing, text = "Cancelled", "The notification was not needed, or the correspondence failed"
    elif notification.sent:
        processing, text = "Completed", "The notification has been sent"
    else:
        processing, text = "Registered", "The notification waits for its send time"
    changed = notification.sent or notification.cancelled or notification.created
    uses_email = notification.channel in ("Email", "EmailAndSms", "EmailPreferred")
    uses_sms = notification.channel in ("Sms", "EmailAndSms", "SmsPreferred")

    def channel_status(succeeded_status: str) -> dict[str, Any]:
        status = succeeded_status if notification.sent else ("Cancelled" if notification.cancelled else "New")
        return {"id": notification.id, "succeeded": bool(notification.sent),
                "recipient": _contact(notification.recipient),
                "sendStatus": {"status": status, "description": text, "lastUpdate": changed}}

    return {
        "id": notification.id, "sendersReference": None, "requestedSendTime": notification.requested_send_time,
        "creator": "digdir", "created": notification.created, "isReminder": notification.is_reminder,
        "notificationChannel": notification.channel, "ignoreReservation": None,
        "resourceId": correspondence.resource_id,
        "processingStatus": {"status": processing, "description": text, "lastUpdate": changed},
        "notificationStatusDetails": {
            "email": channel_status("Succeeded") if uses_email else None,
            "sms": channel_status("Accepted") if uses_sms else None,
        },
    }


def _common_json(correspondence: StoredCorrespondence) -> dict[str, Any]:
    body = dict(correspondence.request)
    body["content"] = dict(body["content"]) | {"attachments": [
        {"fileName": a.file_name, "displayName": a.display_name, "isEncrypted": a.is_encrypted,
         "checksum": a.checksum, "sendersReference": a.senders_reference, "id": a.id,
         "dataLocationType": "AltinnCorrespondenceAttachment", "created": a.created, "status": "Published",
         "statusText": "Attachment is published", "statusChanged": a.created, "dataType": a.data_type,
         # A date-time, never null, in the description: Altinn keeps an attachment for a limited time.
         "expirationTime": (datetime.fromisoformat(a.created) + ATTACHMENT_LIFETIME).isoformat()}
        for a in correspondence.attachments
    ]}
    return body | {
        "sender": f"0192:{correspondence.sender}", "recipient": party_urn(correspondence.recipient),
        "correspondenceId": correspondence.id, "created": correspondence.created,
        "status": correspondence.status, "statusText": correspondence.status_text,
        "statusChanged": correspondence.status_changed, "published": correspondence.published,
        "altinn2CorrespondenceId": None,
    }


def details_json(correspondence: StoredCorrespondence) -> dict[str, Any]:
    """CorrespondenceDetailsExt."""
    return _common_json(correspondence) | {
        "notifications": [_notification_json(n, correspondence) for n in correspondence.notifications],
        "statusHistory": [{"status": status, "statusText": text, "statusChanged": at}
                          for status, text, at in correspondence.history],
    }


def overview_json(correspondence: StoredCorrespondence) -> dict[str, Any]:
    """CorrespondenceOverviewExt."""
    return _common_json(correspondence) | {
        "notifications": [{"notificationOrderId": n.id, "isReminder": n.is_reminder}
                          for n in correspondence.notifications],
        "read": correspondence.read,
    }


def correspondence_app(store: CorrespondenceStore, access_tokens: AccessTokens, catalogue: SandboxCatalogue,
                       clock: Clock) -> Starlette:
    def visible(request: Request, caller: Caller, recipient_only: bool = False) -> StoredCorrespondence | None:
        found = store.get(request.path_params["correspondence_id"])
        if found is None:
            return None
        if found.recipient == caller.orgnr and found.published is not None:
            return found
        if found.sender == caller.orgnr and not recipient_only:
            return found
        return None

    async def upload(request: Request) -> Response:
        caller = access_tokens.caller_of(request, SEND_SCOPES, kind=ALTINN)
        media_type, options = parse_options_header(request.headers.get("content-type"))
        if media_type != b"multipart/form-data" or not options.get(b"boundary"):
            return problem(415, "the body must be multipart/form-data (with a boundary)")
        form = UploadForm(store.incoming)
        try:
            parser = MultipartParser(options[b"boundary"], form.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
            if not form.complete:
                raise UploadProblem(400, 0, "the multipart body ends before its closing boundary")
            upload_request = read_upload(form, clock.now())
            if upload_request.sender and upload_request.sender.removeprefix("0192:") != caller.orgnr:
                raise UploadProblem(403, 0, f"the access token speaks for 0192:{caller.orgnr}, not for the "
                                            f"sender {upload_request.sender}")
            if upload_request.resource_id not in DPV_RESOURCES:
                raise UploadProblem(403, 4008, f"Resource not whitelisted: {upload_request.resource_id} is not "
                                               "a DPV resource on the sandbox network (eformidling-dpv-<area>)")
            unknown = [r for r in upload_request.recipients if not catalogue.knows(r)]
            if unknown:
                raise UploadProblem(404, 1029, "Could not find partyId for the following recipients: "
                                               f"{', '.join(party_urn(r) for r in unknown)}")
            key = upload_request.idempotent_key
            if key and store.by_idempotent_key(caller.orgnr, key):
                raise UploadProblem(409, 1034, "A correspondence with the same idempotent key already exists")
            try:
                created, attachment_ids = store.create(caller.orgnr, upload_request)
            except sqlite3.IntegrityError as exc:  # the same key, uploaded at the same moment
                raise UploadProblem(409, 1034, "A correspondence with the same idempotent key already exists") \
                    from exc
        except UploadProblem as refused:
            form.discard()
            return problem(refused.status, refused.detail, refused.code)
        except FormParserError as exc:
            form.discard()
            return problem(400, f"the multipart body cannot be read: {exc}")
        except ClientDisconnect:
            form.discard()
            return problem(400, "the upload failed: the client went away")
        except BaseException:
            form.discard()  # a disk error or a cancelled request leaves no partial file behind
            raise
        log.debug("correspondence(s) %s uploaded by %s", [c for c, _ in created], caller.orgnr)
        with_notification = upload_request.notification is not None
        return JSONResponse({
            "correspondences": [
                {"correspondenceId": correspondence_id, "status": "Initialized", "recipient": party_urn(recipient),
                 "notifications": [{"orderId": n.id, "isReminder": n.is_reminder, "status": "Success"}
                                   for n in store.notifications(recipient, sent_only=False)
                                   if n.correspondence_id == correspondence_id] if with_notification else None}
                for correspondence_id, recipient in created
            ],
            "attachmentIds": attachment_ids,
        })

    async def list_correspondences(request: Request) -> Response:
        caller = access_tokens.caller_of(request, READ_SCOPES, kind=ALTINN)
        query = request.query_params
        role = query.get("role") or "RecipientAndSender"
        if role not in ROLES:
            return problem(400, f"role must be one of {', '.join(ROLES)}")
        ids = store.find(caller.orgnr, role, query.get("sendersReference"), query.get("resourceId"),
                         query.get("status"))
        return JSONResponse({"ids": ids})

    async def overview(request: Request) -> Response:
        found = visible(request, access_tokens.caller_of(request, READ_SCOPES, kind=ALTINN))
        return JSONResponse(overview_json(found)) if found else not_found(request.path_params["correspondence_id"])

    async def details(request: Request) -> Response:
        found = visible(request, access_tokens.caller_of(request, READ_SCOPES, kind=ALTINN))
        return JSONResponse(details_json(found)) if found else not_found(request.path_params["correspondence_id"])

    def recipient_of(request: Request) -> Caller:
        return access_tokens.caller_of(request, (CORRESPONDENCE_READ_SCOPE,), kind=ALTINN)

    async def mark_as_read(request: Request) -> Response:
        found = visible(request, recipient_of(request), recipient_only=True)
        if found is None or not store.mark_read(found.id):
            return not_found(request.path_params["correspondence_id"])
        return JSONResponse(found.id)

    async def confirm(request: Request) -> Response:
        found = visible(request, recipient_of(request), recipient_only=True)
        if found is None:
            return not_found(request.path_params["correspondence_id"])
        if not store.confirm(found.id):
            return problem(400, "the correspondence must be read before it can be confirmed")
        return JSONResponse(found.id)

    async def download(request: Request) -> Response:
        found = visible(request, recipient_of(request), recipient_only=True)
        attachment_id = request.path_params["attachment_id"]
        attachment = next((a for a in found.attachments if a.id == attachment_id), None) if found else None
        if attachment is None:
            return problem(404, f"The requested attachment was not found ({attachment_id})", 2001)
        # As the description has it: the bytes as application/octet-stream, whatever the attachment's dataType.
        return FileResponse(attachment.path, media_type="application/octet-stream", filename=attachment.file_name)

    async def sandbox_notifications(request: Request) -> Response:
        everything = request.query_params.get("all", "").lower() == "true"
        found = store.notifications(request.query_params.get("recipient"), sent_only=not everything)
        return JSONResponse([notification.as_json() for notification in found])

    async def sandbox_correspondences(request: Request) -> Response:
        return JSONResponse(store.summary())

    async def sandbox_mark_as_read(request: Request) -> Response:
        correspondence_id = request.path_params["correspondence_id"]
        if not store.mark_read(correspondence_id):
            return problem(404, f"no published correspondence {correspondence_id} to mark as read")
        return JSONResponse(correspondence_id)

    async def sandbox_fail(request: Request) -> Response:
        correspondence_id = request.path_params["correspondence_id"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return problem(400, 'the body must be JSON with a "reason" for the failure')
        if not store.fail(correspondence_id, reason):
            return not_found(correspondence_id)
        return JSONResponse(correspondence_id)

    base = "/api/v1/correspondence"
    return Starlette(
        routes=[
            Route(f"{base}/upload", upload, methods=["POST"]),
            Route(base, list_correspondences, methods=["GET"]),
            Route(f"{base}/{{correspondence_id}}", overview, methods=["GET"]),
            Route(f"{base}/{{correspondence_id}}/details", details, methods=["GET"]),
            Route(f"{base}/{{correspondence_id}}/markasread", mark_as_read, methods=["POST"]),
            Route(f"{base}/{{correspondence_id}}/confirm", confirm, methods=["POST"]),
            Route(f"{base}/{{correspondence_id}}/attachment/{{attachment_id}}/download", download_errors(download),
                  methods=["GET"]),
            Route("/_sandbox/notifications", sandbox_notifications, methods=["GET"]),
            Route("/_sandbox/correspondences", sandbox_correspondences, methods=["GET"]),
            Route("/_sandbox/correspondences/{correspondence_id}/markasread", sandbox_mark_as_read,
                  methods=["POST"]),
            Route("/_sandbox/correspondences/{correspondence_id}/fail", sandbox_fail, methods=["POST"]),
        ],
        exception_handlers={Unauthorised: unauthorised_handler},
    )


class CorrespondenceService:
    """The sandbox's correspondence service, for `SandboxServer(extra_apps={"/correspondence": service})`.

    The server calls it with its context when it starts; from then on `store` is the live store
    (tests read notifications from it, mark correspondences read or failed). `close()` after the
    server has stopped.
    """

    def __init__(self, options: CorrespondenceOptions | None = None) -> None:
        self.options = options or CorrespondenceOptions()
        self._store: CorrespondenceStore | None = None

    def __call__(self, context: SandboxContext) -> ASGIApp:
        self.close()
        names = {organisation.orgnr: organisation.name for organisation in context.catalogue.organisations}
        if context.catalogue.dpi is not None:
            names |= {person.fnr: person.name for person in context.catalogue.dpi.persons.values()}
        self._store = CorrespondenceStore(context.data_dir / "correspondence", context.clock, self.options, names)
        return correspondence_app(self._store, context.access_tokens, context.catalogue, context.clock)

    @property
    def store(self) -> CorrespondenceStore:
        if self._store is None:
            raise RuntimeError("the correspondence service has not been started by a SandboxServer")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

"""An automatic municipality on the sandbox network: it receives forsendelser through SvarInn, takes
them into its archive (kvitterMottak, so SvarUt's state moves to LEST) and, with `reply`, answers in
the same conversation through SvarUt: a small PDF to the sender's `svarSendesTil`, carrying the
conversationId it was sent, `svarPaForsendelse` naming the original. It talks to the sandbox through
the DPF channel's own clients, over HTTP on loopback; a forsendelse it cannot read it refuses with
mottakFeilet, and one bad forsendelse never stops the loop.
"""

from __future__ import annotations

import io
import logging
import shutil
import threading
import uuid
from pathlib import Path

import httpx
from cryptography import x509

from gateway.channels.dpf.client import (
    FIKS_SCOPE,
    SvarInnClient,
    SvarInnCredentials,
    SvarUtClient,
    SvarUtCredentials,
    UploadDocument,
)
from gateway.channels.dpf.forsendelse import CONVERSATION_ID_KEY, MESSAGE_ID_KEY, PROCESS_KEY, extra_metadata
from gateway.channels.dpf.inbound import extract_forsendelse, sbd_of, sender_of
from gateway.clock import SystemClock
from gateway.errors import GatewayError
from gateway.formats.cms import encrypt_stream
from gateway.formats.keys import OrgIdentity
from gateway.maskinporten import GrantKey, Maskinporten, default_client_id
from gateway.outbound_http import default_tls_context
from gateway.sandbox.peer import small_pdf
from gateway.sandbox.svarut_store import account_id_for, integration_id_for, password_for

log = logging.getLogger(__name__)
_REPLY_NAMESPACE = uuid.UUID("3d0f7f0e-9a41-4c55-8b8e-2e0d5b7f6c19")


def reply_message_id(original_id: str) -> str:
    return str(uuid.uuid5(_REPLY_NAMESPACE, original_id))


class MunicipalityPeer:
    def __init__(
        self,
        orgnr: str,
        name: str,
        identity: OrgIdentity,
        ks_certificate: x509.Certificate,
        svarut_url: str,
        svarinn_url: str,
        token_url: str,
        token_audience: str,
        work_dir: Path,
        reply: bool = False,
        poll_interval: float = 0.5,
    ) -> None:
        self.orgnr = orgnr
        self.name = name
        self.identity = identity
        self.ks_certificate = ks_certificate
        self.reply = reply
        self.poll_interval = poll_interval
        self.work_dir = Path(work_dir)
        self.archive = self.work_dir / "archive"
        self.archive.mkdir(parents=True, exist_ok=True)
        self.clock = SystemClock()
        self._http = httpx.Client(timeout=60, verify=default_tls_context())
        maskinporten = Maskinporten(token_url, token_audience, default_client_id(orgnr),
                                    GrantKey(identity.private_key, certificate=identity.certificate), self._http,
                                    self.clock)
        tokens = maskinporten.tokens((FIKS_SCOPE,))
        self._svarut = SvarUtClient(svarut_url, SvarUtCredentials(
            account_id_for(orgnr), integration_id_for(orgnr), password_for(orgnr, "integrasjon")), tokens, self._http)
        self._svarinn = SvarInnClient(svarinn_url, SvarInnCredentials(orgnr, password_for(orgnr, "svarinn")),
                                      self._http)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.archived: list[str] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"efm-sandbox-kommune-{self.orgnr}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._http.close()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except GatewayError as exc:
                log.warning("municipality %s: polling SvarInn failed: %s", self.orgnr, exc)

    def poll_once(self) -> int:
        handled = 0
        for forsendelse in self._svarinn.new_forsendelser():
            forsendelse_id = str(forsendelse.get("id"))
            try:
                self._take(forsendelse_id, forsendelse)
                handled += 1
            except GatewayError as exc:
                log.warning("municipality %s: forsendelse %s refused: %s", self.orgnr, forsendelse_id, exc)
                try:
                    self._svarinn.reject(forsendelse_id, str(exc), permanent=True)
                except GatewayError as again:
                    log.warning("municipality %s: mottakFeilet for %s failed: %s", self.orgnr, forsendelse_id, again)
        return handled

    def _take(self, forsendelse_id: str, forsendelse: dict) -> None:
        folder = self.archive / forsendelse_id
        shutil.rmtree(folder, ignore_errors=True)
        download = io.BytesIO()
        self._svarinn.download(forsendelse_id, download, max_bytes=1 << 30)
        sbd = sbd_of(forsendelse, self.orgnr, self.clock.now())
        extract_forsendelse(forsendelse, sbd, download, self.identity, self.work_dir / "work", folder, False)
        if self.reply:
            self._reply(forsendelse_id, forsendelse)
        self._svarinn.acknowledge(forsendelse_id)
        self.archived.append(forsendelse_id)
        log.info("municipality %s archived forsendelse %s", self.orgnr, forsendelse_id)

    def _reply(self, forsendelse_id: str, forsendelse: dict) -> None:
        sender = sender_of(forsendelse)
        if sender is None:
            return
        metadata = extra_metadata(forsendelse)
        message_id = reply_message_id(metadata.get(MESSAGE_ID_KEY) or forsendelse_id)
        if self._svarut.find_by_external_reference(message_id):
            return  # answered before a restart or a lost kvitterMottak
        conversation_id = metadata.get(CONVERSATION_ID_KEY) or forsendelse_id
        title = f"Svar: {forsendelse.get('tittel') or 'forsendelse'}"
        envelope = io.BytesIO()
        encrypt_stream(io.BytesIO(small_pdf(title)), envelope, self.ks_certificate)
        reply = {
            "tittel": title[:1000],
            "mottaker": {"navn": sender, "digitalId": sender},
            "svarSendesTil": {"navn": self.name, "digitalId": self.orgnr},
            "svarPaForsendelse": forsendelse_id,
            "kunDigitalLevering": True,
            "kryptert": True,
            "eksternReferanse": message_id,
            "korrelasjonsid": conversation_id,
            "metadataFraAvleverendeSystem": {"tittel": title[:1000], "ekstraMetadata": [
                {"key": MESSAGE_ID_KEY, "value": message_id},
                {"key": CONVERSATION_ID_KEY, "value": conversation_id},
                {"key": PROCESS_KEY, "value": metadata.get(PROCESS_KEY) or ""},
            ]},
            "dokumenter": [{"filnavn": "svar.pdf", "mimeType": "application/pdf"}],
        }
        self._svarut.send(reply, [UploadDocument("svar.pdf", envelope.getvalue())])

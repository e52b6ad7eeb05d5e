"""channels.dpv in config.yaml: Digdir's correspondence proxy, status polling and the default notification."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.channels.kind import SettingsBlock
from gateway.environments import PRODUCTION, TEST


@dataclass(frozen=True)
class DpvChannelConfig:
    """DPV over Altinn 3 Correspondence: the receiver's Altinn mailbox, with a notification (varsel)."""

    enabled: bool = True
    correspondence_url: str | None = None
    status_poll_seconds: float = 30.0
    status_batch: int = 200
    max_in_flight: int = 32  # requests on the wire at once: sends and status look-ups each
    # The notification when the sidecar's dpv block gives none: Email, Sms or EmailAndSms.
    notification_channel: str = "EmailAndSms"
    notification_text: str = "Du har mottatt en melding i Altinn."
    sensitive_notification_text: str = "Du har mottatt en taushetsbelagt melding i Altinn. Logg inn for å lese den."
    email_subject: str = "Ny melding i Altinn"
    days_to_reply: int | None = None

    @property
    def configured(self) -> bool:
        return self.enabled and bool(self.correspondence_url)


SETTINGS = SettingsBlock(
    schema=DpvChannelConfig,
    url_keys=("correspondence_url",),
    urls={
        TEST: {"correspondence_url": "https://test.eformidling.no/altinn-proxy/correspondence/api/v1"},
        PRODUCTION: {"correspondence_url": "https://eformidling.no/altinn-proxy/correspondence/api/v1"},
    },
    positive=frozenset({"status_poll_seconds", "status_batch", "max_in_flight"}),
    choices={"notification_channel": ("Email", "Sms", "EmailAndSms")},
    example_url="correspondence_url",
    needs_altinn_exchange=True,
)

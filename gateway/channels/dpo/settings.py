"""channels.dpo in config.yaml: the Altinn 3 Broker's address, the resource, and the system user."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.channels.kind import SettingsBlock
from gateway.environments import PRODUCTION, TEST


@dataclass(frozen=True)
class DpoChannelConfig:
    """DPO over the Altinn 3 Broker."""

    enabled: bool = True
    broker_url: str | None = None
    resource: str = "eformidling-dpo-meldingsutveksling"
    inbound_poll_seconds: float = 5.0
    max_in_flight: int = 32  # requests on the wire at once: sends, downloads, status messages each
    # Digdir's DPO resource admits only Altinn system users: the organisation whose system user the
    # broker's tokens name (default our own), and the name it was created with, which Altinn keeps as its
    # externalRef (default <orgnr>_integrasjonspunkt_systembruker_<orgnr>, as the reference creates it).
    system_user_org: str | None = None
    system_user_external_ref: str | None = None

    @property
    def configured(self) -> bool:
        return self.enabled and bool(self.broker_url)


SETTINGS = SettingsBlock(
    schema=DpoChannelConfig,
    url_keys=("broker_url",),
    # The reference's application-staging and application-production properties; test is Altinn's tt02.
    urls={
        TEST: {"broker_url": "https://platform.tt02.altinn.no/broker/api/v1"},
        PRODUCTION: {"broker_url": "https://platform.altinn.no/broker/api/v1"},
    },
    positive=frozenset({"inbound_poll_seconds", "max_in_flight"}),
    # Kept for configurations written before the channels section.
    legacy={"broker_url": "broker_url", "broker_resource": "resource", "inbound_poll_seconds": "inbound_poll_seconds"},
    example_url="broker_url",
    needs_altinn_exchange=True,
)

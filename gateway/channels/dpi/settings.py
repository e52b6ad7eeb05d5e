"""channels.dpi in config.yaml: Corner 2, the print service's certificate, status polling and the letter defaults
a sidecar may leave out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.channels.kind import SettingsBlock
from gateway.environments import PRODUCTION, TEST
from gateway.errors import ConfigError

# Digdir's Corner 2 and KRR's print certificate (networks.md §5; the reference's application properties).
URLS = {
    TEST: {
        "corner2_url": "https://sandbox1.ediex.no/api/v2/dpi",
        "print_certificate_url": "https://test.kontaktregisteret.no/rest/v2/printSertifikat",
    },
    PRODUCTION: {
        "corner2_url": "https://edi.edigard.com/api/v2/dpi",
        "print_certificate_url": "https://kontaktregisteret.no/rest/v2/printSertifikat",
    },
}
LANGUAGES = ("NO", "NB", "NN", "EN", "SE")


@dataclass(frozen=True)
class DpiChannelConfig:
    """DPI: letters to citizens over Corner 2, to their digital mailbox or printed and posted.

    Without `print_certificate_url` a print letter is encrypted to the certificate of the print record the
    registry gives, checked the same way (the sandbox join fills the URL with its own KRR endpoint).
    """

    enabled: bool = True
    corner2_url: str | None = None
    print_certificate_url: str | None = None
    print_certificate_cache_seconds: float = 3600.0  # KRR's print certificate changes about once a year
    status_poll_seconds: float = 30.0
    # Once Corner 2 has handed a letter on, the provider's receipts say the rest: Corner 2 is asked about it this
    # seldom (only a letter it let go can still change there)
    handed_on_poll_seconds: float = 900.0
    status_batch: int = 200
    max_in_flight: int = 16  # requests on the wire at once: sends and status look-ups each
    request_timeout_seconds: float = 30.0  # every Corner 2 request, status polls included
    receipt_page_size: int = 500  # receipts taken from Corner 2 per request (at most 1000)
    # Corner 2's `kanal`: a gateway sharing Corner 2 credentials with another system takes only its own receipts
    kanal: str | None = None
    avsenderidentifikator: str | None = None  # the sender's id at the mailbox providers, when it has one
    fakturareferanse: str | None = None  # the invoice reference the providers bill against
    language: str = "NO"  # the letters' language when the sidecar names none
    email_notification_text: str = "Du har fått et brev i den digitale postkassen din."
    sms_notification_text: str = "Du har fått et brev i den digitale postkassen din."
    print_colour: str = "SORT_HVIT"  # SORT_HVIT or FARGE, when the sidecar does not say
    post_type: str = "B"  # A (priority) or B (economy)
    returned_post: str = "DIREKTE_RETUR"  # DIREKTE_RETUR or MAKULERING_MED_MELDING

    @property
    def configured(self) -> bool:
        return self.enabled and bool(self.corner2_url)


def check_dpi(prefix: str, dpi: Any) -> None:
    if not dpi.configured:
        return
    if dpi.receipt_page_size > 1000:
        raise ConfigError(f"{prefix}: channels.dpi.receipt_page_size may be at most 1000 (Corner 2's page limit), "
                          f"not {dpi.receipt_page_size}")
    if dpi.kanal is not None and not (1 <= len(dpi.kanal) <= 28 and dpi.kanal.replace("-", "").replace("_", "")
                                      .isalnum() and dpi.kanal.isascii()):
        raise ConfigError(f"{prefix}: channels.dpi.kanal {dpi.kanal!r} may hold only a-z, A-Z, 0-9, _ and -, "
                          "1 to 28 characters (Corner 2's rule)")
    if dpi.avsenderidentifikator is not None and not 1 <= len(dpi.avsenderidentifikator) <= 100:
        raise ConfigError(f"{prefix}: channels.dpi.avsenderidentifikator must be 1 to 100 characters")
    if dpi.fakturareferanse is not None and not 1 <= len(dpi.fakturareferanse) <= 40:
        raise ConfigError(f"{prefix}: channels.dpi.fakturareferanse must be 1 to 40 characters")


SETTINGS = SettingsBlock(
    schema=DpiChannelConfig,
    url_keys=("corner2_url", "print_certificate_url"),
    urls=URLS,
    positive=frozenset({"status_poll_seconds", "handed_on_poll_seconds", "status_batch", "max_in_flight",
                        "request_timeout_seconds", "receipt_page_size", "print_certificate_cache_seconds"}),
    choices={"language": LANGUAGES, "print_colour": ("SORT_HVIT", "FARGE"), "post_type": ("A", "B"),
             "returned_post": ("DIREKTE_RETUR", "MAKULERING_MED_MELDING")},
    check=check_dpi,
    example_url="corner2_url",
)

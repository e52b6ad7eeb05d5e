"""What a lookup (the service registry today) says of a receiver: who it is and, per channel, a service record.

The records sit beside the channels because a channel reads them (its certificate, its endpoint, its own
fields); the lookups that fill them (gateway/routing/) sit above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InfoRecord:
    identifier: str
    organization_name: str


@dataclass(frozen=True)
class ServiceRecord:
    service: str  # the channel's name, as in the registry's service.identifier
    process: str
    document_types: tuple[str, ...]
    certificate_pem: str | None
    endpoint_url: str | None
    service_code: str | None
    service_edition_code: str | None
    security_level: int | None
    resource: str | None
    organisation_number: str | None = None
    organisation_name: str | None = None  # the receiver's name in the registry (its infoRecord)
    # The record's other fields as the registry gave them (JSON values, names as on the wire): what only one
    # channel reads (a person's mailbox, say) without this class knowing it. Service-level keys are under "service".
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class RegistryAnswer:
    info_record: InfoRecord
    service_records: list[ServiceRecord]

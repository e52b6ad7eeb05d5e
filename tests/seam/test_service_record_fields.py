"""A service record keeps the fields only one channel reads (a person's mailbox, say), as the registry gave them."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.channels.dpi.routing import DIGITAL_DOCUMENT
from gateway.routing.registry import parse_answer
from gateway.routing.route import choose_route

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "samples" / "service-registry"
INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"


def test_a_real_person_record_keeps_its_mailbox_fields_for_the_channel() -> None:
    answer = parse_answer(json.loads((SAMPLES / "09118532322.json").read_text(encoding="utf-8")))
    [record] = [r for r in answer.service_records if r.service == "DPI" and r.process == INFO]
    assert record.fields["orgnrPostkasse"] == "987464291"
    assert record.fields["postkasseAdresse"] == "dummy"
    # What the record's own attributes hold is not repeated in the open fields.
    assert "pemCertificate" not in record.fields and "documentTypes" not in record.fields
    assert record.service_code == "4192" and "service" not in record.fields

    route = choose_route(answer, INFO, DIGITAL_DOCUMENT, True, 3)
    assert (route.channel, route.reason) == (
        "DPI", "the receiver has an active digital mailbox (provider 987464291): DPI digital")
    assert route.service_record is not None and route.service_record.fields["orgnrPostkasse"] == "987464291"

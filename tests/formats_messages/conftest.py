"""Reference material and builders for the message-format tests."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.formats.sbd import ARKIVMELDING_PROCESS, Arkivmelding, StandardBusinessDocument, new_sbd

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
OSLO = timezone(timedelta(hours=1))
SENDER = "910077473"  # valid check digits, used by the reference too
RECEIVER = "910075918"
PERSON = "09118532322"


def feature_sbds() -> list[tuple[str, int, str]]:
    """(feature file, block number, JSON text) of every SBD body quoted in the behaviour specs."""
    found = []
    for path in sorted((REFERENCE / "behaviour").glob("nextmove_*.feature")):
        blocks = re.findall(r'"""\n(.*?)\n\s*"""', path.read_text(encoding="utf-8"), re.S)
        for number, block in enumerate(blocks):
            if "standardBusinessDocumentHeader" in block:
                found.append((path.name, number, block))
    return found


def reference_json(relative: str) -> Any:
    return json.loads((REFERENCE / relative).read_text(encoding="utf-8"))


def make_sbd(business_message: Any = None, **overrides: Any) -> StandardBusinessDocument:
    args: dict[str, Any] = {
        "sender": SENDER,
        "receiver": RECEIVER,
        "business_message": business_message or Arkivmelding(sikkerhetsnivaa=3, hoveddokument="brev.pdf"),
        "process": ARKIVMELDING_PROCESS,
        "created": datetime(2019, 3, 25, 11, 35, tzinfo=OSLO),
        "message_id": "ff88849c-e281-4809-8555-7cd54952b916",
        "conversation_id": "37efbd4c-413d-4e2c-bbc5-257ef4a65a56",
    }
    args.update(overrides)
    return new_sbd(**args)


@pytest.fixture(scope="session")
def reference() -> Path:
    assert REFERENCE.is_dir(), f"the shared reference folder is missing at {REFERENCE}"
    return REFERENCE

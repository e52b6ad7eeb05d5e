"""The SBD carries the business types registered with it: the process's own four always, a channel's once the
channel registry has loaded, which importing any channel module does; an unregistered type is refused by name."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.channels.dpi.nextmove import Digital
from gateway.formats.business import (
    Arkivmelding,
    BusinessPart,
    BusinessType,
    Status,
    business_type,
    register_business,
    wire,
)
from gateway.formats.sbd import to_json

from .conftest import PERSON, make_sbd

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: only the formats first, then one channel module (not the registry by name).
FRESH = """
import json, sys
from gateway.formats.sbd import from_json
from gateway.errors import MessageFormatError
data = sys.stdin.buffer.read()
try:
    from_json(data)
    print("read before any channel was imported")
except MessageFormatError as exc:
    print("refused:", str(exc).splitlines()[1])
import gateway.channels.records  # any module under gateway/channels/
print("read:", type(from_json(data).business_message).__module__)
"""


def test_a_channels_type_is_read_once_any_channel_module_is_imported_and_refused_by_name_before() -> None:
    letter = make_sbd(Digital(hoveddokument="brev.pdf", tittel="Vedtak"), receiver=PERSON,
                      process="urn:no:difi:profile:digitalpost:vedtak:ver1.0")
    out = subprocess.run([sys.executable, "-c", FRESH], input=to_json(letter), capture_output=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120, check=True)
    refused, read = out.stdout.decode().splitlines()
    assert refused.startswith("refused: - $.standardBusinessDocumentHeader.documentIdentification.type: "
                              "'digital' is not a supported business message: no channel of this gateway registered")
    assert "(registered: arkivmelding, arkivmelding_kvittering, status, avtalt)" in refused
    assert read == "read: gateway.channels.dpi.nextmove"


@dataclass(frozen=True)
class _Other:
    text: str | None = wire("text")


def test_a_taken_name_is_refused_and_then_nothing_of_the_batch_is_added() -> None:
    with pytest.raises(ValueError, match=r"the business message 'status' is registered already, as Status"):
        register_business(BusinessType("other", _Other, "urn:x::other"),
                          BusinessType("status", _Other, "urn:x::status"))
    assert business_type("other") is None and business_type("status").cls is Status
    with pytest.raises(ValueError, match=r"_Other takes no parts"):
        register_business(BusinessPart(_Other, "x", _Other))
    # Registering the same item again is no conflict (a registry loaded twice).
    register_business(business_type("arkivmelding"))
    assert business_type("arkivmelding").cls is Arkivmelding

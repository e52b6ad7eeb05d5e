"""A received package that is malformed or hostile is refused with a clear error, never retried forever."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime

import pytest

from gateway.channels.dpo.unpack import open_package
from gateway.errors import MessageFormatError, SecurityError
from gateway.formats.business import Arkivmelding
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd, to_json


def test_an_entry_flagged_as_encrypted_is_a_format_error(tmp_path):
    package = tmp_path / "sbd.zip"
    with zipfile.ZipFile(package, "w") as archive:
        info = zipfile.ZipInfo("sbd.json")
        archive.writestr(info, b"{}")
    raw = bytearray(package.read_bytes())
    raw[6] |= 0x01  # general purpose flag in the local header: "encrypted"
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 8] |= 0x01  # and in the central directory
    package.write_bytes(bytes(raw))
    with pytest.raises(MessageFormatError, match="encrypted with a zip password"):
        open_package(package, tmp_path / "work")


def test_an_asic_that_expands_a_thousandfold_is_refused_before_it_fills_the_disk(tmp_path):
    sbd = new_sbd(
        sender="991825827", receiver="910077473", business_message=Arkivmelding(), process=ARKIVMELDING_PROCESS,
        created=datetime.now(UTC),
    )
    package = tmp_path / "sbd.zip"
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("sbd.json", to_json(sbd))
        with archive.open("asic.zip", "w") as entry:
            for _ in range(20):
                entry.write(b"\0" * (1 << 20))
    with pytest.raises(SecurityError, match="zip bomb"):
        open_package(package, tmp_path / "work")
    extracted = tmp_path / "work" / "asic.zip"
    assert not extracted.exists() or extracted.stat().st_size <= 3 << 20

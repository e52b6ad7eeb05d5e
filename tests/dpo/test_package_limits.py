"""A received package that declares more than the limits is refused before anything is written."""

from __future__ import annotations

import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.channels.dpo.unpack import MAX_ASIC_BYTES, open_package
from gateway.errors import MessageFormatError, SecurityError
from gateway.formats.business import Arkivmelding
from gateway.formats.sbd import ARKIVMELDING_PROCESS, new_sbd, to_json
from tests.formats_crypto.support import declare_sizes


def _package(path: Path, asic: bytes, compression: int = zipfile.ZIP_STORED) -> Path:
    sbd = new_sbd(
        sender="991825827", receiver="910077473", business_message=Arkivmelding(), process=ARKIVMELDING_PROCESS,
        created=datetime.now(UTC),
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sbd.json", to_json(sbd), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("asic.zip", asic, compress_type=compression)
    return path


def _written(work: Path) -> list[str]:
    return sorted(os.listdir(work)) if work.exists() else []


def test_an_asic_declared_larger_than_any_channel_carries_is_refused_unwritten(tmp_path: Path) -> None:
    package = _package(tmp_path / "sbd.zip", os.urandom(5 << 20))  # over the in-memory limit: it would go to disk
    declare_sizes(package, "asic.zip", uncompressed=MAX_ASIC_BYTES + 1)
    with pytest.raises(SecurityError, match=rf"'asic.zip' in the package declares {MAX_ASIC_BYTES + 1} bytes"):
        open_package(package, tmp_path / "work")
    assert _written(tmp_path / "work") == []


def test_a_declared_thousandfold_expansion_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    package = _package(tmp_path / "sbd.zip", bytes(40 << 20), zipfile.ZIP_DEFLATED)
    with pytest.raises(SecurityError, match=r"'asic\.zip' in the package expands more than 100 times .*zip bomb"):
        open_package(package, tmp_path / "work")
    assert _written(tmp_path / "work") == []


def test_an_entry_cut_short_is_a_format_error_that_says_so(tmp_path: Path) -> None:
    package = _package(tmp_path / "sbd.zip", os.urandom(1000))
    declare_sizes(package, "asic.zip", compressed=9000, uncompressed=9000)
    with pytest.raises(MessageFormatError) as caught:
        open_package(package, tmp_path / "work")
    assert str(caught.value) == (
        "the package is not a readable zip: an entry's data ends before its declared size "
        "(the file is truncated or its sizes are wrong)"
    )

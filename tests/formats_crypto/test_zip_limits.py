"""Zip limits are checked on the declared sizes, before anything is extracted; zip errors always say what broke."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import pytest

from gateway.errors import SecurityError
from gateway.formats.ziplimits import ZipLimits, check_declared_sizes, zip_error_text

from .support import declare_sizes

LIMITS = ZipLimits(
    max_entries=2, max_total_bytes=3 << 20, max_ratio=100, ratio_floor=1 << 20,
    max_entry_bytes={"sbd.json": 1 << 10, "asic.zip": 2 << 20},
)


def _package(path: Path, asic: bytes, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sbd.json", b"{}", compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("asic.zip", asic, compress_type=compression)
    return path


def _infos(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def test_a_package_within_its_limits_passes(tmp_path: Path) -> None:
    check_declared_sizes(_infos(_package(tmp_path / "p.zip", os.urandom(1 << 20))), LIMITS, "the package")


def test_an_entry_declaring_more_than_its_limit_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path / "p.zip", os.urandom(1000))
    declare_sizes(package, "asic.zip", uncompressed=1_200_000_000)
    with pytest.raises(SecurityError, match=r"size limit: 'asic.zip' in the package declares 1200000000 bytes"):
        check_declared_sizes(_infos(package), LIMITS, "the package")


def test_a_declared_expansion_past_the_ratio_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path / "p.zip", bytes(2 << 20), zipfile.ZIP_DEFLATED)
    with pytest.raises(SecurityError, match=r"'asic.zip' in the package expands more than 100 times .*zip bomb"):
        check_declared_sizes(_infos(package), LIMITS, "the package")


def test_the_declared_total_duplicates_and_methods(tmp_path: Path) -> None:
    package = _package(tmp_path / "p.zip", os.urandom(1000))
    declare_sizes(package, "sbd.json", uncompressed=1000)
    roomy = ZipLimits(max_entries=2, max_total_bytes=1500, max_ratio=1000, ratio_floor=0)
    with pytest.raises(SecurityError, match="total size limit: the package declares 2000 bytes uncompressed"):
        check_declared_sizes(_infos(package), roomy, "the package")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(package, "a") as archive:
        archive.writestr("sbd.json", b"{}")
    with pytest.raises(SecurityError, match="too many entries: the package has 3, the limit is 2"):
        check_declared_sizes(_infos(package), LIMITS, "the package")
    with pytest.raises(SecurityError, match=r"duplicate entry name 'sbd\.json' in the package"):
        check_declared_sizes(_infos(package), ZipLimits(9, 1 << 30, 100), "the package")
    bzip = tmp_path / "b.zip"
    with zipfile.ZipFile(bzip, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("asic.zip", b"x")
    with pytest.raises(SecurityError, match="uses zip compression method 12; only stored and deflated"):
        check_declared_sizes(_infos(bzip), LIMITS, "the package")


def test_zip_errors_are_never_an_empty_message(tmp_path: Path) -> None:
    package = _package(tmp_path / "p.zip", os.urandom(1000))
    declare_sizes(package, "asic.zip", compressed=5000, uncompressed=5000)  # the data ends long before that
    with zipfile.ZipFile(package) as archive, pytest.raises(EOFError) as caught:
        archive.read("asic.zip")
    assert str(caught.value) == ""  # what zipfile gives
    assert zip_error_text(caught.value) == (
        "an entry's data ends before its declared size (the file is truncated or its sizes are wrong)"
    )
    corrupt = zlib.error("invalid block type")
    assert zip_error_text(corrupt) == "an entry's compressed data is corrupt (invalid block type)"
    assert zip_error_text(zipfile.BadZipFile()) == "BadZipFile (zipfile gave no detail)"
    with pytest.raises(zipfile.BadZipFile) as not_zip:
        zipfile.ZipFile(io.BytesIO(b"no zip"))
    assert zip_error_text(not_zip.value) == "File is not a zip file"

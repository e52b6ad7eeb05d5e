"""What DPI cannot carry is refused before anything is built, in words that say why; large documents stream."""

from __future__ import annotations

import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.channels.dpi import (
    MAX_DOKUMENTPAKKE_BYTES,
    DpiDocument,
    DpiFormatError,
    ManifestParties,
    build_dokumentpakke,
    check_documents,
    read_dokumentpakke,
)
from gateway.errors import CryptoError
from gateway.formats.keys import OrgIdentity

from .conftest import SENDER

PDF = b"%PDF-1.7\n%%EOF\n"


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def test_fifty_megabytes_pass_and_one_byte_more_is_refused_before_anything_is_built(
    tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity
) -> None:
    check_documents([DpiDocument("brev.pdf", _sparse(tmp_path / "ok.pdf", MAX_DOKUMENTPAKKE_BYTES), "application/pdf")])
    large = DpiDocument("brev.pdf", _sparse(tmp_path / "large.pdf", MAX_DOKUMENTPAKKE_BYTES + 1), "application/pdf")
    target = tmp_path / "out" / "asic.cms"
    target.parent.mkdir()
    with pytest.raises(DpiFormatError, match=r"come to 52428801 bytes; DPI takes at most 52428800 bytes \(50 MB\)"):
        build_dokumentpakke([large], ManifestParties(SENDER, postkasseadresse="x"), sender, mailbox.certificate,
                            target)
    assert list(target.parent.iterdir()) == []  # no package, no temporary file left


def test_the_limit_is_on_all_documents_together(tmp_path: Path) -> None:
    half = MAX_DOKUMENTPAKKE_BYTES // 2 + 1
    documents = [DpiDocument(f"del{n}.pdf", _sparse(tmp_path / f"{n}.pdf", half), "application/pdf") for n in (1, 2)]
    with pytest.raises(DpiFormatError, match="DPI takes at most"):
        check_documents(documents)


@pytest.mark.parametrize(
    ("document", "print_letter", "words"),
    [
        (DpiDocument("program.exe", b"MZ", "application/octet-stream"), False, "DPI does not carry executable files"),
        (DpiDocument("brev.pdf", b"MZ", "application/x-msdownload"), False, "DPI does not carry executable files"),
        (DpiDocument("brev.txt", b"Hei", "text/plain"), True, "a print letter takes PDF documents only"),
        (DpiDocument("brev.pdf", b"<html>", "application/pdf"), True, "a print letter takes PDF documents only"),
        (DpiDocument("mappe/brev.pdf", PDF, "application/pdf"), False, "without folders"),
        (DpiDocument("manifest.xml", b"<a/>", "application/xml"), False, "the package uses that name itself"),
        (DpiDocument("META-INF/x.pdf", PDF, "application/pdf"), False, "cannot be used in DPI"),
    ],
)
def test_wrong_documents_are_refused_with_the_reason(document: DpiDocument, print_letter: bool, words: str) -> None:
    with pytest.raises(DpiFormatError, match=words):
        check_documents([document], print_letter=print_letter)


def test_a_name_used_twice_and_no_documents_are_refused() -> None:
    with pytest.raises(DpiFormatError, match="is used twice"):
        check_documents([DpiDocument("Brev.pdf", PDF, "application/pdf"),
                         DpiDocument("brev.pdf", PDF, "application/pdf")])
    with pytest.raises(DpiFormatError, match="at least one document"):
        check_documents([])


def test_a_pdf_prints() -> None:
    check_documents([DpiDocument("brev.pdf", PDF, "application/pdf")], print_letter=True)


def test_a_large_document_is_packed_and_read_with_flat_memory(
    tmp_path: Path, sender: OrgIdentity, mailbox: OrgIdentity
) -> None:
    size = 40 * 1024 * 1024
    source = tmp_path / "stor.pdf"
    with open(source, "wb") as handle:  # not compressible: deflate could not hide a copy held in memory
        for _ in range(size // (1 << 20)):
            handle.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        pakke = build_dokumentpakke([DpiDocument("stor.pdf", source, "application/pdf")],
                                    ManifestParties(SENDER, postkasseadresse="x"), sender, mailbox.certificate,
                                    tmp_path / "asic.cms")
        built_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        contents = read_dokumentpakke(pakke.path, mailbox.private_key, mailbox.certificate, tmp_path / "out")
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pakke.size > size
    assert contents.files[0].size == size
    assert contents.files[0].path.read_bytes() == source.read_bytes()
    # A few 1 MiB chunks in flight, never the 40 MiB document.
    assert built_peak < 8 * 1024 * 1024, f"building held {built_peak} bytes at its peak"
    assert read_peak < 8 * 1024 * 1024, f"reading held {read_peak} bytes at its peak"


def test_a_package_that_cannot_be_encrypted_leaves_nothing_behind(tmp_path: Path, sender: OrgIdentity) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC mottaker")])
    now = datetime.now(UTC)
    ec_certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                      .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
                      .sign(key, hashes.SHA256()))
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(CryptoError, match="eFormidling needs RSA"):
        build_dokumentpakke([DpiDocument("brev.pdf", PDF, "application/pdf")], ManifestParties(SENDER), sender,
                            ec_certificate, folder / "asic.cms")
    assert list(folder.iterdir()) == []

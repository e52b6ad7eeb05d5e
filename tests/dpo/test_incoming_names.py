"""Incoming document names the archive's file system cannot hold are written under safe names (the sender's
kept in message.xml), and a message whose documents cannot be written is quarantined after a few tries
instead of being downloaded again at every poll."""

from __future__ import annotations

import os
import uuid

import pytest

from gateway.formats import asice
from gateway.formats.asice import AsicDocument
from gateway.fsio import file_name_problem
from gateway.sandbox.peer import small_pdf

from .network import B, wait
from .statusfiles import NS, inbox_message
from .test_quarantine import _status_description, setting  # noqa: F401 - the fixture

# What another implementation may send (the reference integration point refuses none of these), and what a
# Windows or SMB archive cannot store as it is.
AWKWARD = ["aux.pdf", "rapport:2024.pdf", "rapport.", "A.pdf", "a.pdf", "message.xml", "vedlegg/con.txt"]


def _documents(folder, names: list[str]) -> list[AsicDocument]:
    folder.mkdir(parents=True)
    documents = []
    for index, name in enumerate(names):
        source = folder / f"doc-{index}"
        source.write_bytes(small_pdf(f"dokument {name}"))
        documents.append(AsicDocument(name, source, "application/pdf"))
    return documents


def _listed(message) -> list[tuple[str, str | None]]:
    return [(doc.findtext("m:file", namespaces=NS), doc.findtext("m:originalFile", namespaces=NS))
            for doc in message.findall("m:documents/m:document", NS)]


def test_names_an_archive_cannot_hold_are_made_safe_and_the_originals_kept(setting, monkeypatch):  # noqa: F811
    _network, a, b, tmp = setting
    # Our own writer refuses A.pdf beside a.pdf; the peer that sends them here does not.
    monkeypatch.setattr(asice, "_check_document_names", lambda documents: None)
    sbd, _ = a.arkivmelding(B, "rare navn", message_id=str(uuid.uuid4()))
    a.send(sbd, _documents(tmp / "awkward", AWKWARD))
    folder = b.inbox / sbd.message_id
    wait(lambda: (folder / "message.xml").exists(), 60, message="the message in B's inbox")

    listed = _listed(inbox_message(folder))
    assert [original or file for file, original in listed] == AWKWARD, "every document, in order, named as sent"
    stored = [file for file, _original in listed]
    assert stored == ["_aux.pdf", "rapport_2024.pdf", "rapport_", "A.pdf", "a (2).pdf", "message (2).xml",
                      "vedlegg/_con.txt"]
    for (file, original), sent in zip(listed, AWKWARD, strict=True):
        assert original == (None if file == sent else sent), "the sender's name is given where it differs"
        assert (folder / file).read_bytes() == small_pdf(f"dokument {sent}")
        assert all(file_name_problem(part) is None for part in file.split("/")), file
    assert len({file.casefold() for file in stored} | {"message.xml"}) == len(stored) + 1
    on_disk = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert on_disk == sorted([*stored, "message.xml"])


@pytest.mark.timeout(300)
def test_a_message_whose_documents_cannot_be_written_is_quarantined_not_downloaded_for_ever(setting):  # noqa: F811
    _network, a, b, tmp = setting
    deep = "/".join(["mappe" * 36] * 25) + "/brev.pdf"  # 4.5 kB: past the longest path Linux opens
    sbd, _ = a.arkivmelding(B, "for dyp", message_id=str(uuid.uuid4()))
    a.send(sbd, _documents(tmp / "deep", [deep]))
    wait(lambda: _status_description(b, sbd.message_id)[0] == "FEIL", 120, message="quarantined after a few tries")
    _current, descriptions = _status_description(b, sbd.message_id)
    assert "could not be written" in descriptions and "3 tries" in descriptions, descriptions
    assert [name for name in os.listdir(b.var / "state" / "quarantine") if name.startswith(sbd.message_id)]
    assert not (b.inbox / sbd.message_id).exists()

    good, documents = a.arkivmelding(B, "etter", message_id=str(uuid.uuid4()))
    a.send(good, documents)
    wait(lambda: (b.inbox / good.message_id).is_dir(), 60, message="the next message in B's inbox")
    assert not (b.inbox / sbd.message_id).exists()

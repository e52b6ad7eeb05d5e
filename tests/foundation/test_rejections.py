"""Every kind of bad drop ends in failed/ with an explanation and a FEIL status file, and a good
drop dropped at the same time is accepted."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from lxml import etree

from gateway.contract.status import schema as status_schema

from .drops import make_flat_drop, make_folder_drop, pdf_bytes, sha256, sidecar_xml

MESSAGE_ID = "0b5f1e2d-3c4b-4c1e-8a4f-2f6e1c3a9a77"


def _folder(name: str, **kwargs):
    return lambda outbox: make_folder_drop(outbox, name, **kwargs)


def _malformed(outbox: Path) -> None:
    make_folder_drop(outbox, "bad", sidecar=b"<message xmlns='urn:efm-gateway:message:1'><receiver>910075918</message>")


def _doctype_external_entity(outbox: Path) -> None:
    sidecar = (
        b'<?xml version="1.0"?><!DOCTYPE message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<message xmlns="urn:efm-gateway:message:1"><receiver>&xxe;</receiver></message>'
    )
    make_folder_drop(outbox, "bad", sidecar=sidecar)


def _billion_laughs(outbox: Path) -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    sidecar = (
        f'<?xml version="1.0"?><!DOCTYPE message [{entities}]>'
        '<message xmlns="urn:efm-gateway:message:1"><receiver>910075918</receiver><title>&lol9;</title></message>'
    ).encode()
    make_folder_drop(outbox, "bad", sidecar=sidecar)


def _non_utf8_name(outbox: Path) -> None:
    staging = outbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    folder = staging / "bad"
    folder.mkdir()
    (folder / "message.xml").write_bytes(sidecar_xml())
    (folder / "brev.pdf").write_bytes(pdf_bytes())
    with open(os.path.join(os.fsencode(folder), b"vedlegg-\xe5.pdf"), "wb") as handle:
        handle.write(pdf_bytes())
    os.rename(folder, outbox / "bad")


def _nfd_name(outbox: Path) -> None:
    nfd = unicodedata.normalize("NFD", "vedlegg-å.pdf")
    nfc = unicodedata.normalize("NFC", "vedlegg-å.pdf")
    sidecar = sidecar_xml(documents=[{"file": "brev.pdf", "main": True}, {"file": nfc}])
    make_folder_drop(outbox, "bad", files={"brev.pdf": pdf_bytes(), nfd: pdf_bytes()}, sidecar=sidecar)


def _symlink(outbox: Path) -> None:
    staging = outbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    folder = staging / "bad"
    folder.mkdir()
    (folder / "message.xml").write_bytes(sidecar_xml())
    os.symlink("/etc/passwd", folder / "brev.pdf")
    os.rename(folder, outbox / "bad")


def _flat_documents_never_come(outbox: Path) -> None:
    make_flat_drop(outbox, "bad", files={}, sidecar=sidecar_xml(documents=[{"file": "kommer-aldri.pdf", "main": True}]))


def _orphan(outbox: Path) -> None:
    (outbox / "bad").write_bytes(pdf_bytes("orphan"))


def _no_message_xml(outbox: Path) -> None:
    staging = outbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    (staging / "bad").mkdir()
    (staging / "bad" / "brev.pdf").write_bytes(pdf_bytes())
    os.rename(staging / "bad", outbox / "bad")


CONTENT = pdf_bytes("content")

CASES = {
    "malformed XML": (_malformed, "not well-formed"),
    "DOCTYPE with external entity": (_doctype_external_entity, "DOCTYPE"),
    "billion laughs": (_billion_laughs, "DOCTYPE"),
    "bad organisation-number check digit": (_folder("bad", sidecar=sidecar_xml(receiver="910075919")), "check digit"),
    "bad national identity number": (_folder("bad", sidecar=sidecar_xml(receiver="09118532323")), "check digits"),
    "retired 9908 prefix": (_folder("bad", sidecar=sidecar_xml(receiver="9908:910075918")), "retired prefix 9908"),
    "unknown message type": (_folder("bad", sidecar=sidecar_xml(message_type="telegram")), "'telegram' is not allowed"),
    "missing document": (
        _folder("bad", sidecar=sidecar_xml(documents=[{"file": "brev.pdf", "main": True}, {"file": "mangler.pdf"}])),
        "'mangler.pdf' is listed but not in the drop",
    ),
    "extra unlisted file": (
        _folder("bad", files={"brev.pdf": CONTENT, "hemmelig.docx": b"x"}),
        "'hemmelig.docx' is in the drop folder but not listed",
    ),
    "size mismatch": (
        _folder("bad", files={"brev.pdf": CONTENT}, sidecar=sidecar_xml(documents=[{"file": "brev.pdf", "size": 1}])),
        f"is {len(CONTENT)} bytes, but message.xml says 1",
    ),
    "hash mismatch": (
        _folder(
            "bad",
            files={"brev.pdf": CONTENT},
            sidecar=sidecar_xml(documents=[{"file": "brev.pdf", "sha256": sha256(b"other")}]),
        ),
        "does not match the SHA-256",
    ),
    "path traversal in a file name": (
        _folder("bad", sidecar=sidecar_xml(documents=[{"file": "../../etc/passwd", "main": True}])),
        "path separator",
    ),
    "dot-dot file name": (_folder("bad", sidecar=sidecar_xml(documents=[{"file": ".."}])), "contains '..'"),
    "expired deadline": (
        _folder("bad", sidecar=sidecar_xml(extra="<deadline>2020-01-01T00:00:00+01:00</deadline>")),
        "has already passed",
    ),
    "deadline without time zone": (
        _folder("bad", sidecar=sidecar_xml(extra="<deadline>2099-01-01T00:00:00</deadline>")),
        "has no time zone",
    ),
    "empty file list": (_folder("bad", files={}, sidecar=sidecar_xml(documents=[])), "at least one document"),
    "non-UTF-8 file name": (_non_utf8_name, "not valid UTF-8"),
    "NFD file name": (_nfd_name, "not in Unicode NFC form"),
    "symbolic link": (_symlink, "symbolic link"),
    "two main documents": (
        _folder(
            "bad",
            files={"a.pdf": CONTENT, "b.pdf": CONTENT},
            sidecar=sidecar_xml(documents=[{"file": "a.pdf", "main": True}, {"file": "b.pdf", "main": True}]),
        ),
        "mark at most one",
    ),
    "not a UUID": (_folder("bad", sidecar=sidecar_xml(extra="<messageId>123</messageId>")), "a UUID looks like"),
    "wrong root element": (
        _folder("bad", sidecar=b"<melding><mottaker>910075918</mottaker></melding>"),
        'a sidecar is <message xmlns="urn:efm-gateway:message:1">',
    ),
    "unknown process": (
        _folder(
            "bad", sidecar=sidecar_xml(extra="<process>urn:no:difi:profile:arkivmelding:hemmelig:ver1.0</process>")
        ),
        "is not an eFormidling process",
    ),
    "unknown element": (
        _folder("bad", sidecar=sidecar_xml(extra="<colour>blue</colour>")),
        "unknown or in the wrong place",
    ),
    "folder without message.xml": (_no_message_xml, "has no message.xml"),
    "sidecar whose documents never arrive": (_flat_documents_never_come, "which did not arrive within"),
    "orphan document": (_orphan, "without a sidecar or message folder"),
}


def _assert_valid_status(path: Path) -> etree._Element:
    tree = etree.parse(str(path))
    assert status_schema().validate(tree), status_schema().error_log
    return tree.getroot()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_drop_is_rejected_with_explanation_and_good_drop_goes_through(harness, case):
    h = harness(quiet_period_seconds=0, incomplete_timeout_seconds=3)
    make_bad, expected = CASES[case]
    make_bad(h.outbox)
    make_folder_drop(h.outbox, "good")
    for _ in range(4):  # long enough for the incomplete timeout
        h.intake.run_once()
        h.clock.advance(2)

    assert os.listdir(h.outbox) == [], "the outbox should be empty: everything was taken or rejected"
    failed = sorted(os.listdir(h.failed))
    assert failed == ["bad", "bad.error.txt"], failed
    explanation = (h.failed / "bad.error.txt").read_text()
    assert expected in explanation, explanation

    ns = {"s": "urn:efm-gateway:status:1"}
    currents = {}
    for status_file in h.status_files():
        root = _assert_valid_status(status_file)
        currents[root.findtext("s:dropName", namespaces=ns)] = root
    if case != "orphan document":  # a lone file has no message to report on
        bad = currents["bad"]
        assert bad.findtext("s:current", namespaces=ns) == "FEIL"
        assert any(expected in e.text for e in bad.findall("s:errors/s:error", ns))
    assert currents["good"].findtext("s:current", namespaces=ns) == "OPPRETTET"


def test_rejected_drop_is_moved_untouched(harness):
    h = harness(quiet_period_seconds=0)
    sidecar = sidecar_xml(receiver="910075919")
    make_folder_drop(h.outbox, "bad", files={"brev.pdf": CONTENT}, sidecar=sidecar)
    h.run()
    assert (h.failed / "bad" / "message.xml").read_bytes() == sidecar
    assert (h.failed / "bad" / "brev.pdf").read_bytes() == CONTENT


def test_duplicate_message_id_is_rejected_and_the_first_keeps_its_status(harness):
    h = harness(quiet_period_seconds=0)
    with_id = sidecar_xml(extra=f"<messageId>{MESSAGE_ID}</messageId>")
    make_folder_drop(h.outbox, "first", sidecar=with_id)
    h.run()
    make_folder_drop(h.outbox, "second", sidecar=with_id)
    h.run()
    explanation = (h.failed / "second.error.txt").read_text()
    assert f"the messageId {MESSAGE_ID} was already used by the drop 'first'" in explanation
    first_status = _assert_valid_status(h.status / f"first.{MESSAGE_ID}.xml")
    second_status = _assert_valid_status(h.status / f"second.{MESSAGE_ID}.xml")
    ns = {"s": "urn:efm-gateway:status:1"}
    assert first_status.findtext("s:current", namespaces=ns) == "OPPRETTET"
    assert second_status.findtext("s:current", namespaces=ns) == "FEIL"


def test_same_drop_name_rejected_twice_keeps_both_in_failed(harness):
    h = harness(quiet_period_seconds=0)
    for _ in range(2):
        make_folder_drop(h.outbox, "bad", sidecar=sidecar_xml(receiver="910075919"))
        h.run()
    assert sorted(os.listdir(h.failed)) == ["bad", "bad.1", "bad.1.error.txt", "bad.error.txt"]
    assert len(h.status_files()) == 2


def test_flat_drop_with_size_and_hash_is_accepted_and_documents_move_with_it(harness):
    h = harness(quiet_period_seconds=0)
    sidecar = sidecar_xml(documents=[{"file": "a.pdf", "main": True, "size": len(CONTENT), "sha256": sha256(CONTENT)}])
    make_flat_drop(h.outbox, "flat", files={"a.pdf": CONTENT}, sidecar=sidecar)
    counts = h.run()
    assert counts.accepted == 1
    assert os.listdir(h.outbox) == []
    [claim] = os.listdir(h.config.folders.work_area)
    assert sorted(os.listdir(h.config.folders.work_area / claim)) == ["a.pdf", "flat.xml"]


def test_xml_document_listed_by_a_flat_sidecar_is_not_taken_for_a_sidecar(harness):
    h = harness(quiet_period_seconds=0)
    broken_xml_document = b"<data><unclosed></data>"
    sidecar = sidecar_xml(documents=[{"file": "brev.pdf", "main": True}, {"file": "data.xml"}])
    make_flat_drop(h.outbox, "flat", files={"brev.pdf": CONTENT, "data.xml": broken_xml_document}, sidecar=sidecar)
    counts = h.run()
    assert counts.accepted == 1 and counts.rejected == 0
    assert os.listdir(h.failed) == []


def test_a_drop_name_too_long_for_the_work_area_is_rejected_at_once(harness):
    h = harness(quiet_period_seconds=0)
    long_folder, long_flat = "m" * 240, "f" * 230
    make_folder_drop(h.outbox, long_folder)
    make_flat_drop(h.outbox, long_flat, files={"vedlegg.pdf": CONTENT})
    make_folder_drop(h.outbox, "good")
    counts = h.run()
    assert counts.accepted == 1
    assert os.listdir(h.outbox) == ["vedlegg.pdf"], "only the flat drop's document waits for its own timeout"
    explanations = [name for name in os.listdir(h.failed) if name.endswith(".error.txt")]
    assert len(explanations) == 2
    for name in explanations:
        text = (h.failed / name).read_text()
        assert "drop names may be at most 200 bytes" in text
        assert len(name.encode()) <= 255
    assert {n for n in os.listdir(h.failed) if not n.endswith(".error.txt")} == {
        "m" * 230 + "~",
        long_flat + "~",  # 234 bytes with .xml: shortened too, to leave room for .error.txt
    }

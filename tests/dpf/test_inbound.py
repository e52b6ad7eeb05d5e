"""A SvarInn forsendelse opened: the SBD made of its metadata, and what is refused before the inbox."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.channels.dpf.inbound import extract_forsendelse, sbd_of
from gateway.devcerts import create_dev_pki, dev_identity
from gateway.errors import CryptoError, MessageFormatError, SecurityError
from gateway.formats.cms import encrypt_stream

US, MUNICIPALITY = "991825827", "944444408"
NOW = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)  # a leap day: the default deadline must still work
OUR_ID, CONVERSATION = "6b0f1c3e-8c71-4a0e-9f4e-2b1d3c4e5f60", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    pki = create_dev_pki(tmp_path_factory.mktemp("pki"), {US: "Oss", MUNICIPALITY: "Kommunen"})
    return dev_identity(pki, US), dev_identity(pki, MUNICIPALITY)


def forsendelse(files: dict[str, bytes], **extra) -> dict:
    return {
        "id": "d24658e8-d65d-4c3e-b201-564b5e880cde", "tittel": "Svar på søknad", "date": 1_900_000_000_000,
        "mottaker": {"orgnr": US}, "svarSendesTil": {"orgnr": MUNICIPALITY, "navn": "Kommunen"}, "niva": "4",
        "forsendelseType": "Byggesak",
        "metadataFraAvleverendeSystem": {"ekstraMetadata": [
            {"key": "eformidling.messageId", "value": OUR_ID},
            {"key": "eformidling.conversationId", "value": CONVERSATION}]},
        "filmetadata": [{"filnavn": n, "mimetype": "application/pdf", "sha256hash": hashlib.sha256(c).hexdigest()}
                        for n, c in files.items()],
        **extra,
    }


def encrypted(plain: bytes, certificate) -> io.BytesIO:
    envelope = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), envelope, certificate)
    envelope.seek(0)
    return envelope


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_the_sbd_carries_the_senders_ids_and_the_forsendelse_metadata():
    sbd = sbd_of(forsendelse({"a.pdf": b"a"}), US, NOW)
    assert (sbd.sender, sbd.receiver) == (MUNICIPALITY, US)
    assert (sbd.message_id, sbd.conversation_id) == (OUR_ID, CONVERSATION)
    assert sbd.business_message.sikkerhetsnivaa == 4
    assert sbd.business_message.parts["dpf"].forsendelse_type == "Byggesak"
    assert sbd.expected_response > NOW


def test_without_our_ids_the_forsendelse_id_stands_for_both():
    plain = forsendelse({"a.pdf": b"a"}, metadataFraAvleverendeSystem={})
    sbd = sbd_of(plain, US, NOW)
    assert sbd.message_id == sbd.conversation_id == plain["id"]


def test_a_forsendelse_naming_no_sending_organisation_is_refused():
    with pytest.raises(MessageFormatError, match="names no sending organisation"):
        sbd_of(forsendelse({"a.pdf": b"a"}, svarSendesTil=None), US, NOW)


def test_several_files_come_out_of_the_zip_in_order_beside_an_arkivmelding(identity, tmp_path):
    us, _ = identity
    files = {"vedtak.pdf": b"%PDF vedtak", "kart.pdf": b"%PDF kart"}
    meta = forsendelse(files)
    contents = extract_forsendelse(meta, sbd_of(meta, US, NOW), encrypted(zipped(files), us.certificate), us,
                                   tmp_path / "work", tmp_path / "out", True)
    assert [f.name for f in contents.files] == ["arkivmelding.xml", "vedtak.pdf", "kart.pdf"]
    assert contents.main_document == "vedtak.pdf"
    for name, content in files.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    assert b"Svar p\xc3\xa5 s\xc3\xb8knad" in (tmp_path / "out" / "arkivmelding.xml").read_bytes()
    assert not list((tmp_path / "work").iterdir()), "no decrypted copy is left behind"


def _extract(identity_used, meta: dict, plain: bytes, tmp_path: Path, certificate=None):
    us, _ = identity_used
    return extract_forsendelse(meta, sbd_of(meta, US, NOW), encrypted(plain, certificate or us.certificate), us,
                               tmp_path / "work", tmp_path / "out", False)


def test_a_forsendelse_that_is_not_an_envelope_is_refused(identity, tmp_path):
    us, _ = identity
    meta = forsendelse({"a.pdf": b"a"})
    with pytest.raises(CryptoError, match="could not be decrypted with our key"):
        extract_forsendelse(meta, sbd_of(meta, US, NOW), io.BytesIO(b"%PDF not encrypted"), us,
                            tmp_path / "work", tmp_path / "out", False)


def test_a_file_whose_digest_differs_from_svaruts_is_refused(identity, tmp_path):
    meta = forsendelse({"a.pdf": b"what SvarUt listed"})
    with pytest.raises(SecurityError, match="SHA-256 does not match"):
        _extract(identity, meta, b"something else", tmp_path)


def test_a_forsendelse_encrypted_to_another_key_is_refused(identity, tmp_path):
    _, municipality = identity
    meta = forsendelse({"a.pdf": b"a"})
    with pytest.raises(SecurityError, match="encrypted to another certificate"):
        _extract(identity, meta, b"a", tmp_path, certificate=municipality.certificate)


@pytest.mark.parametrize(("entries", "listed", "words"), [
    ({"a.pdf": b"a", "../b.pdf": b"b"}, None, "not a plain file"),
    ({"a.pdf": b"a", "/etc/b.pdf": b"b"}, None, "not a plain file"),
    ({"a.pdf": b"a", "c.pdf": b"c"}, {"a.pdf": b"a", "b.pdf": b"b"}, "but SvarUt lists"),
])
def test_zip_entries_that_are_not_the_listed_plain_files_are_refused(identity, tmp_path, entries, listed, words):
    meta = forsendelse(listed or {"a.pdf": b"a", "b.pdf": b"b"})
    with pytest.raises((SecurityError, MessageFormatError), match=words):
        _extract(identity, meta, zipped(entries), tmp_path)
    assert not (tmp_path / "b.pdf").exists() and not (tmp_path.parent / "b.pdf").exists()


@pytest.mark.parametrize("name", ["../x.pdf", "a/b.pdf", "arkivmelding.xml", "x:y.pdf"])
def test_a_listed_file_name_that_is_not_plain_is_refused_before_anything_is_written(identity, tmp_path, name):
    meta = forsendelse({name: b"x"})
    with pytest.raises(SecurityError):
        _extract(identity, meta, b"x", tmp_path)

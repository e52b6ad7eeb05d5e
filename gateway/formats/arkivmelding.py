"""arkivmelding.xml (Noark 5): build one for a drop that brings none, read the one a message carries,
and check that the files it names are the files that came.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from gateway.errors import MessageFormatError
from gateway.xmlsafe import parse_bytes

ARKIVMELDING_NS = "http://www.arkivverket.no/standarder/noark5/arkivmelding"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = f"{{{XSI_NS}}}type"


@dataclass(frozen=True)
class ArkivmeldingFile:
    name: str
    title: str
    main: bool = False
    document_type: str | None = None  # Noark dokumenttype, free text ("Brev", "Bestilling", …)


@dataclass(frozen=True)
class ArkivmeldingInfo:
    title: str
    offentlig_tittel: str | None
    file_names: tuple[str, ...]


def _q(name: str) -> str:
    return f"{{{ARKIVMELDING_NS}}}{name}"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _q(name))
    if text is not None:
        child.text = text
    return child


def _ordered(files: Sequence[ArkivmeldingFile]) -> list[ArkivmeldingFile]:
    mains = [f for f in files if f.main]
    if len(mains) > 1:
        raise MessageFormatError(
            f"at most one main document is allowed, {len(mains)} are marked main: " + ", ".join(f.name for f in mains)
        )
    names = [f.name for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MessageFormatError(f"file names must be unique; named more than once: {', '.join(duplicates)}")
    return mains + [f for f in files if not f.main]


def build_arkivmelding(
    *,
    title: str,
    files: Sequence[ArkivmeldingFile],
    created: datetime,
    system_name: str = "efm-gateway",
    offentlig_tittel: str | None = None,
    sender_name: str | None = None,
    receiver_name: str | None = None,
    message_id: str | None = None,
    administrative_unit: str | None = None,
    case_handler: str | None = None,
) -> bytes:
    """A minimal, schema-valid arkivmelding: one saksmappe with one outgoing journalpost and one
    dokumentbeskrivelse per file, the main document first as Hoveddokument, the rest as Vedlegg."""
    if created.tzinfo is None:
        raise MessageFormatError("arkivmelding: the creation time must carry a UTC offset")
    if not title.strip():
        raise MessageFormatError("arkivmelding: the title must not be empty")
    ordered = _ordered(files)
    stamp = created.isoformat(timespec="seconds")
    author = sender_name or system_name
    root = etree.Element(_q("arkivmelding"), nsmap={None: ARKIVMELDING_NS, "xsi": XSI_NS})
    _sub(root, "system", system_name)
    _sub(root, "meldingId", message_id or str(uuid.uuid4()))
    _sub(root, "tidspunkt", stamp)
    _sub(root, "antallFiler", str(len(ordered)))
    mappe = _sub(root, "mappe")
    mappe.set(_XSI_TYPE, "saksmappe")
    mappe_id = str(uuid.uuid4())
    _sub(mappe, "systemID", mappe_id)
    _sub(mappe, "tittel", title)
    _sub(mappe, "opprettetDato", stamp)
    _sub(mappe, "opprettetAv", author)
    post = _sub(mappe, "basisregistrering")
    post.set(_XSI_TYPE, "journalpost")
    _sub(post, "systemID", str(uuid.uuid4()))
    _sub(post, "opprettetDato", stamp)
    _sub(post, "opprettetAv", author)
    _sub(post, "arkivertDato", stamp)
    _sub(post, "arkivertAv", author)
    _sub(post, "referanseForelderMappe", mappe_id)
    for number, item in enumerate(ordered, start=1):
        beskrivelse = _sub(post, "dokumentbeskrivelse")
        _sub(beskrivelse, "systemID", str(uuid.uuid4()))
        _sub(beskrivelse, "dokumenttype", item.document_type or ("Brev" if number == 1 else "Vedlegg"))
        _sub(beskrivelse, "dokumentstatus", "Dokumentet er ferdigstilt")
        _sub(beskrivelse, "tittel", item.title)
        _sub(beskrivelse, "opprettetDato", stamp)
        _sub(beskrivelse, "opprettetAv", author)
        _sub(beskrivelse, "tilknyttetRegistreringSom", "Hoveddokument" if number == 1 else "Vedlegg")
        _sub(beskrivelse, "dokumentnummer", str(number))
        _sub(beskrivelse, "tilknyttetDato", stamp)
        _sub(beskrivelse, "tilknyttetAv", author)
        objekt = _sub(beskrivelse, "dokumentobjekt")
        _sub(objekt, "versjonsnummer", "1")
        _sub(objekt, "variantformat", "Produksjonsformat")
        _sub(objekt, "opprettetDato", stamp)
        _sub(objekt, "opprettetAv", author)
        _sub(objekt, "referanseDokumentfil", item.name)
    _sub(post, "tittel", title)
    _sub(post, "offentligTittel", offentlig_tittel if offentlig_tittel is not None else title)
    _sub(post, "journalposttype", "Utgående dokument")
    _sub(post, "journalstatus", "Journalført")
    _sub(post, "journaldato", created.date().isoformat())
    if receiver_name:
        part = _sub(post, "korrespondansepart")
        _sub(part, "korrespondanseparttype", "Mottaker")
        _sub(part, "korrespondansepartNavn", receiver_name)
    _sub(mappe, "saksdato", created.date().isoformat())
    _sub(mappe, "administrativEnhet", administrative_unit or author)
    _sub(mappe, "saksansvarlig", case_handler or author)
    _sub(mappe, "saksstatus", "Under behandling")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _registrations(root: etree._Element) -> list[etree._Element]:
    """Every registrering: under mapper (any depth) as basisregistrering, or directly under the root."""
    return [el for el in root.iter(_q("basisregistrering"), _q("registrering")) if el.getparent() is not None]


def _child_text(element: etree._Element, name: str) -> str | None:
    child = element.find(_q(name))
    if child is None or child.text is None:
        return None
    return child.text.strip()


def read_arkivmelding(content: bytes) -> ArkivmeldingInfo:
    """Title, public title and named files. Title is the journalpost's tittel (the mappe's when the
    message has no registrering); file names are every dokumentobjekt/referanseDokumentfil."""
    root = parse_bytes(content, source="arkivmelding.xml").getroot()
    if root.tag != _q("arkivmelding"):
        raise MessageFormatError(
            f"arkivmelding.xml: the root element must be arkivmelding in {ARKIVMELDING_NS}, not {root.tag}"
        )
    registrations = _registrations(root)
    title = offentlig = None
    if registrations:
        title = _child_text(registrations[0], "tittel")
        offentlig = _child_text(registrations[0], "offentligTittel")
    if title is None:
        mappe = root.find(_q("mappe"))
        if mappe is not None:
            title = _child_text(mappe, "tittel")
            offentlig = offentlig or _child_text(mappe, "offentligTittel")
    if not title:
        raise MessageFormatError("arkivmelding.xml: no tittel found in its journalpost or mappe")
    names = tuple((ref.text or "").strip() for ref in root.iter(_q("referanseDokumentfil")) if (ref.text or "").strip())
    return ArkivmeldingInfo(title=title, offentlig_tittel=offentlig, file_names=names)


def missing_and_unlisted(info: ArkivmeldingInfo, present: Iterable[str]) -> tuple[list[str], list[str]]:
    """(files the arkivmelding names that are absent, files present that it does not name).
    arkivmelding.xml itself never counts as unlisted."""
    present_set = set(present)
    named = set(info.file_names)
    missing = [name for name in info.file_names if name not in present_set]
    unlisted = sorted(name for name in present_set - named if name != "arkivmelding.xml")
    return missing, unlisted


def arkivmelding_problems(info: ArkivmeldingInfo, present: Iterable[str]) -> list[str]:
    missing, unlisted = missing_and_unlisted(info, present)
    problems = [
        f"arkivmelding.xml names {name!r} in referanseDokumentfil, but no such file came with the message"
        for name in missing
    ]
    problems += [
        f"{name!r} came with the message but arkivmelding.xml does not name it; add a dokumentobjekt "
        "with referanseDokumentfil for it, or leave the file out"
        for name in unlisted
    ]
    return problems

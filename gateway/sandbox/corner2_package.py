"""How the sandbox's mailbox and print service open a dokumentpakke: decrypt, unzip, check, read the manifest.

Independent of the gateway's DPI formats: the CMS is decrypted with the shared CMS reader and the provider's
own key, the ASiC-E is read with zipfile, and every file the XAdES signature names is checked against its
SHA-256 with hashlib (the signature value itself is the gateway's XAdES tests' business, with xmlsec1). A
package that fails here gets a `feil` receipt, as a provider sends one for a package it cannot open.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gateway.errors import CryptoError, MessageFormatError, SecurityError
from gateway.formats.cms import decrypt_file
from gateway.xmlsafe import parse_bytes

ASIC_MIMETYPE = b"application/vnd.etsi.asic-e+zip"
SDP = "{http://begrep.difi.no/sdp/schema_v10}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SIGNATURES = "META-INF/signatures.xml"
MAX_FILES = 200
MAX_EXPANDED_BYTES = 200 << 20


class PackageProblem(Exception):
    """The dokumentpakke cannot be opened or does not hold what it says; the words go into a `feil` receipt."""


@dataclass(frozen=True)
class LetterFile:
    name: str
    mime_type: str
    title: str | None
    path: Path
    size: int
    sha256: str  # hex

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "mimeType": self.mime_type, "title": self.title, "size": self.size,
                "sha256": self.sha256}


@dataclass(frozen=True)
class OpenedPackage:
    main_document: LetterFile
    attachments: list[LetterFile]
    person: str | None  # the manifest's personidentifikator (digital letters)
    mailbox_address: str | None  # the manifest's postkasseadresse
    avsender: str | None

    @property
    def documents(self) -> list[LetterFile]:
        return [self.main_document, *self.attachments]


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and ".." not in parts and "" not in parts


def _signed_digests(archive: zipfile.ZipFile) -> dict[str, str]:
    try:
        tree = parse_bytes(archive.read(SIGNATURES), SIGNATURES)
    except KeyError as exc:
        raise PackageProblem(f"the dokumentpakke holds no {SIGNATURES} (the XAdES signature)") from exc
    except MessageFormatError as exc:
        raise PackageProblem(str(exc)) from exc
    digests = {}
    for reference in tree.iter(f"{DS}Reference"):
        uri = reference.get("URI") or ""
        if uri.startswith("#"):
            continue  # the SignedProperties
        method = reference.find(f"{DS}DigestMethod")
        value = reference.findtext(f"{DS}DigestValue") or ""
        if method is None or method.get("Algorithm") != "http://www.w3.org/2001/04/xmlenc#sha256":
            raise PackageProblem(f"the signature's reference to {uri} is not a SHA-256 digest")
        digests[uri] = "".join(value.split())
    return digests


def _manifest_file(element: object, files: dict[str, LetterFile], what: str) -> LetterFile:
    href = element.get("href")  # type: ignore[attr-defined]
    if href not in files:
        raise PackageProblem(f"the manifest's {what} {href!r} is not in the dokumentpakke")
    found = files[href]
    title = element.findtext(f"{SDP}tittel")  # type: ignore[attr-defined]
    return LetterFile(found.name, element.get("mime") or found.mime_type, title,  # type: ignore[attr-defined]
                      found.path, found.size, found.sha256)


def open_dokumentpakke(cms: Path, private_key: RSAPrivateKey, certificate: x509.Certificate,
                       folder: Path) -> OpenedPackage:
    """Decrypt `cms` with the provider's key into `folder` and check it; PackageProblem says what is wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / ".asic.zip"
    try:
        decrypt_file(cms, plain, private_key, certificate)
    except (CryptoError, SecurityError) as exc:
        raise PackageProblem(f"the dokumentpakke cannot be decrypted with the provider's key: {exc}") from exc
    try:
        with zipfile.ZipFile(plain) as archive:
            infos = archive.infolist()
            if not infos or infos[0].filename != "mimetype" or archive.read("mimetype").strip() != ASIC_MIMETYPE:
                raise PackageProblem("the dokumentpakke is not an ASiC-E: its first entry is not the mimetype "
                                     f"{ASIC_MIMETYPE.decode()}")
            if len(infos) > MAX_FILES or sum(info.file_size for info in infos) > MAX_EXPANDED_BYTES:
                raise PackageProblem("the dokumentpakke unpacks to more than the provider takes")
            digests = _signed_digests(archive)
            files: dict[str, LetterFile] = {}
            for info in infos:
                name = info.filename
                if info.is_dir() or name == "mimetype" or name.startswith("META-INF/"):
                    continue
                if not _safe_name(name):
                    raise PackageProblem(f"the dokumentpakke holds a file with an unsafe name: {name!r}")
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.open(info) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 16):
                        digest.update(chunk)
                        sink.write(chunk)
                signed = digests.get(name)
                if signed is None:
                    raise PackageProblem(f"{name} is in the dokumentpakke but not signed")
                if base64.b64encode(digest.digest()).decode("ascii") != signed:
                    raise PackageProblem(f"{name} does not match its digest in the XAdES signature")
                files[name] = LetterFile(name, "application/octet-stream", None, target, info.file_size,
                                         digest.hexdigest())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackageProblem(f"the decrypted dokumentpakke is not a readable zip: {exc}") from exc
    finally:
        plain.unlink(missing_ok=True)
    missing = sorted(set(digests) - set(files))
    if missing:
        raise PackageProblem(f"the XAdES signature names {', '.join(missing)}, which the dokumentpakke lacks")
    if "manifest.xml" not in files:
        raise PackageProblem("the dokumentpakke holds no manifest.xml")
    try:
        manifest = parse_bytes(files.pop("manifest.xml").path.read_bytes(), "manifest.xml").getroot()
    except MessageFormatError as exc:
        raise PackageProblem(str(exc)) from exc
    (folder / "manifest.xml").unlink(missing_ok=True)
    main = manifest.find(f"{SDP}hoveddokument")
    if main is None:
        raise PackageProblem("the manifest names no hoveddokument")
    person = manifest.find(f"{SDP}mottaker/{SDP}person")
    return OpenedPackage(
        _manifest_file(main, files, "hoveddokument"),
        [_manifest_file(element, files, "vedlegg") for element in manifest.findall(f"{SDP}vedlegg")],
        person.findtext(f"{SDP}personidentifikator") if person is not None else None,
        person.findtext(f"{SDP}postkasseadresse") if person is not None else None,
        manifest.findtext(f"{SDP}avsender/{SDP}organisasjon"),
    )


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


__all__ = ["LetterFile", "OpenedPackage", "PackageProblem", "discard", "open_dokumentpakke"]

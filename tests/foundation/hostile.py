"""Hostile drops for the intake tests (issue #8): each case builds its entries in a folder (the
outbox, or a scratch outbox for `efm-gateway validate`) and says what the daemon must do with it."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.formats.arkivmelding import ArkivmeldingFile, build_arkivmelding
from gateway.fsio import text_name

from .drops import pdf_bytes, sha256, sidecar_xml

REJECTED = "rejected"  # claimed, journalled with FEIL, moved to failed/ with its explanation
ORPHAN = "orphan"  # never a drop: moved to failed/ with an explanation, no status file
STAYS = "stays"  # cannot even be moved: explained in failed/, left in the outbox
ACCEPTED = "accepted"  # sent


@dataclass
class Case:
    entry: str  # the outbox entry (what `validate` is pointed at)
    build: Callable[[Path], None]  # makes the entry (and anything beside it) in the given folder
    outcome: str
    phrases: tuple[str, ...] = ()  # in the explanation / the status file, and in validate's output
    permission: bool = False  # needs a daemon without CAP_DAC_OVERRIDE
    absent: tuple[str, ...] = ()  # must NOT appear in the explanation
    also: dict[str, str] = field(default_factory=dict)  # other entries the case makes, with their outcome

    @property
    def drop_name(self) -> str:
        is_flat = self.entry.endswith(".xml") and self.outcome in (REJECTED, ACCEPTED)
        return self.entry[: -len(".xml")] if is_flat else self.entry


def _folder(
    area: Path,
    name: str,
    files: dict[str, bytes] | None = None,
    sidecar: bytes | None = None,
    special: Callable[[Path], None] | None = None,
) -> None:
    """A folder drop built beside `area` and renamed in whole."""
    staging = Path(tempfile.mkdtemp(dir=area.parent, prefix="stage-"))
    folder = staging / name
    folder.mkdir()
    for file_name, content in (files if files is not None else {"brev.pdf": pdf_bytes(text_name(name))}).items():
        (folder / file_name).write_bytes(content)
    if sidecar is not None or special is None:
        (folder / "message.xml").write_bytes(sidecar if sidecar is not None else sidecar_xml())
    if special is not None:
        special(folder)
    os.rename(folder, area / name)
    staging.rmdir()


def _flat(area: Path, name: str, files: dict[str, bytes], sidecar: bytes) -> None:
    for file_name, content in files.items():
        (area / file_name).write_bytes(content)
    temp = area / f".{name}.xml.tmp"
    temp.write_bytes(sidecar)
    os.rename(temp, area / f"{name}.xml")


def _docs(*names: str) -> list[dict]:
    return [{"file": name, "main": index == 0} for index, name in enumerate(names)]


def _with_docs(*names: str) -> dict:
    return {"files": {name: pdf_bytes(name) for name in names}, "sidecar": sidecar_xml(documents=_docs(*names))}


def _mknod_zero(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))


def _socket_at(path: Path) -> None:
    # A socket's path is limited to 108 bytes: bind it in a short folder, then move it into place.
    short = Path(tempfile.mkdtemp(dir="/tmp", prefix="s"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(short / "s"))
    os.rename(short / "s", path)
    short.rmdir()


def _fifo_elsewhere(area: Path) -> Path:
    target = area.parent / f"fifo-{os.getpid()}-{len(os.listdir(area.parent))}"
    os.mkfifo(target)
    return target


def arkivmelding(*names: str) -> bytes:
    files = [ArkivmeldingFile(name=name, title=name, main=index == 0) for index, name in enumerate(names)]
    return build_arkivmelding(title="Vedtak", files=files, created=datetime(2026, 12, 1, tzinfo=UTC))


def _supplied(area: Path, name: str, documents: tuple[str, ...], supplied: bytes) -> None:
    files = {document: pdf_bytes(document) for document in documents}
    files["arkivmelding.xml"] = supplied
    _folder(area, name, files, sidecar_xml(documents=_docs(*documents)))


def _mode(path: Path, mode: int) -> None:
    path.chmod(mode)


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(entry: str, build: Callable[[Path], None], outcome: str, *phrases: str, **options) -> None:
        cases.append(Case(entry, build, outcome, phrases, **options))

    # 2, 3, 4: the sidecar must be a regular file of bounded size, never followed through a link.
    add(
        "fifo-sidecar",
        lambda a: _folder(a, "fifo-sidecar", special=lambda f: os.mkfifo(f / "message.xml")),
        REJECTED,
        "message.xml",
        "named pipe (FIFO)",
    )
    add(
        "fifo-link-sidecar",
        lambda a: _folder(a, "fifo-link-sidecar", special=lambda f: os.symlink(_fifo_elsewhere(a), f / "message.xml")),
        REJECTED,
        "message.xml",
        "symbolic link",
    )
    add(
        "zero-sidecar",
        lambda a: _folder(a, "zero-sidecar", special=lambda f: os.symlink("/dev/zero", f / "message.xml")),
        REJECTED,
        "symbolic link",
    )
    add(
        "device-sidecar",
        lambda a: _folder(a, "device-sidecar", special=lambda f: _mknod_zero(f / "message.xml")),
        REJECTED,
        "device file",
    )
    add(
        "sparse-sidecar",
        lambda a: _folder(a, "sparse-sidecar", special=lambda f: os.truncate(_touch(f / "message.xml"), 1 << 30)),
        REJECTED,
        "larger than the 4194304 bytes",
    )
    add(
        "shadow-sidecar",
        lambda a: _folder(a, "shadow-sidecar", special=lambda f: os.symlink("/etc/shadow", f / "message.xml")),
        REJECTED,
        "symbolic link",
        absent=("well-formed",),
    )
    add(
        "folder-sidecar",
        lambda a: _folder(a, "folder-sidecar", special=lambda f: (f / "message.xml").mkdir()),
        REJECTED,
        "'message.xml' is a folder, not a regular file",
    )
    add(
        "flat-fifo-doc.xml",
        lambda a: _flat_with(a, "flat-fifo-doc", lambda path: os.mkfifo(path)),
        REJECTED,
        "'flat-fifo-doc.pdf' is a named pipe (FIFO)",
    )
    add(
        "flat-link-doc.xml",
        lambda a: _flat_with(a, "flat-link-doc", lambda path: os.symlink("/etc/shadow", path)),
        REJECTED,
        "'flat-link-doc.pdf' is a symbolic link",
    )
    # 11: a flat sidecar that is not a regular file says what it is.
    add("flat-fifo.xml", lambda a: os.mkfifo(a / "flat-fifo.xml"), ORPHAN, "named pipe (FIFO)", "cannot be a sidecar")
    add("flat-zero.xml", lambda a: os.symlink("/dev/zero", a / "flat-zero.xml"), ORPHAN, "symbolic link", "sidecar")
    add(
        "flat-link.xml",
        lambda a: _linked_sidecar(a),
        ORPHAN,
        "symbolic link",
        "sidecar",
        also={"flat-link.pdf": ORPHAN},
    )
    add("folder-link", lambda a: _linked_folder(a), ORPHAN, "symbolic link")
    # Documents: regular files only.
    add(
        "doc-link",
        lambda a: _folder(
            a, "doc-link", {}, sidecar_xml(), special=lambda f: os.symlink("/etc/passwd", f / "brev.pdf")
        ),
        REJECTED,
        "'brev.pdf' is a symbolic link",
    )
    add(
        "doc-device",
        lambda a: _folder(a, "doc-device", {}, sidecar_xml(), special=lambda f: _mknod_zero(f / "brev.pdf")),
        REJECTED,
        "'brev.pdf' is a device file",
    )
    add(
        "doc-fifo",
        lambda a: _folder(a, "doc-fifo", {}, sidecar_xml(), special=lambda f: os.mkfifo(f / "brev.pdf")),
        REJECTED,
        "'brev.pdf' is a named pipe",
    )
    add(
        "doc-socket",
        lambda a: _folder(a, "doc-socket", {}, sidecar_xml(), special=lambda f: _socket_at(f / "brev.pdf")),
        REJECTED,
        "'brev.pdf' is a socket",
    )
    # 5, 11: drop names are held to the document-name rules; one that is not text is stored escaped.
    add(
        os.fsdecode(b"brev\xe5"), lambda a: _folder(a, os.fsdecode(b"brev\xe5")), REJECTED, "not valid UTF-8", "brev%E5"
    )
    add("linje\nskift", lambda a: _folder(a, "linje\nskift"), REJECTED, "control characters")
    add("sak:1", lambda a: _folder(a, "sak:1"), REJECTED, "Windows")
    # 6: what the packer would refuse is refused at intake.
    add(
        "case-twice",
        lambda a: _folder(a, "case-twice", **_with_docs("A.pdf", "a.pdf")),
        REJECTED,
        "differ only in upper and lower case",
    )
    add("colon-doc", lambda a: _folder(a, "colon-doc", **_with_docs("C:brev.pdf")), REJECTED, "Windows")
    add(
        "mimetype-doc",
        lambda a: _folder(a, "mimetype-doc", **_with_docs("mimetype")),
        REJECTED,
        "cannot be a document's name",
    )
    add(
        "manifest-doc",
        lambda a: _folder(a, "manifest-doc", **_with_docs("manifest.xml")),
        REJECTED,
        "cannot be a document's name",
    )
    # 11: Windows names, refused (the receiving archive could not save them).
    add(
        "reserved-names",
        lambda a: _folder(a, "reserved-names", **_with_docs("CON.pdf", "aux", "nul.txt")),
        REJECTED,
        "reserved device name",
    )
    add(
        "trailing-dot",
        lambda a: _folder(a, "trailing-dot", **_with_docs("brev.pdf.", "vedlegg.pdf ")),
        REJECTED,
        "ends with a dot or a space",
    )
    add(
        "odd-characters",
        lambda a: _folder(a, "odd-characters", **_with_docs("hva?.pdf", "stjerne*.pdf", "rør|.pdf", 'sitat".pdf')),
        REJECTED,
        "Windows file names cannot hold",
    )
    add(
        "newline-doc",
        lambda a: _folder(a, "newline-doc", **_with_docs("linje\nskift.pdf")),
        REJECTED,
        "control characters",
    )
    # 11: organisation numbers are ASCII digits.
    add(
        "fullwidth-orgnr",
        lambda a: _folder(a, "fullwidth-orgnr", sidecar=sidecar_xml(receiver="９１００７５９１８")),
        REJECTED,
        "9 digits (0-9)",
    )
    add(
        "arabic-indic-orgnr",
        lambda a: _folder(a, "arabic-indic-orgnr", sidecar=sidecar_xml(receiver="٩١٠٠٧٥٩١٨")),
        REJECTED,
        "9 digits (0-9)",
    )
    # 11: sizes before hashing; the document limit said in words.
    add(
        "huge-with-sha",
        lambda a: _folder(
            a,
            "huge-with-sha",
            {},
            sidecar_xml(documents=[{"file": "stor.pdf", "main": True, "sha256": "ab" * 32}]),
            special=lambda f: os.truncate(_touch(f / "stor.pdf"), 5 << 30),
        ),
        REJECTED,
        "more than the",
    )
    add(
        "too-many-documents",
        lambda a: _folder(
            a, "too-many-documents", {}, sidecar_xml(documents=[{"file": f"d{i}.pdf"} for i in range(1001)])
        ),
        REJECTED,
        "at most 1000",
    )
    # 8: a flat sidecar names files only: the folder it names is a drop of its own.
    add(
        "swallow.xml",
        lambda a: _swallow(a),
        REJECTED,
        "a flat sidecar names files only",
        also={"swallowed-folder": ACCEPTED},
    )
    # 7: a supplied arkivmelding.xml is checked.
    add(
        "am-names-ghost",
        lambda a: _supplied(a, "am-names-ghost", ("brev.pdf",), arkivmelding("brev.pdf", "ghost.pdf")),
        REJECTED,
        "names 'ghost.pdf'",
    )
    add(
        "am-omits-one",
        lambda a: _supplied(a, "am-omits-one", ("brev.pdf", "vedlegg.pdf"), arkivmelding("brev.pdf")),
        REJECTED,
        "'vedlegg.pdf' came with the message but arkivmelding.xml does not name it",
    )
    add(
        "am-doctype",
        lambda a: _supplied(
            a,
            "am-doctype",
            ("brev.pdf",),
            arkivmelding("brev.pdf").replace(b"?>", b'?>\n<!DOCTYPE arkivmelding [<!ENTITY x "y">]>', 1),
        ),
        REJECTED,
        "DOCTYPE",
    )
    add(
        "am-not-xml",
        lambda a: _supplied(a, "am-not-xml", ("brev.pdf",), b"%PDF-1.4 not xml"),
        REJECTED,
        "not well-formed",
    )
    add(
        "am-schema",
        lambda a: _supplied(a, "am-schema", ("brev.pdf",), _without_system(arkivmelding("brev.pdf"))),
        REJECTED,
        "arkivmelding.xsd",
    )
    add("am-good", lambda a: _supplied(a, "am-good", ("brev.pdf",), arkivmelding("brev.pdf")), ACCEPTED)
    # 9: text after a comment counts, in every element.
    add(
        "comment-text",
        lambda a: _folder(a, "comment-text", {"brev.pdf": pdf_bytes("c")}, _commented_sidecar()),
        ACCEPTED,
    )
    # 11: an empty document is sent, with a warning in the status file.
    add("empty-document", lambda a: _folder(a, "empty-document", {"brev.pdf": b""}), ACCEPTED, "empty (0 bytes)")

    # 1, 5, 6: permission cases (the daemon runs without CAP_DAC_OVERRIDE).
    add(
        "closed-folder",
        lambda a: _folder(a, "closed-folder", sidecar=sidecar_xml(), special=lambda f: _mode(f, 0)),
        STAYS,
        "cannot be read by the gateway (permission denied)",
        "still in the outbox",
        permission=True,
    )
    add(
        "fixed-folder",
        lambda a: _folder(a, "fixed-folder", sidecar=sidecar_xml(), special=lambda f: _owned_by_nobody(f)),
        STAYS,
        "cannot move",
        "still in the outbox",
        permission=True,
    )
    add(
        "closed-sidecar",
        lambda a: _folder(a, "closed-sidecar", special=lambda f: _closed(f / "message.xml", sidecar_xml())),
        REJECTED,
        "'message.xml' cannot be read by the gateway (permission denied)",
        permission=True,
    )
    add(
        "closed-document",
        lambda a: _folder(
            a, "closed-document", {}, sidecar_xml(), special=lambda f: _closed(f / "brev.pdf", pdf_bytes("x"))
        ),
        REJECTED,
        "'brev.pdf' cannot be read by the gateway (permission denied)",
        permission=True,
    )
    content = pdf_bytes("hashed")
    add(
        "closed-document-sha",
        lambda a: _folder(
            a,
            "closed-document-sha",
            {},
            sidecar_xml(documents=[{"file": "brev.pdf", "main": True, "sha256": sha256(content)}]),
            special=lambda f: _closed(f / "brev.pdf", content),
        ),
        REJECTED,
        "'brev.pdf' cannot be read by the gateway (permission denied)",
        permission=True,
    )
    add(
        "closed-flat.xml",
        lambda a: _closed_flat(a),
        REJECTED,
        "cannot be read by the gateway (permission denied)",
        permission=True,
        also={"closed-flat.pdf": ORPHAN},
    )
    return cases


def _flat_with(area: Path, name: str, make_document: Callable[[Path], None]) -> None:
    """A flat drop whose one document is made by `make_document` (a FIFO, a link...)."""
    make_document(area / f"{name}.pdf")
    _flat(area, name, {}, sidecar_xml(documents=_docs(f"{name}.pdf")))


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _closed(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0)


def _owned_by_nobody(folder: Path) -> None:
    for child in folder.iterdir():
        os.chown(child, 65534, 65534)
    os.chown(folder, 65534, 65534)
    folder.chmod(0o755)


def _closed_flat(area: Path) -> None:
    (area / "closed-flat.pdf").write_bytes(pdf_bytes("flat"))
    temp = area / ".closed-flat.tmp"
    temp.write_bytes(sidecar_xml(documents=_docs("closed-flat.pdf")))
    temp.chmod(0)
    os.rename(temp, area / "closed-flat.xml")


def _linked_sidecar(area: Path) -> None:
    (area / "flat-link.pdf").write_bytes(pdf_bytes("l"))
    target = area.parent / f"elsewhere-{len(os.listdir(area.parent))}.xml"
    target.write_bytes(sidecar_xml(documents=_docs("flat-link.pdf")))
    os.symlink(target, area / "flat-link.xml")


def _linked_folder(area: Path) -> None:
    elsewhere = Path(tempfile.mkdtemp(dir=area.parent, prefix="real-"))
    (elsewhere / "brev.pdf").write_bytes(pdf_bytes("x"))
    (elsewhere / "message.xml").write_bytes(sidecar_xml())
    os.symlink(elsewhere, area / "folder-link")


def _swallow(area: Path) -> None:
    # A folder drop still being written in place, and a flat sidecar that names it.
    folder = area / "swallowed-folder"
    folder.mkdir()
    (folder / "brev.pdf").write_bytes(pdf_bytes("own"))
    (folder / "message.xml").write_bytes(sidecar_xml())
    _flat(
        area,
        "swallow",
        {"swallow.pdf": pdf_bytes("s")},
        sidecar_xml(documents=_docs("swallow.pdf", "swallowed-folder")),
    )


def _without_system(content: bytes) -> bytes:
    start = content.index(b"<system>")
    end = content.index(b"</system>") + len(b"</system>")
    return content[:start] + content[end:]


def _commented_sidecar() -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<message xmlns="urn:efm-gateway:message:1">\n'
        "  <receiver>910<!-- the peer -->075918</receiver>\n"
        "  <title>Vedtak <!-- x --> om løyve</title>\n"
        '  <documents><document main="true"><file>brev<!-- y -->.pdf</file></document></documents>\n'
        "</message>\n"
    ).encode()


def cases(with_permissions: bool) -> list[Case]:
    return [case for case in _cases() if with_permissions or not case.permission]

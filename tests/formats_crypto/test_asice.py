"""ASiC-E: a written container reads back; every kind of tampering is refused with its own message."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.devcerts import DevPki, dev_identity, issue_identity
from gateway.errors import SecurityError
from gateway.formats.asice import AsicDocument, AsicLimits, write_asice
from gateway.formats.asice_reader import read_asice
from gateway.formats.keys import OrgIdentity, TrustStore

from .support import RECEIVER, SENDER, declare_sizes, key_and_cert_paths, openssl

MAIN = "vedtak.pdf"
MAIN_BYTES = b"%PDF-1.7 a decision\n" * 500
NOW = datetime.now(UTC)  # the time of receipt the tests give the reader
ARKIVMELDING = b'<?xml version="1.0"?><arkivmelding xmlns="http://www.arkivverket.no/standarder/noark5/arkivmelding"/>'


def make_container(folder: Path, identity: OrgIdentity) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MAIN).write_bytes(MAIN_BYTES)
    (folder / "arkivmelding.xml").write_bytes(ARKIVMELDING)
    container = folder / "asic.asice"
    with open(container, "wb") as target:
        write_asice(
            target,
            [
                AsicDocument(MAIN, folder / MAIN, "application/pdf"),
                AsicDocument("arkivmelding.xml", folder / "arkivmelding.xml", "application/xml"),
            ],
            sender=SENDER,
            receiver=RECEIVER,
            identity=identity,
        )
    return container


def rezip(
    source: Path,
    target: Path,
    replace: dict[str, bytes | None] | None = None,
    add: list[tuple[str, bytes]] | None = None,
    rename: dict[str, str] | None = None,
) -> Path:
    """Copy a container entry by entry, changing, dropping, renaming or adding entries."""
    replace, rename = replace or {}, rename or {}
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as changed:
        for info in original.infolist():
            if info.filename in replace and replace[info.filename] is None:
                continue
            content = replace.get(info.filename) or original.read(info)
            info.filename = rename.get(info.filename, info.filename)
            changed.writestr(info, content, compress_type=info.compress_type)
        for name, content in add or []:
            changed.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
    return target


def hand_made(target: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"application/vnd.etsi.asic-e+zip")
        for info, content in entries:
            archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED)
    return target


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory, sender: OrgIdentity) -> Path:
    return make_container(tmp_path_factory.mktemp("asic"), sender)


def test_round_trip(container: Path, trust: TrustStore, sender: OrgIdentity, tmp_path: Path) -> None:
    contents = read_asice(container, tmp_path / "out", trust, at=NOW)
    assert contents.signer == sender.certificate
    assert contents.main_document == MAIN
    assert [(item.name, item.mime_type, item.size) for item in contents.files] == [
        (MAIN, "application/pdf", len(MAIN_BYTES)),
        ("arkivmelding.xml", "application/xml", len(ARKIVMELDING)),
    ]
    assert (tmp_path / "out" / MAIN).read_bytes() == MAIN_BYTES
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["arkivmelding.xml", MAIN]


def test_layout_is_what_peers_expect(container: Path, pki: DevPki, tmp_path: Path) -> None:
    with zipfile.ZipFile(container) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names[:4] == ["mimetype", "manifest.xml", MAIN, "arkivmelding.xml"]
        assert infos[0].compress_type == zipfile.ZIP_STORED and not infos[0].extra
        assert archive.read("mimetype") == b"application/vnd.etsi.asic-e+zip"
        assert names[4] == "META-INF/ASiCManifest.xml" and names[6] == "META-INF/manifest.xml"
        assert names[5].startswith("META-INF/signature-") and names[5].endswith(".p7s")
        assert all(not info.flag_bits & 0x08 for info in infos)  # no data descriptors: Java reads them
        assert b'<hoveddokument href="vedtak.pdf" mime="application/pdf">' in archive.read("manifest.xml")
        (tmp_path / "m").write_bytes(archive.read(names[4]))
        (tmp_path / "s").write_bytes(archive.read(names[5]))
    openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        tmp_path / "s",
        "-content",
        tmp_path / "m",
        "-CAfile",
        pki.trust_bundle,
        "-purpose",
        "any",
        "-out",
        tmp_path / "out",
    )


def test_lower_case_asic_manifest_is_accepted(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    renamed = rezip(
        container, tmp_path / "lower.asice", rename={"META-INF/ASiCManifest.xml": "META-INF/asicmanifest.xml"}
    )
    assert read_asice(renamed, tmp_path / "out", trust, at=NOW).main_document == MAIN


def test_changed_document(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    changed = rezip(container, tmp_path / "c.asice", replace={MAIN: MAIN_BYTES.replace(b"decision", b"decisiOn")})
    with pytest.raises(SecurityError, match=r"'vedtak.pdf' was changed: its SHA256 digest does not match"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)
    assert not (tmp_path / "out" / MAIN).exists()  # nothing unverified is left behind


def test_missing_file(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    changed = rezip(container, tmp_path / "c.asice", replace={"arkivmelding.xml": None})
    with pytest.raises(SecurityError, match=r"missing file 'arkivmelding.xml'"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)


def test_extra_file(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    changed = rezip(container, tmp_path / "c.asice", add=[("smuggled.exe", b"MZ")])
    with pytest.raises(SecurityError, match=r"extra file 'smuggled.exe'"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)


def test_changed_manifest(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    with zipfile.ZipFile(container) as archive:
        manifest = archive.read("META-INF/ASiCManifest.xml")
    changed = rezip(
        container,
        tmp_path / "c.asice",
        replace={"META-INF/ASiCManifest.xml": manifest.replace(b"application/pdf", b"text/plain")},
    )
    with pytest.raises(SecurityError, match="the ASiC manifest was changed after it was signed"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)


def test_untrusted_signer(stranger_pki: DevPki, trust: TrustStore, tmp_path: Path) -> None:
    forged = make_container(tmp_path / "forged", dev_identity(stranger_pki, SENDER))
    with pytest.raises(SecurityError, match="untrusted issuer"):
        read_asice(forged, tmp_path / "out", trust, at=NOW)


def test_expired_signer_and_the_same_container_inside_validity(pki: DevPki, trust: TrustStore, tmp_path: Path):
    now = datetime.now(UTC)
    old = issue_identity(
        pki, SENDER, "Avsender Test AS", not_before=now - timedelta(days=400), not_after=now - timedelta(days=30)
    )
    container = make_container(tmp_path / "old", old)
    with pytest.raises(SecurityError) as caught:
        read_asice(container, tmp_path / "out", trust, at=now)
    assert "the signer's certificate" in str(caught.value)
    assert f"has expired: valid until {old.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC" in str(caught.value)
    contents = read_asice(container, tmp_path / "out", trust, at=now - timedelta(days=100))
    assert contents.signer == old.certificate


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../escape.txt", "'..'"),
        ("docs/../../escape.txt", "'..'"),
        ("/etc/cron.d/evil", "an absolute path"),
        ("C:/evil.txt", "an absolute path"),
        ("docs\\evil.txt", "a backslash"),
    ],
)
def test_unsafe_entry_names(trust: TrustStore, tmp_path: Path, name: str, rule: str) -> None:
    evil = hand_made(tmp_path / "evil.asice", [(zipfile.ZipInfo(name), b"x")])
    with pytest.raises(SecurityError, match=f"unsafe entry name .* it has {rule}"):
        read_asice(evil, tmp_path / "out", trust, at=NOW)
    assert not (tmp_path / "escape.txt").exists()


def test_symlink_entry(trust: TrustStore, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    evil = hand_made(tmp_path / "evil.asice", [(link, b"/etc/passwd")])
    with pytest.raises(SecurityError, match="is a symbolic link"):
        read_asice(evil, tmp_path / "out", trust, at=NOW)


def test_duplicate_entries(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        changed = rezip(container, tmp_path / "c.asice", add=[(MAIN, b"second copy")])
    with pytest.raises(SecurityError, match=r"duplicate entry name 'vedtak.pdf'"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)


def test_zip_bomb_ratio(trust: TrustStore, tmp_path: Path) -> None:
    bomb = hand_made(tmp_path / "bomb.asice", [("zeros.bin", bytes(20 << 20))])
    with pytest.raises(SecurityError, match=r"ratio limit: 'zeros\.bin' in the container expands more than 200 times"):
        read_asice(bomb, tmp_path / "out", trust, at=NOW)


def test_total_size_limit(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="total size limit"):
        read_asice(container, tmp_path / "out", trust, at=NOW, limits=AsicLimits(max_total_bytes=5000))


def test_too_many_entries(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="too many entries: the container has 7, the limit is 6"):
        read_asice(container, tmp_path / "out", trust, at=NOW, limits=AsicLimits(max_entries=6))
    assert read_asice(container, tmp_path / "out", trust, at=NOW, limits=AsicLimits(max_entries=7)).files


def test_missing_mimetype(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    changed = rezip(container, tmp_path / "c.asice", replace={"mimetype": None})
    with pytest.raises(SecurityError, match="does not start with a 'mimetype' entry"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)


def test_not_a_zip(trust: TrustStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x30\x80 an envelope, not a zip")
    with pytest.raises(SecurityError, match="not a readable zip file"):
        read_asice(junk, tmp_path / "out", trust, at=NOW)



def test_a_corrupt_deflate_stream_is_refused_as_a_bad_container(tmp_path: Path, sender: OrgIdentity, trust) -> None:
    """zlib.error from a damaged compressed entry used to escape instead of a SecurityError."""
    source = tmp_path / "doc.txt"
    source.write_bytes(bytes(range(256)).hex().encode() * 40)  # compresses, but far below the ratio limit
    container = tmp_path / "c.asice"
    with open(container, "w+b") as handle:
        write_asice(handle, [AsicDocument("doc.txt", source, "text/plain")], SENDER, RECEIVER, sender)
    with zipfile.ZipFile(container) as archive:
        info = archive.getinfo("doc.txt")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(container.read_bytes())
    raw[data_start] = 0b111  # a final deflate block of the reserved type 3: zlib refuses it
    container.write_bytes(bytes(raw))
    with pytest.raises(SecurityError):
        read_asice(container, tmp_path / "out", trust, at=NOW)


# ---- what real peers send (issue #10, section 2) ----------------------------------------------


def resign_with_openssl(container: Path, target: Path, pki: DevPki, manifest: bytes) -> Path:
    """Replace the ASiC manifest and sign it anew with `openssl cms`, as another writer would."""
    work = target.parent / f"{target.stem}-signing"
    work.mkdir()
    key, cert = key_and_cert_paths(pki, SENDER)
    (work / "manifest.xml").write_bytes(manifest)
    openssl(
        "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256", "-in", work / "manifest.xml",
        "-signer", cert, "-inkey", key, "-certfile", pki.folder / f"{SENDER}-chain.pem", "-out", work / "sig.p7s",
    )
    with zipfile.ZipFile(container) as archive:
        signature_name = next(name for name in archive.namelist() if name.endswith(".p7s"))
    return rezip(
        container,
        target,
        replace={"META-INF/ASiCManifest.xml": manifest, signature_name: (work / "sig.p7s").read_bytes()},
    )


def asic_manifest_of(container: Path) -> bytes:
    with zipfile.ZipFile(container) as archive:
        return archive.read("META-INF/ASiCManifest.xml")


@pytest.mark.parametrize(
    "namespace", ["http://uri.etsi.org/2918/v1.2.1#", "http://uri.etsi.org/02918/v1.1.1#"]
)
def test_an_older_asic_namespace_is_read(
    container: Path, pki: DevPki, trust: TrustStore, tmp_path: Path, namespace: str
) -> None:
    manifest = asic_manifest_of(container).replace(b"http://uri.etsi.org/02918/v1.2.1#", namespace.encode())
    assert namespace.encode() in manifest
    older = resign_with_openssl(container, tmp_path / "older.asice", pki, manifest)
    contents = read_asice(older, tmp_path / "out", trust, at=NOW)
    assert contents.main_document == MAIN
    assert (tmp_path / "out" / MAIN).read_bytes() == MAIN_BYTES


@pytest.mark.parametrize(
    "digest_uri",
    [
        "http://www.w3.org/2001/04/xmldsig-more#sha256",
        "http://www.w3.org/2000/09/xmldsig#sha256",
    ],
)
def test_other_sha256_digest_uris_are_read_and_still_checked(
    container: Path, pki: DevPki, trust: TrustStore, tmp_path: Path, digest_uri: str
) -> None:
    manifest = asic_manifest_of(container).replace(b"http://www.w3.org/2001/04/xmlenc#sha256", digest_uri.encode())
    assert manifest.count(digest_uri.encode()) == 3  # manifest.xml, the PDF and arkivmelding.xml
    other = resign_with_openssl(container, tmp_path / "other.asice", pki, manifest)
    assert read_asice(other, tmp_path / "out", trust, at=NOW).main_document == MAIN
    changed = rezip(other, tmp_path / "changed.asice", replace={MAIN: MAIN_BYTES + b"appended"})
    with pytest.raises(SecurityError, match=r"'vedtak.pdf' was changed: its SHA256 digest does not match"):
        read_asice(changed, tmp_path / "out2", trust, at=NOW)


def test_a_manifest_in_a_foreign_namespace_is_named_in_the_error(
    container: Path, pki: DevPki, trust: TrustStore, tmp_path: Path
) -> None:
    manifest = asic_manifest_of(container).replace(b"http://uri.etsi.org/02918/v1.2.1#", b"urn:example:asic")
    foreign = resign_with_openssl(container, tmp_path / "foreign.asice", pki, manifest)
    with pytest.raises(SecurityError, match="has the root element ASiCManifest in the namespace urn:example:asic;"):
        read_asice(foreign, tmp_path / "out", trust, at=NOW)


@pytest.mark.parametrize(
    "extra", ["META-INF/extra.xml", "META-INF/signature-unsigned.p7s", "META-INF/ASiCManifest2.xml"]
)
def test_an_unsigned_file_in_meta_inf_is_refused(container: Path, trust: TrustStore, tmp_path: Path, extra: str):
    changed = rezip(container, tmp_path / "c.asice", add=[(extra, b"<x/>")])
    with pytest.raises(SecurityError, match=rf"extra file '{extra}' in META-INF/: nothing signs it"):
        read_asice(changed, tmp_path / "out", trust, at=NOW)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_odf_manifest_and_a_meta_inf_folder_entry_are_allowed(
    container: Path, trust: TrustStore, tmp_path: Path
) -> None:
    with_folder = rezip(container, tmp_path / "c.asice", add=[("META-INF/", b"")])
    with zipfile.ZipFile(with_folder) as archive:
        assert {"META-INF/", "META-INF/manifest.xml"} <= set(archive.namelist())
    assert read_asice(with_folder, tmp_path / "out", trust, at=NOW).main_document == MAIN


def test_a_container_declaring_more_than_the_limit_is_refused_before_extraction(
    container: Path, trust: TrustStore, tmp_path: Path
) -> None:
    declared = rezip(container, tmp_path / "c.asice")
    declare_sizes(declared, MAIN, compressed=3_000_000_000, uncompressed=3_000_000_000)
    with pytest.raises(SecurityError, match="total size limit: the container declares 3000"):
        read_asice(declared, tmp_path / "out", trust, at=NOW)
    assert not (tmp_path / "out").exists()


def test_an_entry_cut_short_names_the_problem(container: Path, trust: TrustStore, tmp_path: Path) -> None:
    stored = rezip(container, tmp_path / "c.asice")
    with zipfile.ZipFile(stored) as archive:
        info = archive.getinfo(MAIN)
    assert info.compress_type == zipfile.ZIP_STORED
    declare_sizes(stored, MAIN, compressed=info.compress_size + 50_000, uncompressed=info.file_size + 50_000)
    with pytest.raises(SecurityError) as caught:
        read_asice(stored, tmp_path / "out", trust, at=NOW)
    assert str(caught.value) == (
        "the container is not a readable zip file: an entry's data ends before its declared size "
        "(the file is truncated or its sizes are wrong)"
    )

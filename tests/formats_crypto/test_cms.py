"""CMS EnvelopedData: interop with OpenSSL both ways, BER/DER forms, streaming, and refusals."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms

from gateway.devcerts import DevPki
from gateway.errors import CryptoError, SecurityError
from gateway.formats.cms import decrypt_file, decrypt_stream, encrypt_file, encrypt_stream
from gateway.formats.keys import OrgIdentity

from .support import OPENSSL, RECEIVER, key_and_cert_paths, openssl

OAEP_SHA256 = [
    "-keyopt",
    "rsa_padding_mode:oaep",
    "-keyopt",
    "rsa_oaep_md:sha256",
    "-keyopt",
    "rsa_mgf1_md:sha256",
]


@pytest.fixture()
def plain_file(tmp_path: Path) -> Path:
    path = tmp_path / "asic.plain"
    path.write_bytes(os.urandom(300_000) + b"tail that is not a block multiple")
    return path


class TrickleReader(io.RawIOBase):
    """Returns 1 to 7 bytes per read, so BER headers and chunks split anywhere."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self._step = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._step = self._step % 7 + 1
        count = self._step if size < 0 else min(size, self._step)
        piece = bytes(self._data[self._offset : self._offset + count])
        self._offset += len(piece)
        return piece


def test_our_envelope_opens_with_openssl(pki: DevPki, receiver: OrgIdentity, plain_file: Path, tmp_path: Path):
    envelope = tmp_path / "asic.zip"
    encrypt_file(plain_file, envelope, receiver.certificate)
    key, cert = key_and_cert_paths(pki, RECEIVER)
    out = tmp_path / "out"
    openssl("cms", "-decrypt", "-inform", "DER", "-in", envelope, "-inkey", key, "-recip", cert, "-out", out)
    assert out.read_bytes() == plain_file.read_bytes()


def test_our_envelope_has_the_promised_structure(receiver: OrgIdentity, tmp_path: Path) -> None:
    target = io.BytesIO()
    encrypt_stream(io.BytesIO(b"x" * 5000), target, receiver.certificate, chunk_size=1000)
    raw = target.getvalue()
    assert raw[:2] == b"\x30\x80" and raw.endswith(b"\x00\x00" * 5)
    enveloped = asn1_cms.ContentInfo.load(raw)
    assert enveloped["content_type"].dotted == "1.2.840.113549.1.7.3"
    data = enveloped["content"]
    assert data["version"].native == "v0"
    (info,) = data["recipient_infos"]
    ktri = info.chosen
    assert ktri["version"].native == "v0" and ktri["rid"].name == "issuer_and_serial_number"
    assert ktri["rid"].chosen["serial_number"].native == receiver.certificate.serial_number
    algorithm = ktri["key_encryption_algorithm"]
    assert algorithm["algorithm"].dotted == "1.2.840.113549.1.1.7"
    assert algorithm["parameters"]["hash_algorithm"]["algorithm"].dotted == "2.16.840.1.101.3.4.2.1"
    assert algorithm["parameters"]["mask_gen_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.8"
    assert algorithm["parameters"]["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    content_info = data["encrypted_content_info"]
    assert content_info["content_type"].dotted == "1.2.840.113549.1.7.1"
    assert content_info["content_encryption_algorithm"]["algorithm"].dotted == "2.16.840.1.101.3.4.1.42"
    assert len(content_info["content_encryption_algorithm"]["parameters"].native) == 16
    # [0] IMPLICIT OCTET STRING, constructed and indefinite, directly after the algorithm identifier
    algorithm_der = content_info["content_encryption_algorithm"].dump()
    assert raw[raw.index(algorithm_der) + len(algorithm_der) :][:4] == b"\xa0\x80\x04\x82"


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("BER stream, OAEP SHA-256", ["-stream", *OAEP_SHA256]),
        ("BER stream, PKCS#1 v1.5", ["-stream"]),
        ("DER, OAEP SHA-1 defaults", ["-keyopt", "rsa_padding_mode:oaep"]),
        ("DER, PKCS#1 v1.5", []),
    ],
)
def test_openssl_envelopes_open_with_ours(
    pki: DevPki, receiver: OrgIdentity, plain_file: Path, tmp_path: Path, label: str, options: list[str]
) -> None:
    _, cert = key_and_cert_paths(pki, RECEIVER)
    envelope = tmp_path / "from-openssl"
    openssl(
        "cms",
        "-encrypt",
        "-binary",
        "-outform",
        "DER",
        "-aes256",
        "-in",
        plain_file,
        "-out",
        envelope,
        "-recip",
        cert,
        *options,
    )
    starts_indefinite = envelope.read_bytes()[:2] == b"\x30\x80"
    assert starts_indefinite == ("-stream" in options), label
    out = tmp_path / "out"
    decrypt_file(envelope, out, receiver.private_key, receiver.certificate)
    assert out.read_bytes() == plain_file.read_bytes()
    with open(envelope, "rb") as source:  # trickled, so every header is split
        trickled = io.BytesIO()
        decrypt_stream(TrickleReader(source.read()), trickled, receiver.private_key)
    assert trickled.getvalue() == plain_file.read_bytes()


@pytest.mark.parametrize("chunk_size", [1, 15, 16, 1000, 1 << 16, 1 << 20])
def test_streaming_round_trip_of_a_few_megabytes(receiver: OrgIdentity, chunk_size: int) -> None:
    content = os.urandom(3 << 20) if chunk_size > 1 else os.urandom(50_001)
    envelope = io.BytesIO()
    encrypt_stream(io.BytesIO(content), envelope, receiver.certificate, chunk_size=chunk_size)
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(envelope.getvalue()), out, receiver.private_key, receiver.certificate)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(content).digest()
    if chunk_size == 1000:
        trickled = io.BytesIO()
        decrypt_stream(TrickleReader(envelope.getvalue()), trickled, receiver.private_key)
        assert trickled.getvalue() == content


def test_empty_content_round_trips(receiver: OrgIdentity) -> None:
    envelope, out = io.BytesIO(), io.BytesIO()
    encrypt_stream(io.BytesIO(b""), envelope, receiver.certificate)
    decrypt_stream(io.BytesIO(envelope.getvalue()), out, receiver.private_key)
    assert out.getvalue() == b""


def test_wrong_recipient_is_a_security_error(receiver: OrgIdentity, sender: OrgIdentity) -> None:
    envelope = io.BytesIO()
    encrypt_stream(io.BytesIO(b"secret"), envelope, sender.certificate)
    with pytest.raises(SecurityError, match="this message was encrypted to another certificate"):
        decrypt_stream(io.BytesIO(envelope.getvalue()), io.BytesIO(), receiver.private_key, receiver.certificate)
    with pytest.raises(CryptoError, match="cannot be decrypted with our private key"):
        decrypt_stream(io.BytesIO(envelope.getvalue()), io.BytesIO(), receiver.private_key)


def test_corrupted_and_truncated_envelopes_are_crypto_errors(receiver: OrgIdentity) -> None:
    envelope = io.BytesIO()
    encrypt_stream(io.BytesIO(os.urandom(10_000)), envelope, receiver.certificate, chunk_size=4096)
    raw = bytearray(envelope.getvalue())
    # Layout at the end: ..., last data block, 04 10, padding block, ten EOC bytes. Flipping a byte
    # of the last data block flips the same byte of the padding block after CBC decryption.
    assert raw[-28:-26] == b"\x04\x10"
    raw[-30] ^= 0x01
    with pytest.raises(CryptoError, match="bad padding"):
        decrypt_stream(io.BytesIO(bytes(raw)), io.BytesIO(), receiver.private_key)
    with pytest.raises(CryptoError, match="truncated"):
        decrypt_stream(io.BytesIO(envelope.getvalue()[:5000]), io.BytesIO(), receiver.private_key)
    with pytest.raises(CryptoError, match="not a CMS EnvelopedData"):
        decrypt_stream(io.BytesIO(b"PK\x03\x04 a plain zip"), io.BytesIO(), receiver.private_key)


@pytest.mark.parametrize("offset", [0, 15], ids=["algorithm SEQUENCE tag", "OAEP hash [0] tag"])
def test_a_malformed_key_transport_algorithm_is_named_as_malformed(receiver: OrgIdentity, offset: int) -> None:
    """Not "wrong key": an operator must see that the message itself is broken."""
    envelope = io.BytesIO()
    encrypt_stream(io.BytesIO(b"hello"), envelope, receiver.certificate)
    broken = bytearray(envelope.getvalue())
    oaep = broken.index(bytes.fromhex("06092a864886f70d010107")) - 2  # the AlgorithmIdentifier's SEQUENCE
    broken[oaep + offset] ^= 0xFF
    with pytest.raises(CryptoError, match="malformed"):
        decrypt_stream(io.BytesIO(bytes(broken)), io.BytesIO(), receiver.private_key, receiver.certificate)


@pytest.mark.parametrize(
    ("missing_markers", "unclosed"),
    [(1, "ContentInfo"), (2, r"\[0\] content"), (3, "EnvelopedData"), (4, "EncryptedContentInfo")],
)
def test_a_ber_envelope_cut_off_before_its_end_markers_is_refused_as_openssl_refuses_it(
    pki: DevPki, receiver: OrgIdentity, plain_file: Path, tmp_path: Path, missing_markers: int, unclosed: str
) -> None:
    _, cert = key_and_cert_paths(pki, RECEIVER)
    envelope = tmp_path / "streamed.ber"
    openssl(
        "cms", "-encrypt", "-binary", "-stream", "-outform", "DER", "-aes256", "-in", plain_file,
        "-out", envelope, "-recip", cert, *OAEP_SHA256,
    )
    whole = envelope.read_bytes()
    assert whole.endswith(b"\x00\x00" * 5)  # the ciphertext chunks, then the five structures, each closed
    truncated = tmp_path / "truncated.ber"
    truncated.write_bytes(whole[: -2 * missing_markers])
    key, _ = key_and_cert_paths(pki, RECEIVER)
    refused = subprocess.run(
        [OPENSSL, "cms", "-decrypt", "-inform", "DER", "-in", truncated, "-inkey", key, "-recip", cert,
         "-out", tmp_path / "openssl.out"],
        capture_output=True,
    )
    assert refused.returncode != 0, "openssl itself refuses the truncated envelope"
    with pytest.raises(
        CryptoError, match=f"truncated: it ends before the end-of-contents marker of its {unclosed}"
    ):
        decrypt_file(truncated, tmp_path / "out", receiver.private_key, receiver.certificate)
    with pytest.raises(CryptoError, match="truncated"):
        decrypt_stream(TrickleReader(truncated.read_bytes()), io.BytesIO(), receiver.private_key)
    decrypt_file(envelope, tmp_path / "out", receiver.private_key, receiver.certificate)
    assert (tmp_path / "out").read_bytes() == plain_file.read_bytes()


def test_a_definite_length_envelope_cut_short_or_with_extra_data_inside_is_refused(
    pki: DevPki, receiver: OrgIdentity, tmp_path: Path
) -> None:
    _, cert = key_and_cert_paths(pki, RECEIVER)
    (tmp_path / "plain").write_bytes(b"a short document")
    envelope = tmp_path / "definite.der"
    openssl(
        "cms", "-encrypt", "-binary", "-outform", "DER", "-aes256", "-in", tmp_path / "plain", "-out", envelope,
        "-recip", cert,
    )
    whole = envelope.read_bytes()
    assert whole[:2] == b"\x30\x82"  # definite lengths all the way
    with pytest.raises(CryptoError, match="truncated"):
        decrypt_stream(io.BytesIO(whole[:-1]), io.BytesIO(), receiver.private_key, receiver.certificate)
    # An extra NULL at the end of the EncryptedContentInfo (the last field of everything), with every
    # enclosing definite length grown to match: ContentInfo, [0], EnvelopedData, EncryptedContentInfo.
    grown = bytearray(whole + b"\x05\x00")
    encrypted_info_start = whole.index(bytes.fromhex("06092a864886f70d010701")) - 2
    assert grown[encrypted_info_start] == 0x30 and grown[encrypted_info_start + 1] < 0x80
    grown[encrypted_info_start + 1] += 2
    for length_at in (2, 17, 21):
        assert grown[length_at - 1] == 0x82
        grown[length_at : length_at + 2] = (int.from_bytes(grown[length_at : length_at + 2], "big") + 2).to_bytes(2)
    with pytest.raises(CryptoError, match="unexpected data at the end of its EncryptedContentInfo"):
        decrypt_stream(io.BytesIO(bytes(grown)), io.BytesIO(), receiver.private_key, receiver.certificate)

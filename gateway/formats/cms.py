"""CMS EnvelopedData (the encrypted `asic.zip`), streamed both ways so memory stays flat.

Writing: AES-256-CBC content, RSAES-OAEP (SHA-256, MGF1-SHA-256) key transport, indefinite-length
BER with the ciphertext in chunks, the way streaming Java senders write it. Reading: BER or DER,
OAEP (any SHA hash) or PKCS#1 v1.5 key transport. The small parts (RecipientInfos, algorithm ids) are
read whole and handed to asn1crypto; only the envelope around the ciphertext is walked here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asn1crypto import algos, core
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from gateway.errors import CryptoError, SecurityError
from gateway.formats import der

ENVELOPED_DATA_OID = "1.2.840.113549.1.7.3"
DATA_OID = "1.2.840.113549.1.7.1"
_BLOCK = 16
_FILE_CHUNK = 1 << 20
# The small structures before the ciphertext are read whole; a bigger one is not a real envelope.
_MAX_SMALL_PART = 1 << 20
_EOC = b"\x00\x00"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# (class, constructed, number) of the tags the envelope walk expects.
_SEQUENCE = (0, True, 16)
_CONTEXT_0 = 2, 0
_UNPROTECTED_ATTRIBUTES = (2, True, 1)


def _read_up_to(source: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, or fewer only at the end: streams may return short reads."""
    first = source.read(size)
    if not first or len(first) == size:
        return first or b""
    parts = [first]
    missing = size - len(first)
    while missing:
        more = source.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------- writing


@functools.lru_cache(maxsize=64)
def _recipient_parts(certificate_der: bytes) -> tuple[bytes, bytes]:
    """The DER of a recipient's IssuerAndSerialNumber and of the OAEP algorithm: the same for every message
    to that recipient, so they are built once (asn1crypto is slow at it)."""
    parsed = asn1_x509.Certificate.load(certificate_der)
    rid = asn1_cms.IssuerAndSerialNumber({"issuer": parsed.issuer, "serial_number": parsed.serial_number}).dump()
    algorithm = asn1_cms.KeyEncryptionAlgorithm(
        {
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams(
                {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                }
            ),
        }
    ).dump()
    return rid, algorithm


def _recipient_infos(recipient: x509.Certificate, content_key: bytes) -> bytes:
    public_key = recipient.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise CryptoError(f"the receiver's certificate holds a {type(public_key).__name__}; eFormidling needs RSA")
    encrypted_key = public_key.encrypt(
        content_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    rid, algorithm = _recipient_parts(recipient.public_bytes(serialization.Encoding.DER))
    # RecipientInfos ::= SET OF; KeyTransRecipientInfo ::= SEQUENCE { version 0, rid, algorithm, encryptedKey }
    key_transport = der.tlv(0x30, b"\x02\x01\x00", rid, algorithm, der.tlv(0x04, encrypted_key))
    return der.tlv(0x31, key_transport)


def _envelope_head(recipient: x509.Certificate, content_key: bytes, iv: bytes) -> bytes:
    content_algorithm = algos.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv}).dump()
    return b"".join(
        [
            b"\x30\x80",  # ContentInfo
            core.ObjectIdentifier(ENVELOPED_DATA_OID).dump(),
            b"\xa0\x80",  # [0] EXPLICIT content
            b"\x30\x80",  # EnvelopedData
            core.Integer(0).dump(),
            _recipient_infos(recipient, content_key),
            b"\x30\x80",  # EncryptedContentInfo
            core.ObjectIdentifier(DATA_OID).dump(),
            content_algorithm,
            b"\xa0\x80",  # [0] IMPLICIT OCTET STRING, constructed: the ciphertext chunks follow
        ]
    )


def encrypt_stream(source: BinaryIO, target: BinaryIO, recipient: x509.Certificate, chunk_size: int = 1 << 16) -> None:
    """Encrypt everything `source` yields to `recipient`, writing BER to `target` chunk by chunk."""
    content_key, iv = os.urandom(32), os.urandom(_BLOCK)
    target.write(_envelope_head(recipient, content_key, iv))
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    total = 0
    while chunk := _read_up_to(source, chunk_size):
        total += len(chunk)
        _write_octets(target, encryptor.update(chunk))
    pad_length = _BLOCK - total % _BLOCK
    _write_octets(target, encryptor.update(bytes([pad_length]) * pad_length) + encryptor.finalize())
    target.write(_EOC * 5)  # closes the [0] chunks, EncryptedContentInfo, EnvelopedData, [0], ContentInfo


def _write_octets(target: BinaryIO, ciphertext: bytes) -> None:
    if ciphertext:
        target.write(b"\x04" + der.length(len(ciphertext)))
        target.write(ciphertext)


def encrypt_file(source: Path, target: Path, recipient: x509.Certificate) -> None:
    with open(source, "rb") as plain, open(target, "wb") as envelope:
        encrypt_stream(plain, envelope, recipient, chunk_size=_FILE_CHUNK)


# ---------------------------------------------------------------------------------------- reading


class _Truncated(CryptoError):
    """The stream ended inside the envelope."""


@dataclass(frozen=True)
class _Open:
    """A constructed element the walk has entered: what it is, and where it ends (None: indefinite)."""

    name: str
    end: int | None


class _BerReader:
    """Walks BER headers on a stream, counting bytes so definite lengths can be checked."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.position = 0

    def read_exact(self, size: int) -> bytes:
        data = _read_up_to(self._source, size)
        self.position += len(data)
        if len(data) != size:
            raise _Truncated("the encrypted message ends too early: the file is truncated")
        return data

    def read_header(self) -> tuple[tuple[int, bool, int], int | None, bytes]:
        """((class, constructed, number), length or None for indefinite, the raw header bytes)."""
        raw = bytearray(self.read_exact(1))
        first = raw[0]
        number = first & 0x1F
        if number == 0x1F:
            number = 0
            while True:
                byte = self.read_exact(1)[0]
                raw.append(byte)
                number = (number << 7) | (byte & 0x7F)
                if not byte & 0x80:
                    break
                if len(raw) > 6:
                    raise CryptoError("the encrypted message has a malformed tag")
        length_byte = self.read_exact(1)[0]
        raw.append(length_byte)
        length: int | None
        if length_byte == 0x80:
            length = None
        elif length_byte & 0x80:
            count = length_byte & 0x7F
            if count > 8:
                raise CryptoError("the encrypted message has a malformed length")
            length_bytes = self.read_exact(count)
            raw += length_bytes
            length = int.from_bytes(length_bytes, "big")
        else:
            length = length_byte
        tag = (first >> 6, bool(first & 0x20), number)
        if length is None and not tag[1]:
            raise CryptoError("the encrypted message has an indefinite length on a primitive value")
        return tag, length, bytes(raw)

    def enter(self, wanted: tuple[int, bool, int], name: str) -> _Open:
        """Read the header of the constructed element `name`, which must have the tag `wanted`."""
        tag, length, _ = self.read_header()
        _expect(tag, wanted, f"{'an' if name[0] in 'AEIOU' else 'a'} {name}")
        return _Open(name, None if length is None else self.position + length)

    def close(self, element: _Open, optional: tuple[int, bool, int] | None = None) -> None:
        """Read to the end of `element`: its end-of-contents marker when indefinite, skipping `optional` fields.

        Without this a truncated BER envelope would pass once its content was read (OpenSSL and
        BouncyCastle refuse it).
        """
        while element.end is None or self.position < element.end:
            try:
                tag, field = self.read_element()
            except _Truncated:
                closing = "end-of-contents marker" if element.end is None else "last bytes"
                raise CryptoError(
                    f"the encrypted message is truncated: it ends before the {closing} of its {element.name}"
                ) from None
            if element.end is None and field == _EOC:
                return
            if tag != optional:
                raise CryptoError(f"the encrypted message has unexpected data at the end of its {element.name}")
        if self.position != element.end:
            raise CryptoError(f"the encrypted message overruns the declared length of its {element.name}")

    def read_element(self, limit: int = _MAX_SMALL_PART) -> tuple[tuple[int, bool, int], bytes]:
        """One whole element (header included), definite or indefinite, at most `limit` bytes."""
        tag, length, header = self.read_header()
        if length is not None:
            if length > limit:
                raise CryptoError(f"the encrypted message has a {length}-byte header part; refusing it")
            return tag, header + self.read_exact(length)
        parts = [header]
        size = len(header)
        while True:
            _, child = self.read_element(limit - size)
            parts.append(child)
            size += len(child)
            if child == _EOC:
                return tag, b"".join(parts)
            if size > limit:
                raise CryptoError("the encrypted message has an oversized header part; refusing it")


def _expect(tag: tuple[int, bool, int], wanted: tuple[int, bool, int], what: str) -> None:
    if tag != wanted:
        raise CryptoError(f"not a CMS EnvelopedData: expected {what}")


def _hash(algorithm: algos.DigestAlgorithm) -> hashes.HashAlgorithm:
    name = algorithm["algorithm"].native
    if name not in _HASHES:
        raise CryptoError(f"the key transport uses the unsupported hash {name}")
    return _HASHES[name]()


def _key_transport_padding(algorithm: asn1_cms.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    name = algorithm["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name != "rsaes_oaep":
        raise CryptoError(f"the key transport algorithm {name} is not supported (RSA OAEP or PKCS#1 v1.5 is)")
    params = algorithm["parameters"]
    mask = params["mask_gen_algorithm"]
    if mask["algorithm"].native != "mgf1":
        raise CryptoError(f"the OAEP mask generation {mask['algorithm'].native} is not supported")
    label = params["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(
        mgf=padding.MGF1(_hash(mask["parameters"])), algorithm=_hash(params["hash_algorithm"]), label=label
    )


def _describe_rid(rid: asn1_cms.RecipientIdentifier) -> str:
    if rid.name == "issuer_and_serial_number":
        return f"issuer '{rid.chosen['issuer'].human_friendly}', serial {rid.chosen['serial_number'].native:x}"
    return f"subject key id {rid.chosen.native.hex()}"


def _matches(rid: asn1_cms.RecipientIdentifier, certificate: asn1_x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        return rid.chosen["serial_number"].native == certificate.serial_number and der.same_name(
            rid.chosen["issuer"], certificate.issuer
        )
    return rid.chosen.native == certificate.key_identifier


def _content_key(
    infos: asn1_cms.RecipientInfos, private_key: RSAPrivateKey, certificate: x509.Certificate | None
) -> bytes:
    transports = [info.chosen for info in infos if info.name == "ktri"]
    if not transports:
        raise CryptoError("the encrypted message has no RSA key-transport recipient; it cannot be opened")
    if certificate is not None:
        ours = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
        candidates = [ktri for ktri in transports if _matches(ktri["rid"], ours)]
        if not candidates:
            named = "; ".join(_describe_rid(ktri["rid"]) for ktri in transports)
            raise SecurityError(
                f"this message was encrypted to another certificate ({named}), not to ours "
                f"(issuer '{ours.issuer.human_friendly}', serial {ours.serial_number:x})"
            )
    else:
        candidates = transports
    for ktri in candidates:
        # Read outside the try: a malformed part must be reported as such, not as a wrong key.
        encrypted_key = ktri["encrypted_key"].native
        key_padding = _key_transport_padding(ktri["key_encryption_algorithm"])
        if not isinstance(encrypted_key, bytes):
            raise CryptoError("the recipient information holds no encrypted key")
        try:
            return private_key.decrypt(encrypted_key, key_padding)
        except ValueError:
            continue
    raise CryptoError("the content key cannot be decrypted with our private key (wrong key or corrupted message)")


def _content_decryptor(algorithm: algos.EncryptionAlgorithm, content_key: bytes) -> CipherContext:
    name = algorithm["algorithm"].native
    if name not in ("aes128_cbc", "aes192_cbc", "aes256_cbc"):
        raise CryptoError(f"the content encryption {name} is not supported (AES-CBC is)")
    if len(content_key) != algorithm.key_length:
        raise CryptoError("the decrypted content key has the wrong length: wrong key or corrupted message")
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != _BLOCK:
        raise CryptoError("the content encryption has no valid 16-byte IV")
    return Cipher(algorithms.AES(content_key), modes.CBC(iv)).decryptor()


class _PlainSink:
    """Decrypts ciphertext pieces and writes the plaintext, holding back the padding block."""

    def __init__(self, decryptor: CipherContext, target: BinaryIO) -> None:
        self._decryptor = decryptor
        self._unpadder = symmetric_padding.PKCS7(128).unpadder()
        self._target = target

    def write(self, ciphertext: bytes) -> None:
        plain = self._unpadder.update(self._decryptor.update(ciphertext))
        if plain:
            self._target.write(plain)

    def finish(self) -> None:
        try:
            last = self._decryptor.finalize()
            plain = self._unpadder.update(last) + self._unpadder.finalize()
        except ValueError:
            raise CryptoError(
                "bad padding at the end of the decrypted content: wrong key, or the message is corrupted or truncated"
            ) from None
        self._target.write(plain)


def _stream_octets(reader: _BerReader, length: int | None, sink: _PlainSink, depth: int = 0) -> None:
    """Feed the contents of a (possibly nested, constructed) OCTET STRING to `sink`."""
    if depth > 8:
        raise CryptoError("the encrypted content nests too deep")
    end = None if length is None else reader.position + length
    while end is None or reader.position < end:
        tag, child_length, header = reader.read_header()
        if header == _EOC:
            if end is not None:
                raise CryptoError("the encrypted content has an end marker inside a definite length")
            return
        if tag[1]:
            _stream_octets(reader, child_length, sink, depth + 1)
            continue
        if tag != (0, False, 4):
            raise CryptoError("the encrypted content holds something other than OCTET STRING chunks")
        assert child_length is not None
        remaining = child_length
        while remaining:
            piece = reader.read_exact(min(remaining, _FILE_CHUNK))
            remaining -= len(piece)
            sink.write(piece)
    if reader.position != end:
        raise CryptoError("the encrypted content overruns its declared length")


def decrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    private_key: RSAPrivateKey,
    certificate: x509.Certificate | None = None,
) -> None:
    """Decrypt a CMS EnvelopedData from `source` into `target`.

    Plaintext is written before the padding and the closing of every structure are checked at the end
    (an envelope cut off after its content is refused): write to a temporary file and discard it when
    this raises.
    """
    reader = _BerReader(source)
    content_info = reader.enter(_SEQUENCE, "ContentInfo SEQUENCE")
    tag, oid = reader.read_element()
    content_type = core.ObjectIdentifier.load(oid).dotted
    if content_type != ENVELOPED_DATA_OID:
        raise CryptoError(f"not a CMS EnvelopedData: the content type is {content_type}")
    explicit_content = reader.enter((2, True, 0), "[0] content of the ContentInfo")
    enveloped_data = reader.enter(_SEQUENCE, "EnvelopedData SEQUENCE")
    reader.read_element()  # version
    tag, element = reader.read_element()
    if tag == (2, True, 0):  # originatorInfo: certificates we do not need
        tag, element = reader.read_element()
    try:
        # asn1crypto parses lazily: a malformed part fails wherever it is first read. (Not `.native` on
        # the whole set up front: that alone cost more than the RSA decryption.)
        content_key = _content_key(asn1_cms.RecipientInfos.load(element), private_key, certificate)
    except (ValueError, TypeError, KeyError) as exc:
        raise CryptoError(f"the recipient information of the encrypted message is malformed: {exc}") from None
    encrypted_content_info = reader.enter(_SEQUENCE, "EncryptedContentInfo SEQUENCE")
    reader.read_element()  # content type: the ASiC is id-data, but the bytes decide what it is
    _, element = reader.read_element()
    try:
        algorithm = algos.EncryptionAlgorithm.load(element)
        decryptor = _content_decryptor(algorithm, content_key)
    except (ValueError, TypeError, KeyError) as exc:
        raise CryptoError(f"the content encryption algorithm is malformed: {exc}") from None
    tag, length, _ = reader.read_header()
    if tag[0] != _CONTEXT_0[0] or tag[2] != _CONTEXT_0[1]:
        raise CryptoError("the encrypted message carries no encrypted content")
    sink = _PlainSink(decryptor, target)
    if tag[1]:
        _stream_octets(reader, length, sink)
    else:
        assert length is not None
        remaining = length
        while remaining:
            piece = reader.read_exact(min(remaining, _FILE_CHUNK))
            remaining -= len(piece)
            sink.write(piece)
    reader.close(encrypted_content_info)
    reader.close(enveloped_data, optional=_UNPROTECTED_ATTRIBUTES)
    reader.close(explicit_content)
    reader.close(content_info)
    sink.finish()


def decrypt_file(
    source: Path, target: Path, private_key: RSAPrivateKey, certificate: x509.Certificate | None = None
) -> None:
    with open(source, "rb") as envelope, open(target, "wb") as plain:
        decrypt_stream(envelope, plain, private_key, certificate)

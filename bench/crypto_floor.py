"""The floor under a gateway's CPU per message: the same work done with `cryptography` alone.

For one message of `size` bytes: sign a manifest of its SHA-256 (RSA-2048, PKCS#1 v1.5, SHA-256),
zip it with the document (stored), encrypt the zip (AES-256-CBC, its key wrapped with RSA-OAEP
SHA-256), and back: unwrap the key, decrypt, unzip, check the digest and verify the signature. No
ASN.1, no XML, no HTTP, no journal: what no integration point can do without.

    python bench/crypto_floor.py [--kib 50] [--rounds 200]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import time
import zipfile

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

OAEP = asymmetric.OAEP(mgf=asymmetric.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def one_message(document: bytes, sender: rsa.RSAPrivateKey, receiver: rsa.RSAPrivateKey) -> None:
    manifest = hashlib.sha256(document).hexdigest().encode()
    signature = sender.sign(manifest, asymmetric.PKCS1v15(), hashes.SHA256())
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("document.pdf", document)
        archive.writestr("manifest", manifest)
        archive.writestr("signature", signature)
    key, iv = os.urandom(32), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(packed.getvalue()) + padder.finalize()) + encryptor.finalize()
    wrapped = receiver.public_key().encrypt(key, OAEP)

    unwrapped = receiver.decrypt(wrapped, OAEP)
    decryptor = Cipher(algorithms.AES(unwrapped), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        received = archive.read("document.pdf")
        received_manifest = archive.read("manifest")
        sender.public_key().verify(archive.read("signature"), received_manifest, asymmetric.PKCS1v15(),
                                   hashes.SHA256())
    if hashlib.sha256(received).hexdigest().encode() != received_manifest:
        raise AssertionError("the document's digest does not match its manifest")


def floor_ms(size: int, rounds: int = 200) -> float:
    """CPU milliseconds per message for the whole round trip, the median of `rounds` (after a warm-up)."""
    sender = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    receiver = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = os.urandom(size)
    for _ in range(10):
        one_message(document, sender, receiver)
    times = []
    for _ in range(rounds):
        started = time.process_time()
        one_message(document, sender, receiver)
        times.append(time.process_time() - started)
    times.sort()
    return times[len(times) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kib", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(f"floor: {floor_ms(args.kib * 1024, args.rounds):.2f} ms of CPU per {args.kib} KiB message "
          "(sign, zip, encrypt; decrypt, unzip, verify)")


if __name__ == "__main__":
    main()

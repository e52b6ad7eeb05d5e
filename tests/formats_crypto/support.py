"""Helpers for the crypto format tests: the test organisations and running openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.devcerts import DevPki

SENDER = "910077473"
RECEIVER = "910075918"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def key_and_cert_paths(pki: DevPki, orgnr: str) -> tuple[Path, Path]:
    return pki.folder / f"{orgnr}-key.pem", pki.folder / f"{orgnr}-cert.pem"


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """Run openssl and fail the test with its stderr when it fails."""
    result = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(map(str, args))} failed: {result.stderr.decode()}"
    return result


def declare_sizes(archive: Path, name: str, *, compressed: int | None = None, uncompressed: int | None = None) -> None:
    """Rewrite what the zip's central directory declares for entry `name`; the data stays as it is."""
    raw = bytearray(archive.read_bytes())
    encoded = name.encode()
    position = raw.find(b"PK\x01\x02")
    while position >= 0:
        name_length = int.from_bytes(raw[position + 28 : position + 30], "little")
        if raw[position + 46 : position + 46 + name_length] == encoded:
            if compressed is not None:
                raw[position + 20 : position + 24] = compressed.to_bytes(4, "little")
            if uncompressed is not None:
                raw[position + 24 : position + 28] = uncompressed.to_bytes(4, "little")
            archive.write_bytes(bytes(raw))
            return
        position = raw.find(b"PK\x01\x02", position + 4)
    raise AssertionError(f"{name} is not in the central directory of {archive}")

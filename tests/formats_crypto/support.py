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

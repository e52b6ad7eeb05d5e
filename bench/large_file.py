"""Benchmark: pack, sign and encrypt a large file as ASiC-E + CMS, open it again, and compare with openssl.

Each step runs in its own child process, so its peak RSS is its own (os.wait4 reports it).
Usage: python bench/large_file.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

CHUNK = 1 << 20
STEPS = ("pack", "encrypt", "decrypt", "verify")


def generate(path: Path, size_mib: int) -> None:
    # Random bytes do not compress, like the scanned PDFs that make real messages large (stored, not deflated).
    with open(path, "wb") as target:
        for _ in range(size_mib):
            target.write(os.urandom(CHUNK))


def run_step(step: str, work: Path) -> None:
    """One step, inside a child process."""
    from gateway.devcerts import DevPki, dev_identity
    from gateway.formats.asice import AsicDocument, write_asice
    from gateway.formats.asice_reader import read_asice
    from gateway.formats.cms import decrypt_file, encrypt_file
    from gateway.formats.keys import TrustStore

    pki = DevPki(work / "pki", work / "pki" / "root-ca.pem", work / "pki" / "trust-bundle.pem")
    if step == "pack":
        sender = dev_identity(pki, "910077473")
        with open(work / "asic.asice", "wb") as target:
            write_asice(
                target,
                [AsicDocument("large.pdf", work / "large.bin", "application/pdf")],
                "910077473",
                "910075918",
                sender,
            )
    elif step == "encrypt":
        encrypt_file(work / "asic.asice", work / "asic.zip", dev_identity(pki, "910075918").certificate)
    elif step == "decrypt":
        receiver = dev_identity(pki, "910075918")
        decrypt_file(work / "asic.zip", work / "decrypted.asice", receiver.private_key, receiver.certificate)
    elif step == "verify":
        trust = TrustStore.from_pem_files([pki.trust_bundle])
        read_asice(work / "decrypted.asice", work / "inbox", trust, at=datetime.now(UTC))


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.work)
        return

    from gateway.devcerts import create_dev_pki

    with tempfile.TemporaryDirectory(prefix="efm-bench-") as folder:
        work = Path(folder)
        pki = create_dev_pki(work / "pki", {"910077473": "Avsender Test AS", "910075918": "Mottaker Test AS"})
        generate(work / "large.bin", args.size_mib)
        size_mb = (work / "large.bin").stat().st_size / 1e6
        print(f"file: {args.size_mib} MiB of random bytes in {work}")
        print(f"{'step':<18}{'seconds':>9}{'MB/s':>9}{'peak RSS MiB':>14}")
        results = {}
        for step in STEPS:
            seconds, rss = timed([sys.executable, __file__, "--step", step, "--work", str(work)])
            results[step] = seconds
            print(f"{step:<18}{seconds:>9.2f}{size_mb / seconds:>9.1f}{rss:>14.1f}", flush=True)
            if step == "verify":
                assert (work / "inbox" / "large.pdf").stat().st_size == (work / "large.bin").stat().st_size
        seconds, rss = timed(
            [
                "openssl",
                "cms",
                "-encrypt",
                "-stream",
                "-binary",
                "-outform",
                "DER",
                "-aes256",
                "-in",
                str(work / "asic.asice"),
                "-out",
                str(work / "openssl.der"),
                "-recip",
                str(pki.folder / "910075918-cert.pem"),
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ]
        )
        print(f"{'openssl encrypt':<18}{seconds:>9.2f}{size_mb / seconds:>9.1f}{rss:>14.1f}")
        print(f"encrypt time ratio, ours / openssl: {results['encrypt'] / seconds:.2f}")


if __name__ == "__main__":
    main()

"""DPI mass sending, as a tax authority sends letters in one evening: N digital letters of 100 KiB to the
sandbox's citizens with a digital mailbox, through a real gateway process and a real sandbox process.

Reports letters per second to SENDT and to LEVERT, the gateway's CPU per letter beside the crypto floor measured
in the same run (build, sign and encrypt one dokumentpakke and sign its JWT, in this process), the gateway's peak
RSS, and how many requests the status polling made per letter (Corner 2's own count of status look-ups, plus the
receipts taken).

    python bench/dpi_mass.py [--count 10000] [--kib 100] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

INFO = "urn:no:difi:profile:digitalpost:info:ver1.0"
GATEWAY = "991825827"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def crypto_floor_ms(network: dict, kib: int, rounds: int = 20) -> float:
    """CPU ms for one letter's unavoidable work: the signed, encrypted dokumentpakke and the signed JWT."""
    from dataclasses import replace

    from cryptography import x509

    from gateway.channels.dpi import (
        Avsender,
        Digital,
        DpiDocument,
        ManifestParties,
        build_dokumentpakke,
        build_sbd,
        sign_jwt,
    )
    from gateway.formats.keys import load_pkcs12

    snippet = network["gateways"][GATEWAY]
    identity = load_pkcs12(Path(snippet["keystore"]["pkcs12"]), snippet["keystore"]["password"])
    certs = Path(snippet["keystore"]["pkcs12"]).parent
    mailbox = x509.load_pem_x509_certificate((certs / "944444505-cert.pem").read_bytes())
    document = b"%PDF-1.4\n" + os.urandom(kib * 1024)
    times = []
    with tempfile.TemporaryDirectory() as work:
        for index in range(rounds + 3):
            started = time.process_time()
            pakke = build_dokumentpakke([DpiDocument("brev.pdf", document, "application/pdf")],
                                        ManifestParties(GATEWAY, postkasseadresse="kari#1", personidentifikator=None),
                                        identity, mailbox, Path(work) / f"{index}.cms")
            letter = Digital(Avsender(GATEWAY), "kari#1", "Brev")
            sbd = build_sbd(replace(letter, fingerprint=pakke.fingerprint, maskinportentoken="x.y.z"),
                            sender=GATEWAY, receiver="944444505")
            sign_jwt(sbd, identity)
            if index >= 3:
                times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def counts(status: Path) -> tuple[int, int]:
    sent = delivered = 0
    for path in status.glob("*.xml"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        sent += "<value>SENDT</value>" in text
        delivered += "<value>LEVERT</value>" in text
    return sent, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dpi-mass-"))
    port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        with open(root / "sandbox.log", "wb") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "gateway.cli", "sandbox", "--data",
                                               str(root / "sandbox"), "--port", str(port)], stdout=log,
                                              stderr=subprocess.STDOUT))
        network_file = root / "sandbox" / "network.yaml"
        wait_for(network_file.exists, 120, "the sandbox")
        network = yaml.safe_load(network_file.read_text())
        persons = [fnr for fnr, person in network["persons"].items() if person["mailbox"]]
        snippet = network["gateways"][GATEWAY]
        config = {
            "organisation": snippet["organisation"],
            "folders": {"create_missing": True, **{name: str(root / "var" / name) for name in
                                                   ("outbox", "status", "inbox", "failed", "sent", "state")}},
            "intake": {"mode": "events", "scan_interval_seconds": 2, "quiet_period_seconds": 0.2},
            "network": {**snippet["network"], "send_interval_seconds": 0.3},
            # Polled more often than the default 30 s, so the figures show the gateway, not the interval.
            "channels": {"dpi": {"corner2_url": network["corner2_url"], "status_poll_seconds": 2}},
            "keystore": snippet["keystore"],
            "trust": snippet["trust"],
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        floor = crypto_floor_ms(network, args.kib)

        outbox, staging, status = root / "var" / "outbox", root / "staging", root / "var" / "status"
        staging.mkdir()
        body = b"%PDF-1.4\n" + os.urandom(args.kib * 1024 - 9)
        for index in range(args.count):
            folder = staging / f"brev-{index:05d}"
            folder.mkdir()
            (folder / "brev.pdf").write_bytes(body)
            (folder / "message.xml").write_text(
                '<?xml version="1.0" encoding="UTF-8"?><message xmlns="urn:efm-gateway:message:1">'
                f"<receiver>{persons[index % len(persons)]}</receiver><type>digital</type><process>{INFO}</process>"
                f"<messageId>{uuid.uuid4()}</messageId><title>Skatteoppgjer {index}</title>"
                '<documents><document main="true"><file>brev.pdf</file><mimeType>application/pdf</mimeType>'
                "</document></documents></message>")
        with open(root / "daemon.log", "wb") as log:
            gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config",
                                        str(root / "config.yaml")], stdout=log, stderr=subprocess.STDOUT)
        processes.append(gateway)
        wait_for(lambda: (root / "var" / "state" / "efm-gateway.lock").exists(), 60, "the gateway")
        cpu_before = cpu_seconds(gateway.pid)
        started = time.monotonic()
        for folder in sorted(staging.iterdir()):
            folder.rename(outbox / folder.name)
        sent_at = delivered_at = None
        while time.monotonic() - started < args.timeout:
            time.sleep(2)
            sent, delivered = counts(status)
            print(f"  {time.monotonic() - started:7.1f} s: {sent} SENDT, {delivered} LEVERT", flush=True)
            if sent >= args.count and sent_at is None:
                sent_at = time.monotonic() - started
            if delivered >= args.count:
                delivered_at = time.monotonic() - started
                break
        if delivered_at is None:
            raise SystemExit(f"not every letter was LEVERT within {args.timeout:.0f} s")
        cpu = cpu_seconds(gateway.pid) - cpu_before
        rss = peak_rss_mib(gateway.pid)
        print(f"\nDPI mass send: {args.count} digital letters of {args.kib} KiB to {len(persons)} sandbox citizens")
        print(f"  to SENDT:   {args.count / sent_at:8.1f} letters/s ({sent_at:.1f} s)")
        print(f"  to LEVERT:  {args.count / delivered_at:8.1f} letters/s ({delivered_at:.1f} s)")
        print(f"  gateway CPU per letter: {cpu / args.count * 1000:.1f} ms (crypto floor, this machine, this run: "
              f"{floor:.1f} ms)")
        print(f"  gateway peak RSS: {rss:.0f} MiB", flush=True)
        # Corner 2's own record of every letter: megabytes of JSON for 10,000 letters, listed by a sandbox that is
        # still busy with the gateway's last polls; a generous bound, and the figures above are out already.
        try:
            messages = httpx.get(f"http://127.0.0.1:{port}/dpi/_sandbox/messages", timeout=600).json()
        except httpx.HTTPError as exc:
            why = type(exc).__name__
            raise SystemExit(f"  status polling: the sandbox's inspection did not answer ({why})") from None
        ours = [m for m in messages if m["sender"].endswith(GATEWAY)]
        status_requests = sum(m["statusRequests"] for m in ours)
        receipts_taken = sum(r["read"] for m in ours for r in m["receipts"])
        print(f"  status polling: {status_requests / args.count:.2f} GET statuses per letter, "
              f"{receipts_taken / args.count:.2f} receipts taken (one POST read each) per letter, and one receipt "
              f"list per round (about {delivered_at / 2:.0f} rounds)")
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder: {root}")


if __name__ == "__main__":
    main()

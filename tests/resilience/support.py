"""Helpers for the resilience tests: a sandbox whose faults a test sets, and gateways that send through it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.dpo.network import B, Gateway, SandboxProcess
from tests.foundation.drops import make_folder_drop, pdf_bytes, sidecar_xml
from tests.tools import machine_skip, require_tool

MIB = 1 << 20


def mount_tmpfs(folder: Path, size_mib: int) -> None:
    """A tmpfs of `size_mib` MiB of its own at `folder` (root only); unmount it with unmount()."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        machine_skip("mounting a small tmpfs to fill needs root")
    done = subprocess.run([require_tool("mount", package="mount"), "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                           str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        machine_skip(f"this machine does not let the test mount a tmpfs: {done.stderr.strip()}")


def ballast_file(folder: Path, leave_free: int) -> Path:
    """A file that fills `folder`'s file system until `leave_free` bytes are left; delete it to free the space."""
    ballast = folder / "ballast"
    with open(ballast, "wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * MIB
        while shutil.disk_usage(folder).free > leave_free + MIB:
            handle.write(chunk)
        handle.write(b"\0" * max(shutil.disk_usage(folder).free - leave_free, 0))
    return ballast


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], check=False)


BROKER_POSTS = "/broker/api/v1/filetransfer*"  # initialise, initialise-and-upload, upload
DOWNLOADS = "/broker/api/v1/filetransfer/*/download"


def set_faults(sandbox: SandboxProcess, *rules: dict) -> None:
    httpx.post(f"{sandbox.url}/_faults", json={"seed": 7, "rules": list(rules)}, timeout=10).raise_for_status()


def clear_faults(sandbox: SandboxProcess) -> None:
    httpx.delete(f"{sandbox.url}/_faults", timeout=10).raise_for_status()


def fired(sandbox: SandboxProcess) -> list[int]:
    """How often each rule in force fired, in rule order."""
    rules = httpx.get(f"{sandbox.url}/_faults", timeout=10).json()["rules"]
    return [rule["injected"] for rule in rules]


def counting(method: str, path: str) -> dict:
    """A rule that breaks nothing (no delay) but counts the requests it matches."""
    return {"fault": "latency", "method": method, "path": path, "delay_ms": 0}


def drop_messages(gateway: Gateway, count: int, receiver: str = B, size: int = 0) -> list[str]:
    """`count` folder drops to `receiver`; their messageIds."""
    ids = []
    for index in range(count):
        message_id = str(uuid.uuid4())
        document = pdf_bytes(f"brev {index}") + (b"%" * size)
        sidecar = sidecar_xml(receiver=receiver, extra=f"<messageId>{message_id}</messageId>",
                              documents=[{"file": "brev.pdf", "main": True, "mime": "application/pdf"}])
        make_folder_drop(gateway.outbox, f"brev-{index}", files={"brev.pdf": document}, sidecar=sidecar,
                         staging=gateway.root / "staging")
        ids.append(message_id)
    return ids


def times_of_counts(sandbox: SandboxProcess, rule: int, counts: set[int], timeout: float) -> dict[int, float]:
    """The monotonic time at which rule `rule` had first fired each of `counts` times (polled every 20 ms)."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < len(counts):
        now_fired = fired(sandbox)[rule]
        for count in counts:
            if count <= now_fired and count not in seen:
                seen[count] = time.monotonic()
        time.sleep(0.02)
    return seen


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]

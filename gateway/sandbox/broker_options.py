"""How the sandbox broker behaves: by default as the real Altinn broker on Digdir's DPO resource.

The real broker admits only system-user tokens on that resource (401 otherwise) and virus-scans every
upload (UploadProcessing, then Published or Failed). `BrokerOptions()` is that mode, with a short
scan so tests stay fast; `BrokerOptions.lenient()` is the older sandbox (plain tokens, published at
once). A scan can be set to find malware in the uploads of chosen sendersFileTransferReferences
(a messageId), to see a failed scan end to end; `GET/POST/DELETE /broker/_sandbox/scan` does the same
on a running sandbox.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.broker_store import Scan

DEFAULT_SCAN_DELAY_S = 0.2
SANDBOX_FINDING = '{"scanResultType": "Malicious", "malwareNamesFound": ["Sandbox.Test.Malware"]}'


@dataclass
class BrokerOptions:
    system_users_only: bool = True  # tokens must name an Altinn system user, as on Digdir's DPO resource
    scan_delay_s: float | None = DEFAULT_SCAN_DELAY_S  # None: no virus scan, published at once
    failing_references: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def lenient(cls) -> BrokerOptions:
        """The older sandbox: plain organisation tokens, no scan."""
        return cls(system_users_only=False, scan_delay_s=None)

    def scan_for(self, senders_reference: str | None) -> Scan | None:
        """The scan an upload with `senders_reference` gets (None: none, published at once)."""
        with self._lock:
            if self.scan_delay_s is None:
                return None
            finding = SANDBOX_FINDING if senders_reference in self.failing_references else None
            return Scan(self.scan_delay_s, finding)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"systemUsersOnly": self.system_users_only, "delaySeconds": self.scan_delay_s,
                    "failReferences": sorted(self.failing_references)}

    def change(self, body: Any) -> str | None:
        """Apply a POST /_sandbox/scan body; the problem with it, or None."""
        if not isinstance(body, dict) or set(body) - {"delaySeconds", "failReferences"}:
            return "the body must be an object with delaySeconds (a number or null) and/or failReferences (a list)"
        delay = body.get("delaySeconds", self.scan_delay_s)
        references = body.get("failReferences", [])
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            return "delaySeconds must be a number of seconds (0 or more), or null for no scan"
        if not isinstance(references, list) or not all(isinstance(item, str) for item in references):
            return "failReferences must be a list of sendersFileTransferReference strings"
        with self._lock:
            self.scan_delay_s = None if delay is None else float(delay)
            self.failing_references.update(references)
        return None

    def clear_failures(self) -> None:
        with self._lock:
            self.failing_references.clear()

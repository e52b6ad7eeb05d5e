"""Expected errors are one line each, without a traceback, and the same error again is held back (the
summary comes once a minute); every message still arrives. Real gateways, faults from the sandbox."""

from __future__ import annotations

import os
import re

from tests.dpo.network import A, B, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current
from tests.logcheck import log_records

from .support import DOWNLOADS, clear_faults, counting, drop_messages, fired, set_faults


def test_download_errors_at_the_receiver_are_one_warning_line_without_traceback(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    gateways = []
    try:
        a = Gateway(tmp_path / "a", gateway_config(tmp_path / "a", sandbox, A)).start()
        gateways.append(a)
        ids = drop_messages(a, 6)
        wait(lambda: all(current(a.status, m) == "SENDT" for m in ids), message="six sent")
        set_faults(sandbox, counting("GET", DOWNLOADS), {"fault": "reset", "method": "GET", "path": DOWNLOADS})
        b = Gateway(tmp_path / "b", gateway_config(tmp_path / "b", sandbox, B)).start()
        gateways.append(b)
        wait(lambda: fired(sandbox)[0] >= 12, message="B tried each download at least twice")
        clear_faults(sandbox)
        wait(lambda: sorted(os.listdir(b.inbox)) == sorted(ids), message="all six in B's inbox")
        records = log_records(b.log())
        failing = [text for level, text in records if "incoming transfer" in text and "network error" in text]
        assert len(failing) == 1, "one line for the first; the same error for the others is held back:\n" + "\n".join(
            failing
        )
        [(level, text)] = [(level, text) for level, text in records if text in failing]
        assert level == "WARNING"
        assert "\n" not in text and "Traceback" not in b.log()
        assert re.search(r"incoming transfer [0-9a-f-]{36} on DPO: downloading broker file transfer .*network "
                         r"error.*; it will be offered again at the next poll", text), text
    finally:
        for gateway in gateways:
            gateway.process.stop()  # fails the test on any traceback or ERROR line in its log
        sandbox.stop()

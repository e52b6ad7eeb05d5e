"""The operator's tools against a running daemon: the operator page in a real browser (headless
Chromium), `status` with its filters, `retry` and `cancel`.

One run on a sandbox process: a message that finishes (LEST), two that wait out a back-off because
the broker refuses to create transfers (503), a drop that is rejected, and one that fails for good
(the broker answers 400 once). Then the operator cancels one waiting message, retries the other
and retries the failed one, and each ends as the command said.
"""

from __future__ import annotations

import httpx
import pytest

from tests.dpo.network import A, Gateway, SandboxProcess, gateway_config, wait
from tests.dpo.statusfiles import current, history, status_of

from .support import browser, cli, drop, page_server, record_of, table_rows, wait_phase

INITIALISE = "/broker/api/v1/filetransfer"
INVALID_RECEIVER = "910075919"  # wrong check digit: rejected at once


@pytest.fixture
def run(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox")
    config = gateway_config(tmp_path / "a", sandbox, A)
    gateway = Gateway(tmp_path / "a", config).start()
    try:
        yield sandbox, gateway, config
    finally:
        gateway.process.stop()
        sandbox.stop()


def _faults(sandbox: SandboxProcess, *rules: dict) -> None:
    response = httpx.post(f"{sandbox.url}/_faults", json={"rules": list(rules)}, timeout=10)
    assert response.status_code == 200, response.text


def test_the_operator_sees_a_run_in_the_browser_and_retries_and_cancels_messages(run, tmp_path):
    sandbox, gateway, config = run
    journal = gateway.var / "state" / "journal.sqlite"

    drop(gateway.outbox, "ferdig")
    finished = wait_phase(journal, "ferdig", "done")
    _faults(sandbox, {"fault": "error", "method": "POST", "path": INITIALISE, "status": 400, "times": 1})
    drop(gateway.outbox, "feilet")
    failed = wait_phase(journal, "feilet", "failed")
    # The broker unavailable from here on: the channel's circuit holds these two, waiting.
    _faults(sandbox, {"fault": "error", "method": "POST", "path": INITIALISE, "status": 503})
    drop(gateway.outbox, "venter")
    drop(gateway.outbox, "avbryt")
    waiting = wait_phase(journal, "venter", "accepted", backoff=True)
    to_cancel = wait_phase(journal, "avbryt", "accepted", backoff=True)
    drop(gateway.outbox, "ugyldig", receiver=INVALID_RECEIVER)
    rejected = wait_phase(journal, "ugyldig", "rejected")
    assert (gateway.var / "failed" / "feilet").is_dir()

    with page_server(journal, refresh_seconds=1) as url, browser() as chromium:
        page = chromium.new_page()
        page.goto(url + "/")
        # The overview as the browser renders it: the open messages, the failed ones.
        open_rows = table_rows(page, "table[data-section=open]")
        failed_rows = table_rows(page, "table[data-section=failed]")
        assert set(open_rows) == {waiting.message_id, to_cancel.message_id}
        assert open_rows[waiting.message_id][2:4] == ["OPPRETTET", "backoff"]
        assert "venter" in open_rows[waiting.message_id]
        assert "HTTP 503" in open_rows[waiting.message_id][-1]  # the last error, as the note
        assert set(failed_rows) == {failed.message_id, rejected.message_id}
        assert failed_rows[failed.message_id][2:4] == ["FEIL", "failed"]
        assert failed_rows[rejected.message_id][2:4] == ["FEIL", "rejected"]
        assert "check digit" in failed_rows[rejected.message_id][-1]
        assert finished.message_id not in open_rows and finished.message_id not in failed_rows
        counts = page.inner_text("#counts")
        assert "done" in counts and "rejected" in counts

        # The operator cancels one waiting message; the open page shows it by itself (it refreshes).
        cancelled = cli(config, "cancel", "avbryt")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "phase accepted → failed, status FEIL (cancelled by the operator)" in cancelled.stdout
        page.wait_for_selector(f"table[data-section=failed] tr[data-message-id='{to_cancel.message_id}']",
                               timeout=15000)
        assert to_cancel.message_id not in table_rows(page, "table[data-section=open]")

        # ... and retries the other one at once: it is sent well before its back-off (20 s) ends.
        retried = cli(config, "retry", waiting.message_id[:8])
        assert retried.returncode == 0, retried.stderr
        assert f"message {waiting.message_id}: due now instead of" in retried.stdout
        _faults(sandbox)  # the broker is back
        wait_phase(journal, "venter", "sent", "delivered", "done", timeout=15)

        # The filters: by phase, drop name, receiver (the form's fields, as the browser submits them).
        page.goto(url + "/")
        page.select_option("select[name=state]", "all")
        page.select_option("select[name=phase]", "failed")
        page.click("button[type=submit]")
        assert set(table_rows(page, "table[data-section=all]")) == {failed.message_id, to_cancel.message_id}
        page.goto(url + "/?state=all&drop=vent")
        assert set(table_rows(page, "table[data-section=all]")) == {waiting.message_id}
        page.goto(url + f"/?state=all&receiver={INVALID_RECEIVER}")
        assert set(table_rows(page, "table[data-section=all]")) == {rejected.message_id}

        # Finished messages, by the filter; and one message's page: its whole history, route and reason (once its
        # LEVERT is in too: it may come after the kvittering that finished it).
        wait(lambda: history(gateway.status, finished.message_id)[-2:] in (["LEVERT", "LEST"], ["LEST", "LEVERT"]),
             15, message="LEVERT and LEST of the finished message")
        page.goto(url + "/?state=finished")
        assert finished.message_id in table_rows(page, "table[data-section=finished]")
        page.click(f"a[href='/messages/{finished.message_id}']")
        assert page.inner_text("#route-reason").startswith("receiver has a DPO record for process")
        statuses = page.eval_on_selector_all("#history tr[data-status]", "rows => rows.map(r => r.dataset.status)")
        assert statuses == ["OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"]
        page.goto(f"{url}/messages/{rejected.message_id}")
        assert "check digit" in page.inner_text("#errors")
        page.goto(f"{url}/messages/{to_cancel.message_id}")
        assert "cancelled by the operator" in page.inner_text("#history")
        assert "cancel" in page.inner_text("#operator")
        assert page.goto(f"{url}/messages/00000000-0000-4000-8000-000000000000").status == 404

    # The cancelled message: FEIL in its status file, its drop in failed/ with the reason.
    wait(lambda: current(gateway.status, to_cancel.message_id) == "FEIL", 15, message="FEIL status file")
    reason = (gateway.var / "failed" / "avbryt.error.txt").read_text()
    assert "cancelled by the operator" in reason and to_cancel.message_id in reason
    assert (gateway.var / "failed" / "avbryt" / "message.xml").exists()

    # The failed one goes back from failed/ and is sent afresh; its FEIL stays in the history as ANNET.
    again = cli(config, "retry", "feilet")
    assert again.returncode == 0, again.stderr
    assert "phase failed → accepted" in again.stdout
    assert not (gateway.var / "failed" / "feilet").exists()
    wait_phase(journal, "feilet", "done", timeout=60)
    # The receiver's LEVERT and its kvittering (LEST) travel apart and may come in either order: the history
    # holds both, in the order they happened, once both are in.
    expected = ["OPPRETTET", "ANNET", "SENDT", "MOTTATT", "LEVERT", "LEST"]
    wait(lambda: history(gateway.status, failed.message_id) == expected, 15,
         message=f"the history {expected} in the status file")
    root = status_of(gateway.status, failed.message_id)
    annet = root.xpath("//*[local-name()='status'][*[local-name()='value']='ANNET']/*[local-name()='description']")
    assert "FEIL:" in annet[0].text and "HTTP 400" in annet[0].text and "sent it again" in annet[0].text
    assert not (gateway.var / "failed" / "feilet.error.txt").exists()

    # What may not be done is refused with the reason, and nothing changes.
    for command, key, words in (
        ("cancel", "ferdig", "cannot be cancelled: it is finished"),
        ("retry", "ferdig", "cannot be retried: it is finished"),
        ("retry", "ugyldig", "the drop was never accepted"),
        ("release", "ferdig", "is an outgoing message; only retry or cancel applies"),
    ):
        refused = cli(config, command, key)
        assert refused.returncode == 4 and words in refused.stderr, (command, refused.stderr)
    assert record_of(journal, "ferdig").phase == "done"

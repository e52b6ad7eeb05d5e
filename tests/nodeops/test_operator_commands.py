"""The operator's commands read and write the journal the configuration names, on either engine: `status` (a
listing, one message's story, the JSON form), `cancel` and `retry`, and their refusals; with no journal yet,
`status` says so (exit 3) on both."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.clock import FakeClock
from gateway.journal.phases import Phase
from tests.nodeops.support import config_on
from tests.ops_cli.support import NOW, cli, journal_message


@pytest.fixture
def filled(journal_place, tmp_path):
    config = config_on(journal_place, tmp_path)
    journal = journal_place.open(FakeClock(NOW))
    ids = {
        "brev-til-nav": journal_message(journal, "brev-til-nav", Phase.SENT, channel="DPO", receiver="889640782",
                                        hours_ago=1),
        "venter": journal_message(journal, "venter", Phase.ACCEPTED, channel="DPO", receiver="974760673",
                                  hours_ago=0.5),
        "feilet": journal_message(journal, "feilet", Phase.FAILED, channel="DPV", receiver="921000014",
                                  hours_ago=3, errors=("the correspondence failed",)),
    }
    # "venter" waits out a back-off: due in an hour
    journal.close()
    due = (NOW + timedelta(hours=1)).timestamp()
    journal_place.run(f"UPDATE messages SET next_attempt_at = {due}, attempts = 1 WHERE drop_name = 'venter'")  # noqa: S608
    return config, ids


def test_status_lists_and_tells_one_message(journal_place, filled):
    config, ids = filled
    listing = cli(config, "status", "--json")
    assert listing.returncode == 0, listing.stderr
    document = json.loads(listing.stdout)
    assert sorted(message["drop"] for message in document["messages"]) == ["brev-til-nav", "feilet", "venter"]
    failed = cli(config, "status", "--failed")
    assert failed.returncode == 0 and "feilet" in failed.stdout and "brev-til-nav" not in failed.stdout
    story = cli(config, "status", ids["brev-til-nav"])
    assert story.returncode == 0, story.stderr
    assert ids["brev-til-nav"] in story.stdout and "SENDT" in story.stdout


def test_cancel_and_retry_change_the_configured_journal(journal_place, filled):
    config, ids = filled
    retried = cli(config, "retry", ids["venter"])
    assert retried.returncode == 0, retried.stderr
    assert "due now instead of" in retried.stdout
    [(due,)] = journal_place.rows("SELECT next_attempt_at FROM messages WHERE drop_name = ?", ("venter",))
    assert due < (NOW + timedelta(minutes=5)).timestamp()

    cancelled = cli(config, "cancel", ids["venter"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert journal_place.rows("SELECT phase FROM messages WHERE drop_name = ?", ("venter",)) == [("failed",)]
    assert "cancelled by the operator" in cli(config, "status", ids["venter"]).stdout

    refused = cli(config, "cancel", ids["brev-til-nav"])  # sent already: refused, nothing changed
    assert refused.returncode == 4, refused.stderr
    assert journal_place.rows("SELECT phase FROM messages WHERE drop_name = ?", ("brev-til-nav",)) == [("sent",)]
    unknown = cli(config, "cancel", "ffffffff-0000-4000-8000-000000000000")
    assert unknown.returncode == 3, unknown.stderr


def test_status_without_a_journal_says_so(journal_place, tmp_path):
    config = config_on(journal_place, tmp_path)
    shown = cli(config, "status")
    assert shown.returncode == 3
    assert "no journal yet" in shown.stderr and "Traceback" not in shown.stderr
    if journal_place.postgres:
        assert journal_place.database.url not in shown.stderr  # the URL names the host and the user: not shown

"""The operator's commands read and write the journal the configuration names, on either engine: `status` (a
listing, one message's story, the JSON form), `cancel` and `retry`, and their refusals; with no journal yet,
`status` says so (exit 3) on both."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.journal.phases import Phase
from tests.foundation.drops import write_config
from tests.nodeops.support import config_on
from tests.ops_cli.support import NOW, SAMPLES, cli, journal_message


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
    # Due now, not in the hour its back-off said (NOW is when the tests began: minutes ago in a long run).
    assert due < (datetime.now(UTC) + timedelta(minutes=1)).timestamp()

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


@pytest.mark.postgres
def test_a_message_due_now_is_not_cancelled_while_a_node_elsewhere_runs(postgres_database, tmp_path):
    """On a shared journal the daemon that may be sending is any live node, on this host or another: the instance
    lock on this host is not enough to tell."""
    from gateway.drops.claims import new_claim_id
    from gateway.journal.nodes import NodeRegistry
    from tests.journal_places import JournalPlace

    place = JournalPlace("postgresql", tmp_path / "unused.sqlite", postgres_database)
    network = ("network:\n  service_registry_url: http://127.0.0.1:9/sr\n  token_url: http://127.0.0.1:9/token\n"
               "  altinn_exchange_url: http://127.0.0.1:9/authentication/api/v1/exchange/maskinporten\n"
               "channels:\n  dpo:\n    broker_url: http://127.0.0.1:9/broker\n")
    config = config_on(place, tmp_path, network)
    work = tmp_path / "var" / "state" / "work"
    work.mkdir(parents=True)
    (tmp_path / "var" / "failed").mkdir(parents=True)
    claim_id = new_claim_id("folder", "nettopp-tatt")
    (work / claim_id).mkdir()
    (work / claim_id / "message.xml").write_text("<message/>")
    journal = place.open(FakeClock(datetime.now(UTC)))
    record = journal.create(direction="out", message_id=str(uuid.uuid4()), status_name="nettopp-tatt.xml",
                            phase=Phase.ACCEPTED, claim_id=claim_id, drop_name="nettopp-tatt", receiver="910075918")
    journal.clock._now = datetime.now(UTC) + timedelta(seconds=20)  # beats a little ahead: live however slow
    other = NodeRegistry(journal, "gw-b", journal.clock)
    other.join()
    other.host = "gw-b.kommune.no"  # as if on another host: this host's instance lock is free
    journal.execute("UPDATE nodes SET host = ? WHERE name = 'gw-b'", (other.host,))

    refused = cli(config, "cancel", "nettopp-tatt")
    assert refused.returncode == 4, refused.stderr
    assert "is due now, so the running daemon (node gw-b on gw-b.kommune.no) may be sending it" in refused.stderr
    assert place.rows("SELECT phase FROM messages WHERE id = ?", (record.row,)) == [("accepted",)]

    other.leave()  # the node stopped: nothing is sending it
    journal.close()
    cancelled = cli(config, "cancel", "nettopp-tatt")
    assert cancelled.returncode == 0, cancelled.stderr
    assert place.rows("SELECT phase FROM messages WHERE id = ?", (record.row,)) == [("failed",)]


def test_validate_looks_up_the_messageid_in_the_configured_journal(journal_place, tmp_path):
    from tests.foundation.drops import make_folder_drop, sidecar_xml

    config = config_on(journal_place, tmp_path)
    message_id = str(uuid.uuid4())
    staging = tmp_path / "staging"
    staging.mkdir()
    make_folder_drop(staging, "ny", sidecar=sidecar_xml(extra=f"<messageId>{message_id}</messageId>"),
                     staging=tmp_path / "staging2")
    fresh = cli(config, "validate", str(staging / "ny"))  # no journal yet: nothing to compare with
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fresh.stdout.startswith(f"ACCEPTED: 'ny' would become message {message_id}")

    journal = journal_place.open(FakeClock(NOW))
    journal.create(direction="out", message_id=message_id, status_name="tidligere.xml", phase=Phase.ACCEPTED,
                   drop_name="tidligere", receiver="910075918")
    journal.close()
    taken = cli(config, "validate", str(staging / "ny"))
    assert taken.returncode == 1, taken.stdout + taken.stderr
    assert f"the messageId {message_id} was already used by the drop 'tidligere'" in taken.stdout


@pytest.mark.postgres
def test_a_database_that_does_not_answer_is_one_line(postgres_database, tmp_path):
    import tempfile
    from urllib.parse import quote

    from tests.postgres import ADMIN

    nowhere = Path(tempfile.mkdtemp(prefix="efm-no-postgres-"))
    config = write_config(tmp_path)
    password_file = tmp_path / "password"
    password_file.write_text(postgres_database.password + "\n")
    password_file.chmod(0o600)
    url = f"postgresql://{ADMIN}@/{postgres_database.name}?host={quote(str(nowhere), safe='')}"
    config.write_text(config.read_text() + f'journal:\n  url: "{url}"\n  password_file: {password_file}\n')
    for command in (("status",), ("status", "--nodes"), ("cancel", "ffffffff-0000"),
                    ("validate", str(SAMPLES / "brev-til-sandkasse-peer"))):
        result = cli(config, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [
            "efm-gateway: cannot open the journal's PostgreSQL database: PostgreSQL: connection is bad: connection "
            f'to server on socket "{nowhere}/.s.PGSQL.5432" failed: No such file or directory'
        ], command
    nowhere.rmdir()

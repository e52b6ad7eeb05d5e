"""`--json` of `status`, `validate` and `check-config`: one JSON document on stdout that holds what the text
shows, errors still on stderr."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.foundation.drops import write_config
from tests.suite_journal import on_postgres

from .support import SAMPLES, cli, filled_journal

STATUS_KEYS = {
    "message_id", "direction", "status", "phase", "in_backoff", "channel", "route_reason", "sender", "receiver",
    "drop", "message_type", "process", "conversation_id", "client_reference", "deadline", "created", "updated",
    "finished", "attempts", "next_attempt", "last_error", "errors",
}


def _document(result) -> dict:
    return json.loads(result.stdout)  # the whole of stdout is one document


@pytest.fixture
def journal_config(tmp_path: Path):
    return filled_journal(tmp_path)


def test_status_json_lists_what_the_table_shows(journal_config):
    config, ids = journal_config
    text = cli(config, "status")
    result = cli(config, "status", "--json")
    assert result.returncode == 0 and result.stderr == ""
    document = _document(result)
    assert set(document) == {"messages", "totals"}
    assert all(set(item) == STATUS_KEYS for item in document["messages"])
    rows = {line.split()[0]: line.split() for line in text.stdout.splitlines()[1:-1]}
    assert {item["message_id"] for item in document["messages"]} == set(rows) == set(ids.values())
    for item in document["messages"]:
        row = rows[item["message_id"]]  # MESSAGE DIR STATUS PHASE CHANNEL RECEIVER UPDATED(2) DROP
        assert [item["direction"], item["status"], item["phase"], item["channel"] or "-", item["receiver"]] == row[1:6]
        assert item["drop"] == row[-1]
        assert item["updated"].endswith("Z")
    totals = text.stdout.splitlines()[-1]
    assert totals == "totals: " + ", ".join(f"{phase} {count}" for phase, count in document["totals"].items())
    failed = _document(cli(config, "status", "--json", "--failed"))
    assert {item["drop"] for item in failed["messages"]} == {"avvist", "feilet-dpv"}
    assert next(item for item in failed["messages"] if item["drop"] == "feilet-dpv")["errors"] == [
        "the correspondence failed"]
    assert _document(cli(config, "status", "--json", "--drop", "finnes-ikke"))["messages"] == []


def test_status_json_of_one_message_holds_its_story(journal_config):
    config, ids = journal_config
    result = cli(config, "status", "--json", "feilet-dpv")
    assert result.returncode == 0, result.stderr
    [item] = _document(result)["messages"]
    assert set(item) == STATUS_KEYS | {"history", "earlier_errors", "operator_actions"}
    assert item["message_id"] == ids["feilet-dpv"] and item["status"] == "FEIL" and item["phase"] == "failed"
    assert item["route_reason"] == "reason for DPV"
    assert [event["status"] for event in item["history"]] == ["OPPRETTET", "SENDT", "FEIL"]
    assert item["history"][-1]["description"] == "the correspondence failed"
    story = cli(config, "status", "feilet-dpv").stdout
    for event in item["history"]:
        assert event["time"].replace("Z", "+00:00") in story and event["status"] in story
    missing = cli(config, "status", "--json", "finnes-ikke")
    assert missing.returncode == 3 and missing.stdout == ""
    assert missing.stderr == "efm-gateway: no message finnes-ikke in the journal\n"


def _drops(tmp_path: Path) -> Path:
    copy = tmp_path / "drops"
    shutil.copytree(SAMPLES, copy)
    return copy


def test_validate_json_of_an_accepted_and_a_rejected_drop(tmp_path):
    config = write_config(tmp_path)
    drops = _drops(tmp_path)
    text = cli(config, "validate", str(drops / "flat" / "melding-flat.xml"))
    result = cli(config, "validate", "--json", str(drops / "flat" / "melding-flat.xml"))
    assert result.returncode == text.returncode == 0, result.stderr
    document = _document(result)
    assert set(document) == {"drop", "path", "accepted", "problems", "warnings", "message", "route"}
    assert document["accepted"] is True and document["problems"] == []
    message = document["message"]
    assert set(message) == {"message_id", "conversation_id", "status", "message_type", "process", "sender",
                            "receiver", "deadline", "documents", "arkivmelding"}
    assert f"  type {message['message_type']}, process {message['process']}" in text.stdout
    assert f"  from {message['sender']} to {message['receiver']}," in text.stdout
    assert message["documents"] == ["melding-flat.pdf"] and "documents: melding-flat.pdf" in text.stdout
    assert document["route"]["outcome"] == "no_network"
    assert document["route"]["text"] == [line for line in text.stdout.splitlines() if line.startswith("route:")]

    text = cli(config, "validate", str(drops / "ugyldig-mottaker"))
    result = cli(config, "validate", "--json", str(drops / "ugyldig-mottaker"))
    assert result.returncode == text.returncode == 1
    document = _document(result)
    assert document["accepted"] is False and document["message"] is None and document["route"] is None
    assert document["problems"] == [line[4:] for line in text.stdout.splitlines() if line.startswith("  - ")]
    assert len(document["problems"]) == 2

    missing = cli(config, "validate", "--json", str(drops / "finnes-ikke"))
    assert missing.returncode == 3 and missing.stdout == "" and "no such file or folder" in missing.stderr


def test_check_config_json_gives_each_finding(tmp_path):
    config = write_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    (tmp_path / "faults.yaml").write_text("rules:\n  - {fault: latency, delay_ms: 5}\n")
    settings["sandbox"] = {"faults": "faults.yaml"}
    config.write_text(yaml.safe_dump(settings))
    text = cli(config, "check-config")
    result = cli(config, "check-config", "--json")
    assert result.returncode == text.returncode == 0, result.stderr
    document = _document(result)
    findings = document["results"]
    if on_postgres():  # the suite's journal.url (EFM_TEST_JOURNAL): check-config says whether it answers
        [journal] = [finding for finding in findings if finding["key"] == "journal"]
        assert journal["level"] == "ok" and journal["text"].startswith("journal: PostgreSQL, database ")
        findings = [finding for finding in findings if finding is not journal]
    assert {**document, "results": findings} == {
        "config": str(config),
        "ok": True,
        "results": [
            {"level": "ok", "key": "sandbox.faults",
             "text": f"sandbox.faults: OK (1 fault rule in {tmp_path / 'faults.yaml'})"},
            {"level": "ok", "key": "config",
             "text": f"{config}: OK (organisation 991825827, outbox {tmp_path / 'var' / 'outbox'})"},
        ],
    }
    assert text.stdout.splitlines() == [finding["text"] for finding in document["results"]]

    settings["intake"]["mode"] = "sometimes"
    config.write_text(yaml.safe_dump(settings))
    result = cli(config, "check-config", "--json")
    assert result.returncode == 2
    [finding] = _document(result)["results"]
    assert finding["level"] == "error" and finding["key"] == "config" and "intake.mode" in finding["text"]
    assert _document(result)["ok"] is False
    assert result.stderr == f"efm-gateway: {finding['text']}\n"  # the error is on stderr too, as without --json

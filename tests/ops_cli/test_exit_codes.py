"""The exit statuses every command uses, as the README's table and `--help` give them; a closed stdout ends a
command quietly; an unexpected error is a bug's status, with its traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli as cli_module
from gateway import commands
from gateway.clock import FakeClock
from gateway.exitcodes import ExitCode
from gateway.journal.phases import Phase
from gateway.journal.store import Journal
from tests.foundation.drops import write_config
from tests.suite_journal import on_postgres

from .support import NOW, REPO, cli, filled_journal, journal_message


def _readme_table() -> dict[int, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit status", 1)[1].split("\n### ", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)}


def test_the_readme_and_the_help_list_every_exit_status():
    assert sorted(_readme_table()) == sorted(int(code) for code in ExitCode)
    help_text = " ".join(subprocess.run([sys.executable, "-m", "gateway.cli", "--help"], capture_output=True,
                                        text=True, timeout=60).stdout.split())
    for code in ExitCode:
        assert f"; {int(code)} " in help_text or f"Exit status: {int(code)} " in help_text, code


@pytest.fixture
def journal_config(tmp_path: Path):
    return filled_journal(tmp_path)


def test_an_operator_action_on_a_message_not_there_is_not_found_and_a_forbidden_one_is_refused(journal_config):
    config, _ids = journal_config
    for command in ("retry", "cancel", "release"):
        missing = cli(config, command, "finnes-ikke")
        assert missing.returncode == ExitCode.NOT_FOUND, (command, missing.stderr)
        assert missing.stderr == "efm-gateway: no message finnes-ikke in the journal\n" and missing.stdout == ""
    refused = cli(config, "cancel", "gammel-sak")
    assert refused.returncode == ExitCode.REFUSED
    assert "cannot be cancelled: it is finished" in refused.stderr and refused.stdout == ""
    done = cli(config, "cancel", "brev-til-nav")  # sent already: refused as well
    assert done.returncode == ExitCode.REFUSED


def test_an_operator_action_without_a_journal_is_not_found(tmp_path):
    config = write_config(tmp_path)
    result = cli(config, "retry", "brev")
    assert result.returncode == ExitCode.NOT_FOUND
    # The SQLite file's path, or (EFM_TEST_JOURNAL=postgresql) the database journal.url names.
    assert ("no journal in the database journal.url names" if on_postgres() else "no journal at") in result.stderr


def _with_closed_stdout(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command writing into a pipe whose reader has already gone (what `| head -1` leaves behind)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)


def test_a_closed_stdout_ends_a_command_quietly(journal_config, tmp_path):
    config, _ids = journal_config
    for args in (("status",), ("status", "--json"), ("status", "feilet-dpv"), ("check-config",),
                 ("check-config", "--json"), ("validate", str(REPO / "sample_drops" / "ugyldig-mottaker"))):
        result = _with_closed_stdout(args[0], "--config", str(config), *args[1:], cwd=tmp_path)
        assert result.returncode == ExitCode.PIPE_CLOSED, (args, result.stderr)
        assert result.stderr == "", args
    # As a shell runs it: the first line arrives, nothing is said on stderr.
    shell = subprocess.run(["sh", "-c", f"{sys.executable} -m gateway.cli status --config {config} | head -1"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shell.stdout.startswith("MESSAGE ") and shell.stdout.count("\n") == 1
    assert shell.stderr == ""


def test_a_long_listing_into_head_ends_quietly(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "var" / "state").mkdir(parents=True)
    journal = Journal(tmp_path / "var" / "state" / "journal.sqlite", FakeClock(NOW))
    for number in range(200):  # some 150 KiB of JSON, more than a pipe holds: the writer meets the closed pipe
        journal_message(journal, f"brev-{number:04d}", Phase.ACCEPTED, channel="DPO", receiver="889640782",
                        hours_ago=1)
    journal.close()
    shell = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m gateway.cli status --json --limit 500 --config {config} | head -1; "
                       "echo \"status ${PIPESTATUS[0]}\" >&2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shell.stdout == "{\n"
    assert shell.stderr == f"status {int(ExitCode.PIPE_CLOSED)}\n"


def test_an_unexpected_error_is_a_bug_with_its_traceback(tmp_path, monkeypatch, capsys):
    def broken(_args: object) -> int:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(commands, "status", broken)
    config = write_config(tmp_path)
    assert cli_module.main(["status", "--config", str(config)]) == ExitCode.INTERNAL
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" in captured.err and "RuntimeError: something nobody expected" in captured.err
    assert captured.err.rstrip().endswith("efm-gateway: an unexpected error (a bug); please report it with the "
                                          "lines above")

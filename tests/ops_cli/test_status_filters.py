"""`efm-gateway status`: the filters an operator narrows a listing with, and a table that fits the terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from datetime import timedelta
from pathlib import Path

import pytest

from .support import NOW, cli, filled_journal


@pytest.fixture
def journal_config(tmp_path: Path):
    return filled_journal(tmp_path)


def _drops(output: str) -> set[str]:
    return {line.split()[-1] for line in output.splitlines()[1:] if not line.startswith("totals:")}


def test_status_filters(journal_config):
    config, ids = journal_config
    long_name = "postkasse-melding-med-et-langt-navn-som-ikke-får-plass"
    cases = {
        (): set(ids),
        ("--open",): {"brev-til-nav", long_name},
        ("--failed",): {"avvist", "feilet-dpv"},
        ("--channel", "dpv"): {long_name, "feilet-dpv"},
        ("--receiver", "0192:889640782"): {"brev-til-nav", "gammel-sak"},
        ("--drop", "sak"): {"gammel-sak"},
        ("--since", "2h"): {"brev-til-nav", long_name},
        ("--since", (NOW - timedelta(days=1)).strftime("%Y-%m-%d %H:%M")): set(ids) - {"gammel-sak"},
        ("--open", "--channel", "DPO"): {"brev-til-nav"},
        ("--phase", "sent"): {"brev-til-nav"},
        ("--failed", "--since", "1d", "--channel", "DPV"): {"feilet-dpv"},
    }
    for options, expected in cases.items():
        result = cli(config, "status", *options)
        assert result.returncode == 0, (options, result.stderr)
        assert _drops(result.stdout) == expected, (options, result.stdout)
        # Piped (not a terminal): whole ids, for scripts.
        for line in result.stdout.splitlines()[1:-1]:
            assert ids[line.split()[-1]] == line.split()[0]
    none = cli(config, "status", "--drop", "finnes-ikke")
    assert "no messages match" in none.stdout
    wrong = cli(config, "status", "--since", "i går")
    assert wrong.returncode == 2 and "--since 'i går': give an age such as 30m" in wrong.stderr


def test_one_message_by_drop_name_or_the_start_of_its_id(journal_config):
    config, ids = journal_config
    by_drop = cli(config, "status", "feilet-dpv")
    by_prefix = cli(config, "status", ids["feilet-dpv"][:8].upper())
    assert by_drop.stdout == by_prefix.stdout
    assert f"message {ids['feilet-dpv']} (outgoing, drop feilet-dpv, current FEIL, phase failed)" in by_drop.stdout
    assert "route: DPV: reason for DPV" in by_drop.stdout
    assert "error: the correspondence failed" in by_drop.stdout
    assert cli(config, "status", "0000000").returncode == 3  # too short to stand for an id: not found


def _in_terminal(config: Path, columns: int) -> str:
    """`efm-gateway status` in a pseudo-terminal `columns` wide, as an operator sees it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "status", "--config", str(config)],
        stdin=follower, stdout=follower, stderr=follower, cwd=config.parent, env=environment,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(leader)
    return output.decode("utf-8").replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 100])
def test_the_table_fits_the_terminal(journal_config, columns):
    config, ids = journal_config
    shown = _in_terminal(config, columns)
    lines = [line for line in shown.splitlines() if line]
    assert lines[0].split()[:4] == ["MESSAGE", "DIR", "STATUS", "PHASE"]
    assert all(len(line) <= columns for line in lines), shown
    rows = {line.split()[0]: line for line in lines[1:-1]}
    # The start of each id, which every command takes; the long drop name is cut with an ellipsis.
    assert set(rows) == {message_id[:8] for message_id in ids.values()}
    long_row = rows[ids["postkasse-melding-med-et-langt-navn-som-ikke-får-plass"][:8]]
    assert long_row.endswith("…") and "DPV" in long_row and "OPPRETTET" in long_row
    assert rows[ids["avvist"][:8]].split()[2:4] == ["FEIL", "rejected"]
    assert lines[-1].startswith("totals: ")


def test_a_wide_terminal_shows_whole_ids(journal_config):
    config, ids = journal_config
    lines = [line for line in _in_terminal(config, 200).splitlines() if line]
    assert {line.split()[0] for line in lines[1:-1]} == set(ids.values())

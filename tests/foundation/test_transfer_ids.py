"""Transfer ids are the channel's opaque strings; the receiver names files after them only escaped into one
file-name part that reads back and can never leave its folder."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.inbound.quarantine import kept_name, reference_of_kept
from gateway.inbound.transfer_ids import MAX_TRANSFER_ID_CHARS, file_part, from_file_part, transfer_id_problem

UUID = "5d0c3c52-4f1e-4c55-9a8e-0d1f2e3a4b5c"


def test_a_uuid_names_its_files_as_it_is():
    assert file_part(UUID) == UUID
    assert transfer_id_problem(UUID) is None


@pytest.mark.parametrize("hostile", ["..", ".", "../../etc", "a/b", "/etc/passwd", ".hidden", "a.b", "ø 1", "%2E%2E"])
def test_what_a_path_would_follow_is_escaped(hostile: str):
    part = file_part(hostile)
    assert re.fullmatch(r"[A-Za-z0-9_%-]+", part), part
    assert from_file_part(part) == hostile
    assert transfer_id_problem(hostile) is None


@pytest.mark.parametrize(
    ("bad", "why"),
    [("", "empty"), ("a\nforged log line", "control characters"), ("x" * (MAX_TRANSFER_ID_CHARS + 1), "too long")],
)
def test_an_id_no_file_name_or_log_line_can_hold_is_refused(bad: str, why: str):
    problem = transfer_id_problem(bad)
    assert problem is not None and why in problem


@given(st.text(min_size=1, max_size=60).filter(str.isprintable))
def test_every_printable_id_escapes_into_one_safe_part_and_reads_back(transfer_id: str):
    part = file_part(transfer_id)
    assert re.fullmatch(r"[A-Za-z0-9_%-]+", part)
    assert from_file_part(part) == transfer_id
    message_id = "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e"
    for suffix in (".zip", ".asice", ""):
        assert reference_of_kept(message_id, kept_name(message_id, transfer_id, suffix)) == transfer_id


def test_a_kept_package_is_named_with_the_channels_suffix():
    assert kept_name("m", UUID, ".zip") == f"m.{UUID}.zip"
    assert kept_name("m", "a.b/c", ".pkg") == "m.a%2Eb%2Fc.pkg"
    assert reference_of_kept("m", "m.a%2Eb%2Fc.pkg") == "a.b/c"

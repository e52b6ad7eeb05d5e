"""Incoming document names, made safe for any archive's file system (fsio.archive_safe_names)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.fsio import archive_safe_names, file_name_problem


def test_names_that_need_no_change_keep_them_and_the_others_get_a_safe_one():
    names = ["vedtak.pdf", "aux.pdf", "COM1", "rapport:2024.pdf", "rapport.", "notat ", "A.pdf", "a.pdf",
             "a (2).pdf", "vedlegg/lpt3.txt", "ø" * 150 + ".pdf"]
    safe = archive_safe_names(names)
    assert list(safe) == names
    assert safe["vedtak.pdf"] == "vedtak.pdf"
    assert safe["aux.pdf"] == "_aux.pdf" and safe["COM1"] == "_COM1"
    assert safe["rapport:2024.pdf"] == "rapport_2024.pdf"
    assert safe["rapport."] == "rapport_" and safe["notat "] == "notat_"
    # The first of two names that differ in case keeps its name; a name the sender gave keeps it too.
    assert (safe["A.pdf"], safe["a.pdf"], safe["a (2).pdf"]) == ("A.pdf", "a (3).pdf", "a (2).pdf")
    assert safe["vedlegg/lpt3.txt"] == "vedlegg/_lpt3.txt"
    long = safe["ø" * 150 + ".pdf"]
    assert long.endswith(".pdf") and len(long.encode()) <= 200


def test_two_names_alike_but_for_their_unicode_form_are_two_files():
    composed, decomposed = "\u00e5.pdf", "a\u030a.pdf"  # å, as macOS and Windows write it
    safe = archive_safe_names([composed, decomposed])
    assert safe[composed] == composed
    assert safe[decomposed] == "\u00e5 (2).pdf"


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                        min_size=1, max_size=80), min_size=1, max_size=8, unique=True))
def test_every_safe_name_is_a_plain_name_windows_can_hold_and_none_is_used_twice(names):
    safe = archive_safe_names(names)
    assert set(safe) == set(names)
    for name in safe.values():
        assert file_name_problem(name) is None, (name, file_name_problem(name))
    assert len({name.casefold() for name in safe.values()}) == len(names)

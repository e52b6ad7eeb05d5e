"""Property-based: any valid organisation or person number survives both wire forms, and any
wrong check digit is refused."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.channels.dpv.business import DigitalDpv
from gateway.errors import MessageFormatError
from gateway.formats.sbd import from_json, to_json
from gateway.formats.sbd_xml import from_xml, to_xml
from gateway.identifiers import FNR_WEIGHTS_1, FNR_WEIGHTS_2, ORGNR_WEIGHTS, mod11_check_digit

from .conftest import make_sbd


@st.composite
def orgnrs(draw: st.DrawFn) -> str:
    body = draw(
        st.text(alphabet="0123456789", min_size=8, max_size=8).filter(
            lambda b: mod11_check_digit(b, ORGNR_WEIGHTS) is not None
        )
    )
    return body + str(mod11_check_digit(body, ORGNR_WEIGHTS))


def _with_fnr_check_digits(body: str) -> str | None:
    first = mod11_check_digit(body, FNR_WEIGHTS_1)
    if first is None:
        return None
    second = mod11_check_digit(body + str(first), FNR_WEIGHTS_2)
    return None if second is None else f"{body}{first}{second}"


def fnrs() -> st.SearchStrategy[str]:
    bodies = st.text(alphabet="0123456789", min_size=9, max_size=9)
    return bodies.map(_with_fnr_check_digits).filter(lambda n: n is not None)  # type: ignore[return-value]


@settings(max_examples=60, deadline=None)
@given(sender=orgnrs(), receiver=orgnrs(), on_behalf=st.none() | orgnrs())
def test_organisations_survive_json_and_xml(sender: str, receiver: str, on_behalf: str | None) -> None:
    sbd = make_sbd(sender=sender, receiver=receiver, sender_on_behalf_of=on_behalf)
    assert from_json(to_json(sbd)) == sbd
    assert from_xml(to_xml(sbd)) == sbd
    assert (sbd.sender, sbd.receiver) == (sender, receiver)


@settings(max_examples=60, deadline=None)
@given(person=fnrs())
def test_persons_survive_json_and_xml(person: str) -> None:
    sbd = make_sbd(DigitalDpv(tittel="t"), receiver=person, process="urn:no:difi:profile:digitalpost:info:ver1.0")
    assert from_json(to_json(sbd)) == sbd
    assert from_xml(to_xml(sbd)) == sbd
    assert json.loads(to_json(sbd))["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] == person


@settings(max_examples=60, deadline=None)
@given(number=orgnrs() | fnrs(), shift=st.integers(min_value=1, max_value=9))
def test_a_wrong_check_digit_is_refused(number: str, shift: int) -> None:
    wrong = number[:-1] + str((int(number[-1]) + shift) % 10)
    doc = json.loads(to_json(make_sbd()))
    doc["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] = (
        wrong if len(wrong) == 11 else "0192:" + wrong
    )
    try:
        from_json(json.dumps(doc).encode())
    except MessageFormatError as exc:
        assert "check digit" in str(exc)
    else:
        raise AssertionError(f"{wrong} (from {number}) was accepted")

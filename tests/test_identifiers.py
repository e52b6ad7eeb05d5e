from hypothesis import given
from hypothesis import strategies as st

from gateway.identifiers import (
    FNR_WEIGHTS_1,
    FNR_WEIGHTS_2,
    ORGNR_WEIGHTS,
    is_valid_fnr,
    is_valid_orgnr,
    mod11_check_digit,
    receiver_problem,
)


def test_known_numbers():
    assert is_valid_orgnr("910075918")
    assert is_valid_orgnr("991825827")
    assert not is_valid_orgnr("910075919")
    assert is_valid_fnr("09118532322")
    assert not is_valid_fnr("09118532323")


@given(st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_orgnr_with_computed_check_digit_is_valid_and_others_not(base):
    check = mod11_check_digit(base, ORGNR_WEIGHTS)
    if check is None:
        assert not any(is_valid_orgnr(base + str(d)) for d in range(10))
        return
    assert is_valid_orgnr(base + str(check))
    for wrong in set(range(10)) - {check}:
        assert not is_valid_orgnr(base + str(wrong))


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_fnr_with_computed_check_digits(base):
    first = mod11_check_digit(base, FNR_WEIGHTS_1)
    if first is None:
        return
    second = mod11_check_digit(base + str(first), FNR_WEIGHTS_2)
    if second is None:
        return
    number = f"{base}{first}{second}"
    assert is_valid_fnr(number)
    assert not is_valid_fnr(f"{base}{first}{(second + 1) % 10}")


def test_receiver_problems_speak_plainly():
    assert receiver_problem("910075918") is None
    assert receiver_problem("0192:910075918") is None
    assert "check digit" in receiver_problem("910075919")
    assert "9 digits" in receiver_problem("12345")
    assert "retired" in receiver_problem("9908:910075918")
    assert "0192:910075918" in receiver_problem("9908:910075918")

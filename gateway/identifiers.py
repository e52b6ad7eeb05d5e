"""Organisation numbers and national identity numbers, with their MOD11 check digits."""

from __future__ import annotations

import re

from gateway.errors import ValidationError

ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
FNR_WEIGHTS_1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
FNR_WEIGHTS_2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
ISO6523_AUTHORITY = "iso6523-actorid-upis"
ORGNR_PREFIX = "0192:"
RETIRED_PREFIX = "9908:"


def mod11_check_digit(digits: str, weights: tuple[int, ...]) -> int | None:
    """The MOD11 check digit for `digits`, or None when the remainder makes the number invalid."""
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    if remainder == 0:
        return 0
    if remainder == 1:
        return None
    return 11 - remainder


def is_valid_orgnr(value: str) -> bool:
    if not re.fullmatch(r"[0-9]{9}", value):
        return False
    return mod11_check_digit(value[:8], ORGNR_WEIGHTS) == int(value[8])


def is_valid_fnr(value: str) -> bool:
    """Fødselsnummer or D-number: 11 digits with two MOD11 check digits."""
    if not re.fullmatch(r"[0-9]{11}", value):
        return False
    first = mod11_check_digit(value[:9], FNR_WEIGHTS_1)
    if first is None or first != int(value[9]):
        return False
    second = mod11_check_digit(value[:10], FNR_WEIGHTS_2)
    return second is not None and second == int(value[10])


def orgnr_problem(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{9}", value):
        return f"{value!r} is not an organisation number: it must be exactly 9 digits (0-9)"
    if not is_valid_orgnr(value):
        return f"{value} is not a valid organisation number: its check digit (the last digit) is wrong"
    return None


def receiver_problem(value: str) -> str | None:
    """Why `value` cannot identify a receiver (9-digit orgnr or 11-digit person), or None."""
    if value.startswith(RETIRED_PREFIX):
        return (
            f"{value!r} uses the retired prefix 9908:; write the bare organisation number "
            f"({value[len(RETIRED_PREFIX) :]}) or 0192:{value[len(RETIRED_PREFIX) :]}"
        )
    bare = value.removeprefix(ORGNR_PREFIX)
    if re.fullmatch(r"[0-9]{11}", bare):
        if not is_valid_fnr(bare):
            return f"{bare} is not a valid national identity number: its check digits are wrong"
        return None
    return orgnr_problem(bare)


def is_person(value: str) -> bool:
    return len(value.removeprefix(ORGNR_PREFIX)) == 11


def to_party_value(identifier: str) -> str:
    """The wire form: `0192:<orgnr>` for organisations, the bare number for persons."""
    bare = identifier.removeprefix(ORGNR_PREFIX)
    if is_person(bare):
        return bare
    return ORGNR_PREFIX + bare


def parse_party_value(value: str, normalise_retired: bool = False) -> str:
    """The bare identifier from a wire value, checked. `0192:<orgnr>[:<onBehalfOf>]` keeps the main orgnr."""
    if value.startswith(RETIRED_PREFIX):
        if not normalise_retired:
            raise ValidationError(receiver_problem(value) or value)
        value = ORGNR_PREFIX + value[len(RETIRED_PREFIX) :]
    bare = value.removeprefix(ORGNR_PREFIX).split(":", 1)[0]
    problem = receiver_problem(bare)
    if problem:
        raise ValidationError(problem)
    return bare

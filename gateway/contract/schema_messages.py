"""XSD validation messages from libxml2, said in words an archivist can act on."""

from __future__ import annotations

import re

_SCHEMA_MESSAGES = [
    (
        re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( ?(.+?) ?\)"),
        lambda m: f"a required element is missing here; add <{_local_names(m.group(1))}>",
    ),
    (
        re.compile(r"This element is not expected\. Expected is (?:one of )?\( ?(.+?) ?\)"),
        lambda m: f"this element is unknown or in the wrong place; expected <{_local_names(m.group(1))}> here",
    ),
    (
        re.compile(r"This element is not expected\."),
        lambda m: "this element is unknown or in the wrong place; remove it or check its spelling",
    ),
    (
        re.compile(r"\[facet 'enumeration'\] The value '(.*?)' is not an element of the set \{(.*?)\}"),
        lambda m: f"{m.group(1)!r} is not allowed; use one of {m.group(2).replace(chr(39), '')}",
    ),
    (
        re.compile(r"\[facet 'pattern'\] The value '(.*?)' is not accepted by the pattern '(.*?)'"),
        lambda m: f"{m.group(1)!r} has the wrong form{_pattern_hint(m.group(2))}",
    ),
    (
        re.compile(r"'(.*?)' is not a valid value of the atomic type 'xs:dateTime'"),
        lambda m: f"{m.group(1)!r} is not a date and time; write it like 2026-05-01T12:00:00+02:00",
    ),
    (
        re.compile(r"'(.*?)' is not a valid value of the atomic type 'xs:(nonNegativeInteger|integer)'"),
        lambda m: f"{m.group(1)!r} is not a whole number",
    ),
    (
        re.compile(r"'(.*?)' is not a valid value of the atomic type 'xs:boolean'"),
        lambda m: f"{m.group(1)!r} is not true or false",
    ),
    (
        re.compile(r"\[facet 'minLength'\]"),
        lambda m: "the value is empty; fill it in or remove the element",
    ),
]


def _local_names(expected: str) -> str:
    names = re.findall(r"\{[^}]*\}(\w+)", expected) or [expected]
    return "> or <".join(names)


def _pattern_hint(pattern: str) -> str:
    if "{12}" in pattern:
        return "; a UUID looks like 2f6e1c3a-9a77-4c1e-8a4f-0b5f1e2d3c4b"
    if "{64}" in pattern:
        return "; a SHA-256 is 64 hexadecimal characters"
    return ""


def describe_schema_error(message: str) -> tuple[str | None, str]:
    element = re.match(r"Element '(?:\{[^}]*\})?(\w+)'(?:, attribute '(\w+)')?: ", message)
    field_name = None
    rest = message
    if element:
        field_name = element.group(1) if not element.group(2) else f"{element.group(1)} @{element.group(2)}"
        rest = message[element.end() :]
    for pattern, explain in _SCHEMA_MESSAGES:
        match = pattern.search(rest)
        if match:
            return field_name, explain(match)
    return field_name, rest.strip()

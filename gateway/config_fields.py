"""The typed fields of config.yaml's sections: each value coerced to its declared type, with one line naming
the key and the fix. Shared by config.py and by every channel's settings block (gateway/channels/<name>/settings.py),
which is why it sits below both."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.identifiers import orgnr_problem

NO_CHOICES: Mapping[str, tuple[str, ...]] = {}


def unknown_key(path: Path, key: str, known: Any) -> str:
    """The line for a key config.yaml does not know, with the known ones beside it."""
    return f"{path}: unknown key '{key}'; known keys here are {', '.join(sorted(known))} (check the spelling)"


def build_section(
    path: Path,
    base: Path,
    section: str,
    section_type: type,
    raw: Mapping[str, Any],
    positive: Collection[str] = (),
    choices: Mapping[str, tuple[str, ...]] = NO_CHOICES,
) -> Any:
    """`section_type` from its raw block; `positive` and `choices` name dotted keys (section.key) that must be
    greater than 0 or one of a few words."""
    known = {f.name: f for f in fields(section_type)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(unknown_key(path, f"{section}.{key}", [f"{section}.{k}" for k in known]))
        dotted = f"{section}.{key}"
        values[key] = _coerce(path, base, dotted, known[key].type, value, positive, choices)
    for name, spec in known.items():
        if name not in values and spec.default is spec.default_factory is MISSING:
            raise ConfigError(f"{path}: {section}.{name} is required; add it")
    return section_type(**values)


def _coerce(
    path: Path,
    base: Path,
    dotted: str,
    type_name: Any,
    value: Any,
    positive: Collection[str],
    choices: Mapping[str, tuple[str, ...]],
) -> Any:
    type_text = str(type_name)
    optional = "None" in type_text
    type_text = type_text.replace(" | None", "")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path}: {dotted} is empty; give it a value or remove the line")
    if type_text.startswith("Path"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: {dotted} must be a folder path (text), not {value!r}")
        folder = Path(os.path.expanduser(_expand_variables(path, dotted, value)))
        return folder if folder.is_absolute() else (base / folder)
    if type_text.startswith("dict"):
        return _signer_pairs(path, dotted, value)
    if type_text == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise ConfigError(f"{path}: {dotted} must be a list of names, such as [gateway.example.no, 10.0.0.5]")
        return tuple(item.strip() for item in value)
    if type_text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {dotted} must be true or false, not {value!r}")
        return value
    if type_text in ("int", "float"):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (type_text == "int" and isinstance(value, float))
        ):
            raise ConfigError(
                f"{path}: {dotted} must be a {'whole ' if type_text == 'int' else ''}number, not {value!r}"
            )
        if value < 0 or (dotted in positive and value == 0):
            raise ConfigError(f"{path}: {dotted} must be greater than 0, not {value!r}")
        return int(value) if type_text == "int" else float(value)
    if type_text == "str":
        if isinstance(value, int) and not isinstance(value, bool) and dotted == "organisation.orgnr":
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {dotted} must be text, not {value!r}")
        if dotted in choices and value not in choices[dotted]:
            raise ConfigError(f"{path}: {dotted} is {value!r}; use one of {', '.join(choices[dotted])}")
        return value
    raise ConfigError(f"{path}: {dotted}: unsupported setting type {type_text}")


_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::-(?P<fallback>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")


def _expand_variables(path: Path, dotted: str, value: str) -> str:
    """$NAME, ${NAME} and ${NAME:-fallback} in a path, from the environment: systemd hands the service its
    credentials in ${CREDENTIALS_DIRECTORY} (LoadCredential=). A variable that is not set is an error, never an
    empty string: "/keystore-password" would be a wrong file, read quietly."""

    def value_of(found: re.Match[str]) -> str:
        name = found["braced"] or found["bare"]
        given = os.environ.get(name)
        if given:
            return given
        if found["fallback"] is not None:
            return found["fallback"]
        why = (" (systemd sets it for the service when its unit has LoadCredential= lines; a command run outside "
               "the service does not have it)") if name == "CREDENTIALS_DIRECTORY" else ""
        raise ConfigError(
            f"{path}: {dotted} ({value}) uses ${{{name}}}, which is not set (or empty) in the environment{why}; "
            f"set it, or write ${{{name}:-/a/folder}} to name the folder to use without it"
        )

    return _VARIABLE.sub(value_of, value)


def _signer_pairs(path: Path, dotted: str, value: Any) -> dict[str, tuple[str, ...]]:
    """`signer: [sender, ...]`, every number a valid organisation number."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {dotted} must map a signer's organisation number to a list of senders")
    pairs: dict[str, tuple[str, ...]] = {}
    for signer, senders in value.items():
        senders = [senders] if isinstance(senders, str | int) else senders
        if not isinstance(senders, list) or not senders:
            raise ConfigError(f"{path}: {dotted}.{signer} must be a list of the senders it signs for")
        for number in (signer, *senders):
            problem = orgnr_problem(str(number))
            if problem:
                raise ConfigError(f"{path}: {dotted}: {number}: {problem}")
        pairs[str(signer)] = tuple(str(sender) for sender in senders)
    return pairs

"""Digdir's and Digipost's DPI vectors, the DPI JSON schemas, and a dev PKI for what we write ourselves."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from gateway.devcerts import DevPki, create_dev_pki, dev_identity
from gateway.formats.keys import OrgIdentity, load_pkcs12
from tests.conftest import REFERENCE

VECTORS = REFERENCE / "vectors" / "dpi"
KOMPLETTE = VECTORS / "docs-komplette"
RECEIPTS = VECTORS / "receipts-digipost-jwt"
SCHEMAS = REFERENCE / "schemas"
PKI = REFERENCE / "vectors" / "pki"
SCENARIOS = ("digital", "digital-avsenderidentifikator", "digital-pa-vegne-av", "utskrift")
# When each example's signer was valid (README: the digital ones signed 2022-03-16, utskrift 2023-11-14; T0 of
# the README is past the digital signers' end).
SIGNED_AT = {
    "digital": datetime(2022, 3, 16, 14, 30, tzinfo=UTC),
    "digital-avsenderidentifikator": datetime(2022, 3, 16, 14, 30, tzinfo=UTC),
    "digital-pa-vegne-av": datetime(2022, 3, 16, 14, 45, tzinfo=UTC),
    "utskrift": datetime(2025, 4, 3, 12, 0, tzinfo=UTC),
}
SENDER = "910077473"
MAILBOX = "984661185"  # a mailbox provider's organisation (Digipost's number, as in the receipts)


def _without_nested_ids(node: Any, top: bool = True) -> Any:
    """The DPI schemas put `"$id": "#/definitions/x"` inside definitions, which jsonschema would take for a new
    base URI and resolve `$ref`s against; Digdir's own validator ignores them (README of the vectors)."""
    if isinstance(node, dict):
        return {key: _without_nested_ids(value, False) for key, value in node.items() if top or key != "$id"}
    if isinstance(node, list):
        return [_without_nested_ids(value, False) for value in node]
    return node


@pytest.fixture(scope="session")
def schema_check() -> Callable[[dict[str, Any]], list[str]]:
    """Validate an SBD against the DPI schema its type names; the problems as text (empty: valid)."""
    documents = [json.loads((SCHEMAS / "sbdh.schema.json").read_text())]
    documents += [json.loads(path.read_text()) for path in sorted((SCHEMAS / "dpi").glob("*.schema.json"))]
    cleaned = [_without_nested_ids(document) for document in documents]
    registry = Registry().with_resources((document["$id"], Resource.from_contents(document)) for document in cleaned)
    by_type = {}
    for path in sorted((SCHEMAS / "dpi").glob("innbyggerpost_dpi_*_1_0.schema.json")):
        name = path.name.removeprefix("innbyggerpost_dpi_").removesuffix("_1_0.schema.json")
        by_type[name] = _without_nested_ids(json.loads(path.read_text()))

    def check(sbd: dict[str, Any]) -> list[str]:
        kind = sbd["standardBusinessDocument"]["standardBusinessDocumentHeader"]["documentIdentification"]["type"]
        validator = jsonschema.Draft7Validator(by_type[kind], registry=registry,
                                               format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(copy.deepcopy(sbd))]

    return check


@pytest.fixture(scope="session")
def eksempel() -> OrgIdentity:
    """The key every one of Digdir's example packages is encrypted to."""
    return load_pkcs12(KOMPLETTE / "eksempel.converted.p12", "changeit")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("dpi-pki"), {SENDER: "Avsender Test AS", MAILBOX: "Postkasse AS"})


@pytest.fixture(scope="session")
def sender(pki: DevPki) -> OrgIdentity:
    return dev_identity(pki, SENDER)


@pytest.fixture(scope="session")
def mailbox(pki: DevPki) -> OrgIdentity:
    return dev_identity(pki, MAILBOX)


def example_json(scenario: str) -> dict[str, Any]:
    return json.loads((KOMPLETTE / f"{scenario}-forretningsmelding.json").read_text())


def shape(node: Any) -> Any:
    """The structure of a JSON value: object keys (in order) and value types, not the values."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(value) for value in node[:1]]
    return type(node).__name__


def files_of(path: Path) -> dict[str, bytes]:
    return {child.name: child.read_bytes() for child in sorted(path.iterdir())}

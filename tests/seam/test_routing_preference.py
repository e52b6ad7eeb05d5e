"""Routing as an ordered preference in config.yaml, each channel asked whether it can carry the message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.channels.records import InfoRecord, RegistryAnswer, ServiceRecord
from gateway.config import load_config
from gateway.errors import ConfigError, PermanentChannelError
from gateway.routing import route_for
from gateway.routing.route import choose_route

ADMIN = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"
PLANBYGG = "urn:no:difi:profile:arkivmelding:planByggOgGeodata:ver1.0"
ARKIVMELDING = "urn:no:difi:arkivmelding:xsd::arkivmelding"
FOLDER_KEYS = ("outbox", "status", "inbox", "failed", "sent", "state")


def _load(tmp_path: Path, routing: object) -> object:
    settings = {
        "organisation": {"orgnr": "991825827"},
        "folders": {"create_missing": True, **{key: f"var/{key}" for key in FOLDER_KEYS}},
        "routing": routing,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def record(service: str, process: str = ADMIN) -> ServiceRecord:
    return ServiceRecord(service, process, (ARKIVMELDING,), "PEM", "http://x", None, None, None, None)


class OneAnswer:
    """A resolver that knows one receiver (the Resolver protocol: what a Peppol SMP lookup would implement)."""

    def __init__(self, *records: ServiceRecord) -> None:
        self.records = list(records)
        self.asked: list[tuple[str, str]] = []

    def lookup(self, identifier: str, process: str, security_level: int | None = None,
               conversation_id: str | None = None) -> RegistryAnswer:
        self.asked.append((identifier, process))
        return RegistryAnswer(InfoRecord(identifier, "Mottaker"), [r for r in self.records if r.process == process])


def test_the_default_preference_is_the_seeds_order(tmp_path: Path) -> None:
    config = _load(tmp_path, {})
    assert config.routing.preference(ADMIN, is_person=False) == ("DPO", "DPF", "DPV")
    assert config.routing.preference(ADMIN, is_person=True) == ("DPI", "DPV")


def test_a_preference_in_config_changes_the_channel_and_the_channel_gives_the_reason(tmp_path: Path) -> None:
    config = _load(tmp_path, {"organisations": ["dpf", "DPO", "DPV"], "processes": {PLANBYGG: ["DPV"]}})
    resolver = OneAnswer(record("DPO"), record("DPF"), record("DPV"), record("DPO", PLANBYGG), record("DPV", PLANBYGG))

    route, _answer = route_for(resolver, "910075918", ADMIN, "arkivmelding", 3, preferences=config.routing)
    assert route.channel == "DPF"
    assert route.reason == f"receiver has a SvarInn address for process {ADMIN}: DPF"

    by_process, _answer = route_for(resolver, "910075918", PLANBYGG, "arkivmelding", 3, preferences=config.routing)
    assert by_process.channel == "DPV"  # the process's own order, though a DPO record is there
    assert by_process.reason == f"receiver has a DPV record for process {PLANBYGG}: DPV (Altinn mailbox)"
    assert resolver.asked == [("910075918", ADMIN), ("910075918", PLANBYGG)]


def test_without_a_preference_the_route_is_todays(tmp_path: Path) -> None:
    resolver = OneAnswer(record("DPF"), record("DPV"))
    route, _answer = route_for(resolver, "910075918", ADMIN, "arkivmelding", 3, preferences=_load(tmp_path, {}).routing)
    assert (route.channel, route.reason) == (
        "DPF", "receiver has no DPO record for this process; SvarInn address found: DPF")


def test_a_channel_left_out_of_the_preference_is_never_chosen() -> None:
    with pytest.raises(PermanentChannelError, match="no channel for process"):
        choose_route(RegistryAnswer(InfoRecord("910075918", "M"), [record("DPV")]), ADMIN, ARKIVMELDING, False, 3,
                     preference=("DPO", "DPF"))


@pytest.mark.parametrize(("routing", "words"), [
    ({"organisations": ["DPO", "DPX"]}, "routing.organisations: no channel is named 'DPX'; the channels are DPF, DPI"),
    ({"persons": "DPI"}, "routing.persons must be a list of channel names"),
    ({"organisations": ["DPO", "dpo"]}, "routing.organisations names a channel twice"),
    ({"processes": {PLANBYGG: ["DPQ"]}}, f"routing.processes.{PLANBYGG}: no channel is named 'DPQ'"),
    ({"order": ["DPO"]}, "unknown key 'routing.order'"),
])
def test_a_wrong_preference_is_refused_naming_the_known_channels(tmp_path: Path, routing: dict, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, routing)
    assert words in str(refused.value)

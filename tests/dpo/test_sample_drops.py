"""`efm-gateway run` on the repository's config.yaml with sample_drops/ copied in: the good drops
reach LEST through the automatic peer, the bad one lands in failed/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from lxml import etree

from tests.foundation.process import DaemonProcess, status_files, wait_for
from tests.ops_cli.support import repository_config

from .statusfiles import NS, valid_status_file

REPO = Path(__file__).resolve().parents[2]


def _current_and_drop(path: Path) -> tuple[str | None, str | None]:

    root = etree.parse(str(path)).getroot()
    return root.findtext("s:current", namespaces=NS), root.findtext("s:dropName", namespaces=NS)


def _channel_and_drop(path: Path) -> tuple[str | None, str | None]:
    root = etree.parse(str(path)).getroot()
    return root.findtext("s:route/s:channel", namespaces=NS), root.findtext("s:dropName", namespaces=NS)


def test_sample_drops_through_the_repository_config(tmp_path):
    # The README's daemon may run from this checkout meanwhile: the copy keeps its folders here and takes any
    # free port for its operations endpoint.
    config = repository_config(tmp_path)
    # DPV and DPI learn their statuses by polling, every 30 s by default (the repository's config leaves them so):
    # two rounds for DPI's MOTTATT, then LEVERT and LEST, were a minute of waiting. Here every 2 s.
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    for channel in ("dpv", "dpi"):
        settings.setdefault("channels", {}).setdefault(channel, {})["status_poll_seconds"] = 2
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        var = tmp_path / "var"
        wait_for(lambda: (var / "sandbox" / "network.yaml").exists(), 60, message="the sandbox network")
        wait_for(lambda: "efm-gateway is running" in (tmp_path / "daemon.log").read_text(), 30, message="the daemon")
        outbox, staging = var / "outbox", tmp_path / "staging"
        samples = REPO / "sample_drops"
        for folder in ("brev-til-sandkasse-peer", "melding-til-altinn-postkasse", "brev-til-kommune",
                       "ugyldig-mottaker", "brev-til-innbygger", "brev-til-innbygger-papir"):
            shutil.copytree(samples / folder, staging / folder)
            os.rename(staging / folder, outbox / folder)  # a folder drop arrives in one rename
        shutil.copy(samples / "flat" / "melding-flat.pdf", outbox / "melding-flat.pdf")  # documents first,
        shutil.copy(samples / "flat" / "melding-flat.xml", staging / "melding-flat.xml")  # the sidecar last
        os.rename(staging / "melding-flat.xml", outbox / "melding-flat.xml")

        def states() -> dict[str | None, str | None]:
            return {drop: now for now, drop in map(_current_and_drop, status_files(var / "status"))}

        wait_for(
            lambda: states() == {
                "brev-til-sandkasse-peer": "LEST", "melding-til-altinn-postkasse": "LEST", "melding-flat": "LEST",
                "brev-til-kommune": "LEST", "ugyldig-mottaker": "FEIL",
                # DPI: the citizen opens the digital letter; the printed vedtak is posted (LEVERT)
                "brev-til-innbygger": "LEST", "brev-til-innbygger-papir": "LEVERT",
            },
            90,
            interval=0.5,
            message="LEST for the good drops, FEIL for the bad one",
        )
        assert sorted(os.listdir(var / "failed")) == ["ugyldig-mottaker", "ugyldig-mottaker.error.txt"]
        explanation = (var / "failed" / "ugyldig-mottaker.error.txt").read_text()
        assert "check digit" in explanation and "'brev.pdf' is listed but not in the drop" in explanation
        assert os.listdir(outbox) == []
        assert sorted(os.listdir(var / "sent")) == [
            "brev-til-innbygger", "brev-til-innbygger-papir", "brev-til-kommune", "brev-til-sandkasse-peer",
            "melding-flat", "melding-til-altinn-postkasse",
        ]
        routes = {drop: channel for channel, drop in map(_channel_and_drop, status_files(var / "status"))}
        assert routes == {
            "brev-til-sandkasse-peer": "DPO", "melding-til-altinn-postkasse": "DPV", "melding-flat": "DPO",
            "brev-til-kommune": "DPF", "ugyldig-mottaker": None,
            "brev-til-innbygger": "DPI", "brev-til-innbygger-papir": "DPI",
        }
        assert all(valid_status_file(path) for path in status_files(var / "status"))
    finally:
        assert daemon.stop() == 0

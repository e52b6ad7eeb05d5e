"""`efm-gateway validate` explains a letter's route as the daemon would choose it: the person's records from
the sandbox registry, DPI's rules, and the sidecar's print fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.sandbox.persons import PERSON_WITHOUT_MAILBOX
from tests.dpo.network import A, SandboxProcess, gateway_config
from tests.ops_cli.support import SAMPLES, cli


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    process = SandboxProcess(tmp_path_factory.mktemp("dpi-validate") / "sandbox")
    yield process
    process.stop()


def _without_mailbox(drops: Path, fallback: bool) -> Path:
    target = drops / f"til-nils-{fallback}"
    shutil.copytree(SAMPLES / "brev-til-innbygger", target)
    sidecar = target / "message.xml"
    text = sidecar.read_text(encoding="utf-8").replace("12857610030", PERSON_WITHOUT_MAILBOX)
    if fallback:
        text = text.replace("<dpi>", "<dpi>\n    <printFallback>true</printFallback>")
    sidecar.write_text(text, encoding="utf-8")
    return target


def test_validate_names_the_rule_that_chose_the_channel(sandbox: SandboxProcess, tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "a", sandbox, A)
    drops = tmp_path / "drops"
    drops.mkdir()
    cases = [
        (SAMPLES / "brev-til-innbygger", "route: DPI: the receiver has an active digital mailbox (provider 944444505)"),
        (SAMPLES / "brev-til-innbygger-papir", "route: DPI: a vedtak must reach the receiver"),
        (_without_mailbox(drops, fallback=False), "route: DPV: receiver has no active digital mailbox: DPV"),
        (_without_mailbox(drops, fallback=True),
         "route: DPI: the receiver has no active digital mailbox and the sidecar asks for print fallback"),
    ]
    for drop, words in cases:
        result = cli(config, "validate", str(drop))
        assert result.returncode == 0, (drop.name, result.stdout, result.stderr)
        assert words in result.stdout, (drop.name, result.stdout)
        assert PERSON_WITHOUT_MAILBOX not in result.stdout.split("route:")[1]

"""Issue #8: the outbox never stops and never loses a drop.

Every hostile case of tests/foundation/hostile.py is dropped into one real daemon (in events mode
and in polling mode; the permission cases with a daemon that has no CAP_DAC_OVERRIDE), then a good
drop after them. Each case must end with its explanation, the good drop must be sent, the daemon
must stay up with a clean log, and the work area must be empty. `efm-gateway validate` on a copy of
every case gives the daemon's verdict, reads in place and writes nothing.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from lxml import etree

from gateway.fsio import text_name
from tests.conftest import REFERENCE

from . import hostile
from .drops import OUR_ORGNR, make_folder_drop
from .process import DaemonProcess, wait_for, without_dac_command, without_dac_problem

NS = {"s": "urn:efm-gateway:status:1"}
SENT_OR_LATER = {"SENDT", "MOTTATT", "LEVERT", "LEST"}


def _can_mknod() -> bool:
    probe = Path(f"/tmp/efm-mknod-probe-{os.getpid()}")
    try:
        os.mknod(probe, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except OSError:
        return False
    probe.unlink()
    return True


def _config(root: Path, mode: str, file_name: str = "config.yaml", outbox: str = "var/outbox") -> Path:
    config = {
        "organisation": {"orgnr": OUR_ORGNR, "name": "Test kommune"},
        "folders": {
            "create_missing": True,
            **{name: f"var/{name}" for name in ("outbox", "status", "inbox", "failed", "sent", "state")},
            "outbox": outbox,
        },
        "intake": {
            "mode": mode,
            "scan_interval_seconds": 0.3,
            "quiet_period_seconds": 0.3,
            "incomplete_timeout_seconds": 3,
            "arkivmelding_schema": str(REFERENCE / "schemas" / "arkivmelding.xsd"),
        },
        "network": {"inbound_poll_seconds": 0.3, "send_interval_seconds": 0.3},
        "sandbox": {"enabled": True},
    }
    path = root / file_name
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _status_by_drop(status: Path) -> dict[str, etree._Element]:
    found = {}
    for path in status.iterdir():
        if path.suffix != ".xml" or path.name.startswith("."):
            continue
        try:
            root = etree.parse(str(path)).getroot()
        except (OSError, etree.XMLSyntaxError):
            continue
        found[root.findtext("s:dropName", namespaces=NS)] = root
    return found


def _status_text(root: etree._Element) -> str:
    return " ".join(root.itertext())


class Outcomes:
    """What the daemon did with each entry, read from status/, failed/ and the outbox."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.statuses = _status_by_drop(var / "status")

    def explanation(self, entry: str) -> str | None:
        path = self.var / "failed" / f"{text_name(entry)}.error.txt"
        return path.read_text() if path.exists() else None

    def done(self, entry: str, outcome: str) -> bool:
        name = text_name(entry)
        if outcome == hostile.ACCEPTED:
            status = self.statuses.get(name)
            return status is not None and status.findtext("s:current", namespaces=NS) in SENT_OR_LATER
        explanation = self.explanation(entry)
        if explanation is None:
            return False
        if outcome == hostile.REJECTED:
            status = self.statuses.get(name)
            return status is not None and status.findtext("s:current", namespaces=NS) == "FEIL"
        return True


def _expected(case_list: list[hostile.Case]) -> dict[str, str]:
    expected = {}
    for case in case_list:
        expected[case.drop_name] = case.outcome
        expected.update(case.also)
    return expected


def _run_validate(config: Path, area: Path, entries: list[str], without_dac: bool, scratch: Path) -> dict:
    """`efm-gateway validate` (its real entry point) on each entry, in one process for speed."""
    driver = textwrap.dedent("""
        import contextlib, io, json, os, sys
        from gateway import cli
        results = {}
        for entry in json.loads(sys.argv[2]):
            entry = os.fsdecode(bytes.fromhex(entry))
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = cli.main(["validate", os.path.join(sys.argv[3], entry), "--config", sys.argv[1]])
            results[os.fsencode(entry).hex()] = [code, out.getvalue()]
        print(json.dumps(results))
    """)
    command = [
        sys.executable,
        "-c",
        driver,
        str(config),
        json.dumps([os.fsencode(e).hex() for e in entries]),
        str(area),
    ]
    if without_dac:
        command = without_dac_command(command)
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return {os.fsdecode(bytes.fromhex(key)): value for key, value in json.loads(result.stdout.splitlines()[-1]).items()}


def _snapshot(folder: Path) -> dict:
    """Names, types, sizes, modes and mtimes of everything under `folder` (links not followed)."""
    seen = {}
    for path, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = os.lstat(os.path.join(path, name))
            seen[os.path.join(path, name)] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino)
    return seen


RUNS = [
    pytest.param("events", False, id="events"),
    pytest.param("polling", False, id="polling"),
    pytest.param("events", True, id="events-without-dac"),
    pytest.param("polling", True, id="polling-without-dac"),
]


@pytest.mark.parametrize(("mode", "without_dac"), RUNS)
def test_hostile_drops_are_each_explained_and_the_next_drop_is_sent(tmp_path, mode, without_dac):
    if without_dac and (problem := without_dac_problem()):
        pytest.skip(f"permission cases need a daemon without CAP_DAC_OVERRIDE: {problem}")
    case_list = hostile.cases(with_permissions=without_dac)
    if not _can_mknod():
        case_list = [case for case in case_list if not case.entry.startswith(("device-", "doc-device"))]
    config = _config(tmp_path, mode)
    var = tmp_path / "var"
    outbox = var / "outbox"

    # validate first, on a scratch outbox holding the same cases.
    area = tmp_path / "validate-area" / "outbox"
    area.mkdir(parents=True)
    for case in case_list:
        case.build(area)
    scratch = tmp_path / "validate-tmp"
    scratch.mkdir()
    before = _snapshot(area.parent)
    # validate judges an entry as lying in the outbox of the config it is given.
    validate_config = _config(tmp_path, mode, "validate.yaml", outbox="validate-area/outbox")
    verdicts = _run_validate(validate_config, area, [case.entry for case in case_list], without_dac, scratch)
    assert _snapshot(area.parent) == before, "validate changed the drops it looked at"
    assert os.listdir(scratch) == [], "validate wrote into its temporary folder"
    assert not (var / "state").exists(), "validate created the daemon's state"

    validated = list(case_list)
    daemon = DaemonProcess(config, tmp_path / "daemon.log", without_dac=without_dac).start()
    try:
        wait_for(lambda: "efm-gateway is running" in (tmp_path / "daemon.log").read_text(), 60, message="daemon start")
        for case in case_list:
            case.build(outbox)
        expected = _expected(case_list)

        def all_done() -> bool:
            outcomes = Outcomes(var)
            return all(outcomes.done(entry, outcome) for entry, outcome in expected.items())

        wait_for(all_done, 60, interval=0.3, message="a verdict for every hostile drop")
        assert daemon.alive(), "the daemon died"
        if without_dac:
            # A drop left in the outbox is looked at again once it changes: its permissions fixed, it is sent.
            (outbox / "closed-folder").chmod(0o755)
            wait_for(lambda: Outcomes(var).done("closed-folder", hostile.ACCEPTED), 30, message="closed-folder sent")
            # ...and failed/ no longer says it is still in the outbox.
            assert [name for name in os.listdir(var / "failed") if name.startswith("closed-folder")] == []
            fixed = [case for case in case_list if case.entry != "closed-folder"]
            case_list = [*fixed, hostile.Case("closed-folder", lambda a: None, hostile.ACCEPTED)]
        make_folder_drop(outbox, "good-last", staging=tmp_path / "staging")
        wait_for(lambda: Outcomes(var).done("good-last", hostile.ACCEPTED), 30, interval=0.2, message="good drop sent")
        assert daemon.alive()
    finally:
        exit_code = daemon.stop()
    assert exit_code == 0

    outcomes = Outcomes(var)
    problems = []
    for case in case_list:
        text = outcomes.explanation(case.drop_name) if case.outcome != hostile.ACCEPTED else None
        if case.outcome == hostile.ACCEPTED:
            text = _status_text(outcomes.statuses[text_name(case.drop_name)])
        for phrase in case.phrases:
            if phrase not in (text or ""):
                problems.append(f"{case.entry!r}: {phrase!r} not in {text!r}")
        for phrase in case.absent:
            if phrase in (text or ""):
                problems.append(f"{case.entry!r}: {phrase!r} should not be in {text!r}")
        if case.outcome == hostile.REJECTED:
            status_errors = _status_text(outcomes.statuses[text_name(case.drop_name)])
            if case.phrases and case.phrases[0] not in status_errors:
                problems.append(f"{case.entry!r}: the status file does not say {case.phrases[0]!r}")
        in_outbox = os.path.lexists(outbox / case.entry)
        if in_outbox != (case.outcome == hostile.STAYS):
            problems.append(f"{case.entry!r}: {'still' if in_outbox else 'not'} in the outbox")
        if case.outcome in (hostile.REJECTED, hostile.ORPHAN) and not os.path.lexists(
            var / "failed" / text_name(case.drop_name)
        ):
            problems.append(f"{case.entry!r}: not moved to failed/")
    for case in validated:
        # validate gave the daemon's verdict, with the same reason.
        code, output = verdicts[case.entry]
        if code != (0 if case.outcome == hostile.ACCEPTED else 1):
            problems.append(f"validate {case.entry!r} exited {code}: {output}")
        if case.outcome != hostile.ACCEPTED and case.phrases[0] not in output:
            problems.append(f"validate {case.entry!r} does not say {case.phrases[0]!r}: {output}")
    assert problems == []

    # No claimed drop is left behind: every claim was sent (sent/) or parked (failed/).
    work = var / "state" / "work"
    assert sorted(os.listdir(work)) == [], "claims left in the work area"
    sent = sorted(os.listdir(var / "sent"))
    accepted = sorted(entry for entry, outcome in _expected(case_list).items() if outcome == hostile.ACCEPTED)
    assert sent == sorted([*accepted, "good-last"])
    assert sorted(os.listdir(outbox)) == sorted(case.entry for case in case_list if case.outcome == hostile.STAYS)

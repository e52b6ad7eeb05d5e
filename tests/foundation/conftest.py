from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.config import Config, load_config
from gateway.folders import prepare_folders
from gateway.intake.service import Intake
from gateway.journal.store import Journal
from gateway.receipts.writer import StatusWriter

from .drops import write_config


class Harness:
    """An in-process intake with a clock the test moves."""

    def __init__(self, root: Path, **intake: object) -> None:
        self.config: Config = load_config(write_config(root, **intake))
        prepare_folders(self.config)
        self.clock = FakeClock()
        self.journal = Journal(self.config.folders.journal_path, self.clock)
        self.statuses = StatusWriter(self.journal, self.config.folders.status, self.clock)
        self.intake = Intake(self.config, self.journal, self.statuses, self.clock)
        self.outbox = self.config.folders.outbox
        self.failed = self.config.folders.failed
        self.status = self.config.folders.status

    def run(self, times: int = 1, advance: float = 0.0):
        counts = None
        for _ in range(times):
            counts = self.intake.run_once()
            self.clock.advance(advance)
        return counts

    def status_files(self) -> list[Path]:
        return sorted(p for p in self.status.iterdir() if p.name.endswith(".xml") and not p.name.startswith("."))

    def close(self) -> None:
        self.statuses.close()
        self.journal.close()


@pytest.fixture
def harness(tmp_path: Path):
    made: list[Harness] = []

    def make(**intake: object) -> Harness:
        instance = Harness(tmp_path, **intake)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()

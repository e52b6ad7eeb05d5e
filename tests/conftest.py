"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.journal_places import journal_place  # noqa: F401 - a fixture for the whole suite
from tests.postgres import postgres_database, postgres_server  # noqa: F401 - fixtures for the whole suite
from tests.suite_journal import skip_sqlite_only, suite_journal, suite_journal_server  # noqa: F401 - EFM_TEST_JOURNAL
from tests.tools import MACHINE, in_ci

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    assert REFERENCE.is_dir(), f"the shared reference folder is missing at {REFERENCE}"
    return REFERENCE


def pytest_configure(config: pytest.Config) -> None:
    """Every dev PKI the suite makes (hundreds of sandboxes, in this process and the ones it starts) takes its
    organisations' keys from one pool (gateway/devcerts.py), instead of a dozen new RSA keys per sandbox."""
    os.environ.setdefault("EFM_DEV_KEY_POOL", str(Path(tempfile.gettempdir()) / f"efm-test-dev-keys-{os.getuid()}"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (in their own order), then the rest: spread over the workers (pytest -n), the minutes-long
    runs start together at once and the short tests fill the gaps, instead of one of them starting last and
    holding up the end of the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    skip_sqlite_only(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI, a skip is a failure unless it says it is about the machine (tests/tools.py): .ci/run installs
    every tool the tests use, so any other skip would hide a test that did not run."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MACHINE in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where every tool is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """EFM_TEST_CPU_LOG=<file>: each test's CPU seconds (this process, and the daemons, sandboxes and commands it
    started and waited for) appended to the file, to find what the suite's time goes to on a 2-core machine."""
    target = os.environ.get("EFM_TEST_CPU_LOG")
    if not target:
        yield
        return
    import resource

    def used() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    before = used()
    yield
    with open(target, "a") as log:
        log.write(f"{used() - before:9.2f} {item.nodeid}\n")

"""The PostgreSQL fixture itself: without PostgreSQL a test that needs it is a skip that names the package, and
under CI=true (where .ci/run installs it) a failure, never a skip that would read as a pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_NEEDS_POSTGRES = """
from tests.postgres import postgres_server  # noqa: F401


def test_needs_postgres(postgres_server):
    pass
"""


def _run_without_postgres(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs_postgres.py").write_text(_NEEDS_POSTGRES)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "EFM_TEST_POSTGRES_BIN": str(tmp_path / "no-postgres")}
    environment.pop("CI", None)
    if ci:
        environment["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(tmp_path / "test_needs_postgres.py")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_a_missing_postgresql_is_a_skip_for_a_developer_and_a_failure_in_ci(tmp_path, ci):
    result = _run_without_postgres(tmp_path, ci)
    assert "PostgreSQL is not installed" in result.stdout
    assert "Debian's postgresql" in result.stdout
    if ci:
        assert result.returncode == 1, result.stdout
        assert "CI must have every tool the tests use" in result.stdout
        assert "1 error" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        assert "1 skipped" in result.stdout

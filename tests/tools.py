"""Tools some tests drive from outside Python (Chromium, systemd-analyze, promtool, keytool, mount, setpriv).

In CI (CI=true) `.ci/run` installs every one of them, so a missing tool fails the test there: a skipped test
would read as a passing one. Elsewhere a missing tool is a skip that names the package to install.
A skip about the machine itself (not root, no tmpfs mount allowed) stays a skip in CI too, and says so:
`machine_skip` marks it, and tests/conftest.py turns every other skip under CI into a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

MACHINE = "about this machine, not a missing tool:"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_tool(*names: str, package: str) -> str:
    """The path of the first of `names` on PATH; without one, a failure under CI and a skip elsewhere."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"{' or '.join(names)} is not installed (Debian's {package}; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"CI must have every tool the tests use: {message}")
    pytest.skip(message)


def machine_skip(reason: str) -> NoReturn:
    """Skip for a reason of the machine's (its user, its kernel's rules), not for a tool it lacks."""
    pytest.skip(f"{MACHINE} {reason}")


def machine_reason(reason: str) -> str:
    """`reason` marked as the machine's, for skipif(reason=...)."""
    return f"{MACHINE} {reason}"

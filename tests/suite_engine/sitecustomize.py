"""Run by every Python the tests start while EFM_TEST_JOURNAL=postgresql (tests/suite_journal.py puts this folder
first on PYTHONPATH): the gateway's configurations name a journal on the tests' PostgreSQL (efm_suite_journal.py).
Then any other sitecustomize on the path runs, as it would have without this one."""

from __future__ import annotations

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _install() -> None:
    import efm_suite_journal

    if efm_suite_journal.on_postgres() and os.environ.get(efm_suite_journal.HOST):
        efm_suite_journal.install_in_child()


def _chain() -> None:
    from importlib.machinery import PathFinder

    others = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    spec = PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    import gateway  # noqa: F401 - only where the gateway is importable (not every child Python is a gateway)
except ImportError:
    pass
else:
    _install()
_chain()

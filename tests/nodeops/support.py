"""A configuration on either engine for the operators' tests: the SQLite file in folders.state, or the tests'
PostgreSQL through journal.url with the password in a file beside config.yaml."""

from __future__ import annotations

from pathlib import Path

from tests.foundation.drops import write_config
from tests.journal_places import JournalPlace
from tests.nodes.support import journal_yaml


def config_on(place: JournalPlace, folder: Path, extra: str = "", **intake: object) -> Path:
    """config.yaml in `folder` whose journal is `place`'s (for SQLite, `place` is pointed at the config's file)."""
    config = write_config(folder, **intake)
    state = folder / "var" / "state"
    state.mkdir(parents=True, exist_ok=True)
    text = config.read_text()
    if place.database is not None:
        text += journal_yaml(place.database, folder)
    else:
        place.sqlite_path = state / "journal.sqlite"
    config.write_text(text + extra)
    return config

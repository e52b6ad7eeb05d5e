"""`efm-gateway check-config`: the checks the daemon makes at start, as a list of findings.

Each check looks at one part of the configuration and returns findings (level, key, text); a check that
raises a GatewayError becomes an error finding under its key, and the checks after it are not run (they
build on it). The text output and `--json` print the same findings, so a new check (an online one, say)
is one more entry in the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.folders import prepare_folders

LEVELS = ("ok", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """One result: `level` ok, warning or error; `key` the config key or section it is about; `text` the
    sentence an operator reads (it names its subject itself)."""

    level: str
    key: str
    text: str
    online: bool = False  # from check-config --online: an endpoint's answer, not the configuration itself

    def line(self) -> str:
        """As the text output shows it (an error goes to stderr with the program's name instead)."""
        return f"warning: {self.text}" if self.level == "warning" else self.text

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "online" or value}


Check = Callable[[Config], Iterable[Finding]]


def folders_check(config: Config) -> list[Finding]:
    prepare_folders(config)
    return []


def keystore_check(now: datetime) -> Check:
    def check(config: Config) -> list[Finding]:
        if not config.keystore.configured:
            if config.network_configured:
                return [Finding("error", "keystore", "keystore is missing; the network section needs the "
                                "organisation's certificate")]
            return []
        from gateway.credentials import load_identity
        from gateway.ops.checks import keystore_warnings

        identity = load_identity(config, now)
        findings = [Finding("warning", "keystore", warning) for warning in keystore_warnings(config, now)]
        findings.append(Finding("ok", "keystore", f"keystore: OK (organisation {identity.orgnr}, valid until "
                                f"{identity.certificate.not_valid_after_utc:%Y-%m-%d})"))
        return findings

    return check


def secrets_check(config: Config) -> list[Finding]:
    """The channels' password files, read as the daemon will read them."""
    from gateway.channels.kind import read_secret, secret_paths
    from gateway.channels.registry import KINDS

    for key, block in config.channels.enabled().items():
        for dotted, path in secret_paths(KINDS[key], block):
            read_secret(path, dotted)
    return []


def journal_check(config: Config) -> list[Finding]:
    """The PostgreSQL journal's password file, read as the daemon reads it (nothing to check for the SQLite file)."""
    journal = config.journal
    if journal.url is None:
        return []
    from urllib.parse import parse_qs, urlsplit

    from gateway.journal.postgres_engine import psycopg

    if psycopg is None:
        return [Finding("error", "journal.url", "journal.url names PostgreSQL, but psycopg is not installed; install "
                        "efm-gateway[postgresql] (psycopg and psycopg_pool)")]
    parts = urlsplit(journal.url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["the local socket"])[0]
    where = f"database {parts.path.lstrip('/') or '(the user name)'} on {host} as {parts.username or '(this user)'}"
    if journal.password_file is None:
        return [Finding("ok", "journal", f"journal: PostgreSQL, {where}; no journal.password_file: libpq's own "
                        "(~/.pgpass, a peer login) is used")]
    password = journal.password()
    findings = []
    if not password:
        findings.append(Finding("warning", "journal.password_file",
                                f"journal.password_file {journal.password_file}: its first line is empty"))
    try:
        mode = journal.password_file.stat().st_mode & 0o077
    except OSError:
        mode = 0
    if mode:
        findings.append(Finding("warning", "journal.password_file", f"journal.password_file "
                                f"{journal.password_file} can be read by others than its owner; chmod 600 it"))
    findings.append(Finding("ok", "journal", f"journal: PostgreSQL, {where}; the password file is readable"))
    return findings


def reachability_check(config: Config) -> list[Finding]:
    if not config.network_configured:
        return []
    from gateway.ops.checks import outbound_lines, reachability_warnings

    findings = [Finding("ok", "network.proxy", line) for line in outbound_lines(config)]
    return findings + [Finding("warning", "network", warning) for warning in reachability_warnings(config)]


def online_findings(config: Config, clock: Clock) -> list[Finding]:
    """`check-config --online`: every endpoint asked once with its real authentication (gateway.ops.online)."""
    if not config.keystore.configured:
        return []
    from gateway.credentials import authorisation_for, load_identity, load_trust
    from gateway.ops.online import online_checks
    from gateway.outbound_http import outbound_client

    identity = load_identity(config, clock.now())
    with outbound_client(config, config.network.http_timeout_seconds) as http:
        auth = authorisation_for(config, identity, http, clock)
        results = online_checks(config, identity, load_trust(config), auth, http, clock)
    return [Finding(result.level, result.key, f"{result.key}: {result.text}", online=True) for result in results]


def journal_online_findings(config: Config) -> list[Finding]:
    """`check-config --online` with journal.url: the database connected to, its schema version read."""
    if config.journal.url is None:
        return []
    from gateway.ops.online import journal_database

    result = journal_database(config)
    return [Finding(result.level, result.key, f"{result.key}: {result.text}", online=True)]


def summary(config: Config) -> Finding:
    return Finding("ok", "config", f"{config.source}: OK (organisation {config.organisation.orgnr}, "
                   f"outbox {config.folders.outbox})")


def run_checks(config: Config, checks: Iterable[tuple[str, Check]]) -> list[Finding]:
    """Every check in order until one finds an error; then the summary when none did."""
    findings: list[Finding] = []
    for key, check in checks:
        try:
            findings.extend(check(config))
        except GatewayError as exc:
            findings.append(Finding("error", key, str(exc)))
        if any(finding.level == "error" for finding in findings):
            return findings
    findings.append(summary(config))
    return findings


def document(config_path: str, findings: list[Finding]) -> dict[str, Any]:
    """check-config's --json document."""
    return {
        "config": config_path,
        "ok": not any(finding.level == "error" for finding in findings),
        "results": [finding.as_json() for finding in findings],
    }

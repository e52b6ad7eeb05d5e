"""The operator's command line: help texts, the version, where config.yaml is looked for, `validate` (a dry
run on a drop) and `status`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.tools import machine_skip, require_tool

from .drops import write_config
from .process import without_dac_command, without_dac_problem

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_drops"
MESSAGE_ID = "7d3c1a52-5b0e-4f5e-9a3b-2c1d0e9f8a76"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _flat_text(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


# ---- help -----------------------------------------------------------------------------------------


def test_top_level_help_explains_the_gateway_and_lists_the_commands(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    text = _flat_text(result.stdout)
    assert "eFormidling" in text
    for word in ("outbox", "status files", "inbox"):
        assert word in text
    for command in ("run", "check-config", "validate", "status", "sandbox", "dev-certs"):
        assert command in text


def test_the_installed_efm_gateway_script_answers_help(tmp_path):
    script = require_tool("efm-gateway", package="efm-gateway itself (pip install -e ., as .ci/run does)")
    result = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: efm-gateway" in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("run", ["daemon", "outbox", "status files", "inbox", "--config"]),
        ("check-config", ["config.yaml", "folder", "Exit status 0", "--config"]),
        ("validate", ["drop", "sidecar", "accepted", "Nothing is moved", "--config"]),
        ("status", ["messageId", "--open", "--failed", "--limit", "--config"]),
        ("sandbox", ["loopback", "service registry", "--port"]),
        ("dev-certs", ["test", "PKCS#12", "never for production"]),
    ],
)
def test_each_command_explains_itself(tmp_path, command, expected):
    result = _cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = _flat_text(result.stdout)
    assert text.startswith(f"usage: efm-gateway {command}")
    for word in expected:
        assert word in text, f"{command} --help does not mention {word!r}:\n{result.stdout}"


def test_no_command_is_a_usage_error(tmp_path):
    result = _cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: efm-gateway" in result.stderr
    assert result.stdout == ""


def test_the_version_is_the_installed_packages(tmp_path):
    result = _cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"efm-gateway {version('efm-gateway')}\n"


# ---- which config.yaml --------------------------------------------------------------------------


def _cli_env(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "EFM_GATEWAY_CONFIG"}
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_without_config_the_variable_names_it(tmp_path):
    config = write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _cli_env("check-config", cwd=elsewhere, EFM_GATEWAY_CONFIG=str(config))
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK (organisation" in result.stdout
    # --config wins over the variable.
    other = write_config(elsewhere)
    result = _cli_env("check-config", "--config", str(other), cwd=tmp_path, EFM_GATEWAY_CONFIG=str(config))
    assert f"{other}: OK (organisation" in result.stdout


def test_without_config_or_variable_it_is_the_system_file_and_says_so(tmp_path):
    if Path("/etc/efm-gateway/config.yaml").exists():
        machine_skip("this host has an efm-gateway installed in /etc/efm-gateway: the default is taken")
    write_config(tmp_path)  # a config.yaml in the working folder is not taken by chance
    result = _cli_env("status", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "efm-gateway: /etc/efm-gateway/config.yaml (the default: no --config given and $EFM_GATEWAY_CONFIG is not "
        "set): no such file; pass --config with the path of your config.yaml, or set EFM_GATEWAY_CONFIG to it"
    ]


def test_a_config_that_cannot_be_read_is_named_with_where_it_came_from(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    result = _cli_env("status", cwd=tmp_path, EFM_GATEWAY_CONFIG=str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"efm-gateway: {missing} ($EFM_GATEWAY_CONFIG): no such file; set "
                                     "EFM_GATEWAY_CONFIG to your config.yaml, or pass --config")
    result = _cli_env("validate", "--config", str(tmp_path), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"efm-gateway: {tmp_path} (--config): it is a folder, not a file; check the "
                                     "path given to --config")
    problem = without_dac_problem()
    if problem:
        pytest.skip(problem)
    config = write_config(tmp_path)
    config.chmod(0o000)
    command = without_dac_command([sys.executable, "-m", "gateway.cli", "status", "--config", str(config)])
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"efm-gateway: {config} (--config): cannot read it (permission denied for user root); run the command as "
        "the service's user (sudo -u efm-gateway efm-gateway ...) or as root"
    )


# ---- validate -------------------------------------------------------------------------------------


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A copy of sample_drops/ and a config, so nothing in the repository can change."""
    copy = tmp_path / "drops"
    shutil.copytree(SAMPLES, copy)
    write_config(tmp_path)
    return copy


def _snapshot(root: Path) -> dict[str, tuple[bytes | None, int, float]]:
    """Every entry under `root` with its content, mode and mtime."""
    entries: dict[str, tuple[bytes | None, int, float]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        entries[str(path.relative_to(root))] = (content, info.st_mode, info.st_mtime)
    return entries


@pytest.mark.parametrize("drop", ["brev-til-sandkasse-peer", "flat/melding-flat.xml"])
def test_validate_accepts_the_good_samples_and_leaves_them_alone(tmp_path, samples, drop):
    before = _snapshot(samples)
    result = _cli("validate", "--config", str(tmp_path / "config.yaml"), str(samples / drop), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ACCEPTED:")
    assert "OPPRETTET" in result.stdout
    assert "to 910075918" in result.stdout
    assert _snapshot(samples) == before
    # A dry run creates none of the daemon's folders and no journal.
    assert not (tmp_path / "var").exists()


def test_validate_names_the_documents_and_the_chosen_process(tmp_path, samples):
    result = _cli(
        "validate", "--config", str(tmp_path / "config.yaml"), str(samples / "flat" / "melding-flat.xml"), cwd=tmp_path
    )
    assert "documents: melding-flat.pdf" in result.stdout
    assert "planByggOgGeodata" in result.stdout


def test_validate_rejects_the_invalid_sample_with_both_reasons(tmp_path, samples):
    before = _snapshot(samples)
    result = _cli(
        "validate", "--config", str(tmp_path / "config.yaml"), str(samples / "ugyldig-mottaker"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stdout.startswith("REJECTED:")
    reasons = [line for line in result.stdout.splitlines() if line.startswith("  - ")]
    assert len(reasons) == 2, result.stdout
    assert any("<receiver>" in r and "910075919" in r and "check digit" in r for r in reasons), reasons
    assert any("'brev.pdf' is listed but not in the drop" in r for r in reasons), reasons
    assert _snapshot(samples) == before
    assert not (tmp_path / "var").exists()


def test_validate_checks_a_flat_drops_size_and_hash(tmp_path, samples):
    (samples / "flat" / "melding-flat.pdf").write_bytes(b"%PDF-1.4 something else entirely")
    result = _cli(
        "validate", "--config", str(tmp_path / "config.yaml"), str(samples / "flat" / "melding-flat.xml"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "'melding-flat.pdf' is" in result.stdout and "bytes" in result.stdout


def test_validate_a_path_that_does_not_exist(tmp_path, samples):
    result = _cli("validate", "--config", str(tmp_path / "config.yaml"), str(samples / "nothing-here"), cwd=tmp_path)
    assert result.returncode == 3  # not found
    assert "no such file or folder" in result.stderr and result.stdout == ""


# ---- status ---------------------------------------------------------------------------------------


def _drop_samples(h, staging: Path) -> None:
    """Drop the three samples as an archive system would (folders by rename, flat files sidecar last),
    and run intake past the incomplete timeout: a folder with a listed file missing waits that long."""
    outbox = h.outbox
    staging.mkdir(exist_ok=True)
    for name in ("brev-til-sandkasse-peer", "ugyldig-mottaker"):
        shutil.copytree(SAMPLES / name, staging / name)
        os.rename(staging / name, outbox / name)
    shutil.copy2(SAMPLES / "flat" / "melding-flat.pdf", outbox / "melding-flat.pdf")
    shutil.copy2(SAMPLES / "flat" / "melding-flat.xml", staging / "melding-flat.xml")
    os.rename(staging / "melding-flat.xml", outbox / "melding-flat.xml")
    h.run(times=3, advance=h.config.intake.incomplete_timeout_seconds)
    assert os.listdir(outbox) == []


def test_status_without_a_journal_says_so(tmp_path):
    config = write_config(tmp_path)
    result = _cli("status", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3  # not found
    assert "no journal yet" in result.stderr and result.stdout == ""


def test_status_lists_messages_and_shows_one_messages_history(tmp_path, harness):
    h = harness(quiet_period_seconds=0)
    _drop_samples(h, tmp_path / "staging")
    config = str(h.config.source)
    records = {record.drop_name: record for record in h.journal.listing()}
    assert set(records) == {"brev-til-sandkasse-peer", "ugyldig-mottaker", "melding-flat"}

    listing = _cli("status", "--config", config, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for drop_name, record in records.items():
        line = next(line for line in listing.stdout.splitlines() if line.startswith(record.message_id))
        assert drop_name in line
        assert ("FEIL" if drop_name == "ugyldig-mottaker" else "OPPRETTET") in line
    assert "accepted 2" in listing.stdout and "rejected 1" in listing.stdout

    good = records["brev-til-sandkasse-peer"]
    history = _cli("status", "--config", config, good.message_id.upper(), cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert f"message {good.message_id}" in history.stdout
    assert "drop brev-til-sandkasse-peer" in history.stdout
    assert "phase accepted" in history.stdout
    assert "OPPRETTET" in history.stdout
    assert "the drop was accepted" in history.stdout


def test_status_failed_lists_only_the_rejected_drop_with_its_errors(tmp_path, harness):
    h = harness(quiet_period_seconds=0)
    _drop_samples(h, tmp_path / "staging")
    config = str(h.config.source)
    rejected = next(r for r in h.journal.listing() if r.drop_name == "ugyldig-mottaker")

    failed = _cli("status", "--config", config, "--failed", cwd=tmp_path)
    assert failed.returncode == 0, failed.stderr
    message_lines = [line for line in failed.stdout.splitlines() if not line.startswith(("totals:", "MESSAGE "))]
    assert len(message_lines) == 1, failed.stdout
    assert message_lines[0].startswith(rejected.message_id)
    assert "ugyldig-mottaker" in message_lines[0] and "rejected" in message_lines[0]

    open_only = _cli("status", "--config", config, "--open", cwd=tmp_path)
    assert "ugyldig-mottaker" not in open_only.stdout
    assert "brev-til-sandkasse-peer" in open_only.stdout and "melding-flat" in open_only.stdout

    detail = _cli("status", "--config", config, rejected.message_id, cwd=tmp_path)
    assert "FEIL" in detail.stdout
    assert "error:" in detail.stdout and "check digit" in detail.stdout
    assert "'brev.pdf' is listed but not in the drop" in detail.stdout


def test_status_of_an_unknown_message(tmp_path, harness):
    h = harness(quiet_period_seconds=0)
    h.run()
    result = _cli("status", "--config", str(h.config.source), MESSAGE_ID, cwd=tmp_path)
    assert result.returncode == 3  # not found
    assert result.stderr == f"efm-gateway: no message {MESSAGE_ID} in the journal\n" and result.stdout == ""

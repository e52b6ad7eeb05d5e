"""config.yaml is checked at start: every problem is one line naming the key and the fix."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.folders import filesystem_type, intake_uses_polling, prepare_folders
from tests.tools import machine_reason, machine_skip

REPO = Path(__file__).resolve().parents[2]
FOLDER_KEYS = ("outbox", "status", "inbox", "failed", "sent", "state")
GOOD = {
    "organisation": {"orgnr": "991825827", "name": "Test kommune"},
    "folders": {"create_missing": True, **{key: f"var/{key}" for key in FOLDER_KEYS}},
    "intake": {"mode": "auto"},
}


def _config_file(folder: Path, settings: dict | None = None, text: str | None = None) -> Path:
    path = folder / "config.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(settings or GOOD, sort_keys=False))
    return path


def _problem(folder: Path, change=None, text: str | None = None) -> str:
    """The one-line ConfigError for GOOD changed by `change` (or for `text`), from load and folder checks."""
    settings = copy.deepcopy(GOOD)
    if change is not None:
        change(settings)
    path = _config_file(folder, settings, text)
    with pytest.raises(ConfigError) as caught:
        prepare_folders(load_config(path))
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# ---- keys and values ----------------------------------------------------------------------------


def test_the_good_config_loads_with_folders_relative_to_the_config_file(tmp_path):
    config = load_config(_config_file(tmp_path))
    prepare_folders(config)
    assert config.folders.outbox == tmp_path / "var" / "outbox"
    assert config.folders.outbox.is_dir()
    assert config.folders.work_area.is_dir()
    assert config.organisation.orgnr == "991825827"


def test_the_shipped_config_yaml_is_valid():
    config = load_config(REPO / "config.yaml")
    assert config.sandbox.enabled
    assert config.intake.mode == "auto"


def test_unknown_top_level_key_is_named_with_the_known_sections(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(colour="blue"))
    assert "unknown key 'colour'" in message
    for section in ("organisation", "folders", "intake", "retention", "network", "sandbox"):
        assert section in message


def test_unknown_key_inside_a_section_is_named_with_the_known_keys(tmp_path):
    message = _problem(tmp_path, lambda s: s["folders"].update(outbx="var/x"))
    assert "folders.outbx" in message
    for key in (*FOLDER_KEYS, "create_missing"):
        assert f"folders.{key}" in message
    assert "spelling" in message


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("intake", "scan_interval_seconds", "five", "intake.scan_interval_seconds must be a number, not 'five'"),
        ("intake", "max_drops_per_scan", 2.5, "intake.max_drops_per_scan must be a whole number"),
        ("intake", "max_drops_per_scan", True, "intake.max_drops_per_scan must be a whole number"),
        ("folders", "create_missing", 1, "folders.create_missing must be true or false, not 1"),
        ("folders", "create_missing", "yes please", "folders.create_missing must be true or false"),
        ("folders", "outbox", ["var/a", "var/b"], "folders.outbox must be a folder path"),
        ("folders", "outbox", 17, "folders.outbox must be a folder path"),
        ("organisation", "name", ["a"], "organisation.name must be text"),
        ("retention", "sent_days", -1, "retention.sent_days must be greater than 0"),
        ("intake", "scan_interval_seconds", 0, "intake.scan_interval_seconds must be greater than 0"),
        ("network", "refusal_pause_seconds", 0, "network.refusal_pause_seconds must be greater than 0"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(tmp_path, section, key, value, expected):
    message = _problem(tmp_path, lambda s: s.setdefault(section, {}).update({key: value}))
    assert expected in message


def test_optional_text_settings_accept_text(tmp_path):
    # network.client_id and keystore.alias are `str | None`: text must be taken as it is.
    settings = copy.deepcopy(GOOD)
    settings["network"] = {"client_id": "abc-123"}
    settings["keystore"] = {"alias": "virksomhet"}
    config = load_config(_config_file(tmp_path, settings))
    assert config.network.client_id == "abc-123"
    assert config.keystore.alias == "virksomhet"


def test_empty_value_for_a_required_setting_says_to_fill_it_or_remove_it(tmp_path):
    message = _problem(tmp_path, lambda s: s["folders"].update(outbox=None))
    assert "folders.outbox is empty" in message


def test_bad_choice_lists_the_allowed_ones(tmp_path):
    message = _problem(tmp_path, lambda s: s["intake"].update(mode="sometimes"))
    assert "intake.mode" in message
    assert "'sometimes'" in message
    assert "auto, events, polling" in message


def test_log_level_is_a_choice_too(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(logging={"level": "verbose"}))
    assert "logging.level" in message and "DEBUG, INFO, WARNING, ERROR" in message


def test_wrong_orgnr_check_digit_is_refused(tmp_path):
    message = _problem(tmp_path, lambda s: s["organisation"].update(orgnr="991825828"))
    assert "organisation.orgnr" in message
    assert "check digit" in message
    assert "set your own organisation number" in message


def test_orgnr_of_the_wrong_length_is_refused(tmp_path):
    message = _problem(tmp_path, lambda s: s["organisation"].update(orgnr="12345"))
    assert "organisation.orgnr" in message and "9 digits" in message


def test_orgnr_written_as_a_yaml_number_is_accepted(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["organisation"]["orgnr"] = 991825827
    assert load_config(_config_file(tmp_path, settings)).organisation.orgnr == "991825827"


@pytest.mark.parametrize("section", ["organisation", "folders"])
def test_missing_required_section(tmp_path, section):
    message = _problem(tmp_path, lambda s: s.pop(section))
    assert f"section '{section}' is missing" in message


@pytest.mark.parametrize(("section", "key"), [("folders", "status"), ("organisation", "orgnr")])
def test_missing_required_key(tmp_path, section, key):
    message = _problem(tmp_path, lambda s: s[section].pop(key))
    assert f"{section}.{key} is required" in message


def test_section_that_is_not_a_mapping(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(intake=["events"]))
    assert "'intake' must be a mapping" in message


def test_invalid_yaml_names_the_line(tmp_path):
    text = (
        "organisation:\n"
        "  orgnr: '991825827'\n"
        "folders:\n"
        "  outbox: [var/outbox\n"  # line 4: the list is never closed
        "  status: var/status\n"
    )
    message = _problem(tmp_path, text=text)
    assert "not valid YAML" in message
    assert " line 5" in message or " line 4" in message


def test_a_file_that_is_not_a_mapping(tmp_path):
    message = _problem(tmp_path, text="- just\n- a list\n")
    assert "expected a mapping of sections" in message


def test_missing_config_file_says_to_pass_config(tmp_path):
    with pytest.raises(ConfigError, match="no such file; pass --config"):
        load_config(tmp_path / "nowhere.yaml")


def test_network_section_needs_the_registry_the_token_endpoint_and_a_channel(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(network={"token_url": "https://token.example"}))
    assert "network.service_registry_url is missing" in message and "and a channel" in message
    both = {"token_url": "https://token.example", "service_registry_url": "https://sr.example"}
    message = _problem(tmp_path, lambda s: s.update(network=both))
    assert ("a channel's URL (channels.dpo.broker_url, channels.dpv.correspondence_url, channels.dpi.corner2_url) "
            "is missing") in message


def test_any_one_channel_makes_a_network_and_the_legacy_broker_keys_fill_channels_dpo(tmp_path):
    network = {"token_url": "https://token.example", "service_registry_url": "https://sr.example",
               "altinn_exchange_url": "https://altinn.example/authentication/api/v1/exchange/maskinporten"}
    settings = copy.deepcopy(GOOD)
    settings.update(network=network, channels={"dpv": {"correspondence_url": "https://c.example/api"}})
    config = load_config(_config_file(tmp_path, settings))
    assert config.network_configured and list(config.channels.enabled()) == ["dpv"]

    settings = copy.deepcopy(GOOD)
    settings.update(network={**network, "broker_url": "https://broker.example", "inbound_poll_seconds": 2})
    config = load_config(_config_file(tmp_path, settings))
    assert config.channels.dpo.broker_url == "https://broker.example"
    assert config.channels.dpo.inbound_poll_seconds == 2.0
    assert list(config.channels.enabled()) == ["dpo"]

    settings["channels"] = {"dpo": {"broker_url": "https://other.example", "enabled": False}}
    message = _problem(tmp_path, lambda s: s.update(settings))
    assert "network.broker_url and channels.dpo.broker_url are both set" in message


def test_channel_blocks_refuse_unknown_channels_keys_and_choices(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(channels={"dpx": {}}))
    assert "unknown key 'channels.dpx'" in message and "channels.dpv" in message
    message = _problem(tmp_path, lambda s: s.update(channels={"dpv": {"poll": 3}}))
    assert "unknown key 'channels.dpv.poll'" in message and "channels.dpv.status_poll_seconds" in message
    message = _problem(tmp_path, lambda s: s.update(channels={"dpv": {"notification_channel": "Post"}}))
    assert "channels.dpv.notification_channel is 'Post'" in message and "EmailAndSms" in message
    message = _problem(tmp_path, lambda s: s.update(channels={"dpv": {"correspondence_url": "ftp://x"}}))
    assert "channels.dpv.correspondence_url must be an http(s) URL" in message


def test_network_url_must_be_http(tmp_path):
    message = _problem(tmp_path, lambda s: s.update(network={"token_url": "ftp://token.example"}))
    assert "network.token_url must be an http(s) URL" in message


# ---- folders ------------------------------------------------------------------------------------


def test_missing_folder_without_create_missing_says_how_to_fix_it(tmp_path):
    message = _problem(tmp_path, lambda s: s["folders"].update(create_missing=False))
    assert "folders.outbox" in message
    assert "does not exist" in message
    assert "create it" in message
    assert "folders.create_missing: true" in message


def test_existing_folders_without_create_missing_are_fine(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["folders"]["create_missing"] = False
    for key in FOLDER_KEYS:
        (tmp_path / "var" / key).mkdir(parents=True)
    (tmp_path / "var" / "state" / "work").mkdir()
    prepare_folders(load_config(_config_file(tmp_path, settings)))


def test_a_folder_path_that_is_a_regular_file_is_refused(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "failed").write_text("not a folder")
    message = _problem(tmp_path)
    assert "folders.failed" in message
    assert "is not a folder" in message


def test_a_folder_that_cannot_be_created_names_the_key(tmp_path):
    # A regular file where a parent folder should be: mkdir fails for root too.
    (tmp_path / "blocker").write_text("a file")
    message = _problem(tmp_path, lambda s: s["folders"].update(inbox="blocker/inbox"))
    assert "folders.inbox" in message
    assert "cannot create" in message


@pytest.mark.skipif(
    os.geteuid() == 0, reason=machine_reason("root may write to any folder; see the regular-file test above")
)
def test_an_unwritable_folder_is_refused(tmp_path):
    settings = copy.deepcopy(GOOD)
    path = _config_file(tmp_path, settings)
    prepare_folders(load_config(path))
    status = tmp_path / "var" / "status"
    status.chmod(0o500)
    try:
        with pytest.raises(ConfigError) as caught:
            prepare_folders(load_config(path))
    finally:
        status.chmod(0o700)
    assert "folders.status" in str(caught.value)
    assert "not writable" in str(caught.value)


def test_folders_on_different_file_systems_are_refused_with_the_fix(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        machine_skip("no writable /dev/shm")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        machine_skip("/dev/shm and the test folder are on the same file system here")
    elsewhere = shm / f"efm-test-{uuid.uuid4().hex}"
    try:
        message = _problem(tmp_path, lambda s: s["folders"].update(failed=str(elsewhere / "failed")))
    finally:
        subprocess.run(["rm", "-rf", str(elsewhere)], check=False)
    assert "folders.failed" in message
    assert "folders.work" in message
    assert "different file systems" in message
    assert "atomic rename" in message
    assert "put them on one file system" in message


def test_a_work_folder_away_from_the_outbox_suggests_setting_folders_work(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        machine_skip("needs /dev/shm on another file system")
    elsewhere = shm / f"efm-test-{uuid.uuid4().hex}"
    try:
        message = _problem(tmp_path, lambda s: s["folders"].update(outbox=str(elsewhere / "outbox")))
    finally:
        subprocess.run(["rm", "-rf", str(elsewhere)], check=False)
    assert "folders.work" in message and "folders.outbox" in message
    assert "set folders.work" in message


# ---- check-config on the command line -------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_config_says_ok_and_exits_0(tmp_path):
    path = _config_file(tmp_path)
    result = _cli("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "991825827" in result.stdout


def test_check_config_on_a_bad_config_exits_2_with_one_line(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["intake"]["mode"] = "sometimes"
    path = _config_file(tmp_path, settings)
    result = _cli("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "intake.mode" in lines[0] and "auto, events, polling" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "OK" not in result.stdout


# ---- events or polling --------------------------------------------------------------------------


def _mounts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "mounts"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _config_with_outbox(tmp_path: Path, outbox: Path, mode: str = "auto"):
    settings = copy.deepcopy(GOOD)
    settings["folders"]["outbox"] = str(outbox)
    settings["intake"]["mode"] = mode
    return load_config(_config_file(tmp_path, settings))


@pytest.mark.parametrize("fs_type", ["nfs4", "nfs", "cifs", "smb3"])
def test_an_outbox_on_a_network_share_is_polled(tmp_path, fs_type):
    share = tmp_path / "share"
    mounts = _mounts(
        tmp_path, "/dev/vda / ext4 rw 0 0", f"server:/export {share} {fs_type} rw,relatime 0 0"
    )
    config = _config_with_outbox(tmp_path, share / "outbox")
    assert filesystem_type(share / "outbox", mounts) == fs_type
    polling, reason = intake_uses_polling(config, mounts)
    assert polling
    assert fs_type in reason


def test_an_outbox_on_a_local_disk_uses_events(tmp_path):
    share = tmp_path / "share"
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"server:/export {share} nfs4 rw 0 0")
    config = _config_with_outbox(tmp_path, tmp_path / "local" / "outbox")
    polling, reason = intake_uses_polling(config, mounts)
    assert not polling
    assert "ext4" in reason


def test_the_longest_mount_point_wins_and_a_prefix_is_not_a_parent(tmp_path):
    mounts = _mounts(
        tmp_path,
        "/dev/vda / ext4 rw 0 0",
        f"server:/a {tmp_path}/share nfs4 rw 0 0",
        f"/dev/vdb {tmp_path}/share/local xfs rw 0 0",
    )
    assert filesystem_type(tmp_path / "share" / "local" / "outbox", mounts) == "xfs"
    assert filesystem_type(tmp_path / "share" / "outbox", mounts) == "nfs4"
    # /share2 is not inside /share
    assert filesystem_type(tmp_path / "share2" / "outbox", mounts) == "ext4"


def test_a_mount_point_with_a_space_is_understood(tmp_path):
    mounts = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"//srv/arkiv {tmp_path}/delt\\040mappe cifs rw 0 0")
    assert filesystem_type(tmp_path / "delt mappe" / "outbox", mounts) == "cifs"


def test_an_unreadable_mount_table_means_events(tmp_path):
    config = _config_with_outbox(tmp_path, tmp_path / "outbox")
    assert filesystem_type(tmp_path / "outbox", tmp_path / "no-mounts") is None
    polling, reason = intake_uses_polling(config, tmp_path / "no-mounts")
    assert not polling
    assert "local file system" in reason


@pytest.mark.parametrize(("mode", "expected"), [("events", False), ("polling", True)])
def test_an_explicit_mode_wins_over_the_file_system(tmp_path, mode, expected):
    share = tmp_path / "share"
    nfs = _mounts(tmp_path, "/dev/vda / ext4 rw 0 0", f"server:/export {share} nfs4 rw 0 0")
    config = _config_with_outbox(tmp_path, share / "outbox" if mode == "events" else tmp_path / "outbox", mode)
    polling, reason = intake_uses_polling(config, nfs)
    assert polling is expected
    assert f"intake.mode is {mode}" in reason


def test_check_config_with_a_network_but_no_keystore_exits_2(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["network"] = {
        "service_registry_url": "https://registry.example",
        "token_url": "https://token.example",
        "altinn_exchange_url": "https://altinn.example/authentication/api/v1/exchange/maskinporten",
        "broker_url": "https://broker.example",
    }
    result = _cli("check-config", "--config", str(_config_file(tmp_path, settings)), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "keystore is missing" in lines[0]


def test_a_key_given_twice_is_refused(tmp_path):
    text = (
        "organisation:\n"
        "  orgnr: '991825827'\n"
        "folders:\n"
        "  create_missing: false\n"
        + "".join(f"  {key}: var/{key}\n" for key in FOLDER_KEYS)
        + "  create_missing: true\n"
    )
    message = _problem(tmp_path, text=text)
    assert "create_missing" in message
    assert "line 4" in message or "line 11" in message


def test_signing_services_map_a_signer_to_the_senders_it_signs_for_with_valid_numbers(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["trust"] = {"signing_services": {"974760673": ["991825827", "910077473"]}}
    config = load_config(_config_file(tmp_path, settings))
    assert config.trust.signing_services == {"974760673": ("991825827", "910077473")}
    message = _problem(tmp_path, lambda s: s.update(trust={"signing_services": {"974760673": ["991825828"]}}))
    assert "trust.signing_services: 991825828" in message and "check digit" in message
    message = _problem(tmp_path, lambda s: s.update(trust={"signing_services": ["974760673"]}))
    assert "must map a signer's organisation number to a list of senders" in message


def test_the_gateways_own_folders_inside_state_are_made_even_without_create_missing(tmp_path):
    settings = copy.deepcopy(GOOD)
    settings["folders"] = {key: str(tmp_path / key) for key in FOLDER_KEYS}  # create_missing: false
    for key in FOLDER_KEYS:
        (tmp_path / key).mkdir()
    config = load_config(_config_file(tmp_path, settings))
    prepare_folders(config)
    assert (tmp_path / "state" / "work").is_dir() and (tmp_path / "state" / "inbox-staging").is_dir()
    (tmp_path / "outbox").rmdir()  # the archive system's folders are never made for it
    with pytest.raises(ConfigError, match=r"folders\.outbox: the folder .* does not exist"):
        prepare_folders(config)

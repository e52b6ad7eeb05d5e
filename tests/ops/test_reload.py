"""SIGHUP reads config.yaml again: live settings take effect, a broken file is refused, a change that
needs a restart is named (log, STATUS=, /healthz)."""

from __future__ import annotations

import time

from tests.foundation.drops import make_folder_drop, write_config
from tests.foundation.process import wait_for
from tests.ops.support import NotifyListener, OpsDaemon, edit_config, healthz


def _daemon(tmp_path, notify=None, allowed_log=(), **intake):
    config = write_config(tmp_path, **intake)
    edit_config(config, ops={"enabled": True, "port": 0})
    return config, OpsDaemon(config, tmp_path / "daemon.log", notify, allowed_log=allowed_log).start()


def test_a_new_log_level_and_scan_interval_take_effect_without_a_restart(tmp_path):
    config, daemon = _daemon(tmp_path, mode="polling", scan_interval_seconds=3600)
    outbox = tmp_path / "var" / "outbox"
    try:
        base = daemon.endpoint()
        pid = daemon.process.pid
        # The intake thread's first scan runs at once, after the endpoint is named: a drop made before it
        # ends would be taken by it, not by the new interval.
        daemon.wait_log("efm-gateway is running")
        time.sleep(0.5)
        make_folder_drop(outbox, "first")
        time.sleep(2)
        assert (outbox / "first").exists(), "an hour's scan interval: nothing is taken yet"
        edit_config(config, intake={"scan_interval_seconds": 0.3}, logging={"level": "WARNING"})
        mark = len(daemon.text())
        daemon.hup()
        wait_for(lambda: not (outbox / "first").exists(), 15, message="the drop taken at the new interval")
        assert daemon.process.pid == pid and daemon.alive()
        _, report = healthz(base)
        assert report["workers"]["intake"]["interval_seconds"] == 0.3
        assert report["restart_needed"] == []
        # WARNING: the next accepted drop leaves no INFO line
        make_folder_drop(outbox, "second")
        wait_for(lambda: not (outbox / "second").exists(), 15, message="the second drop taken")
        time.sleep(0.5)
        after = daemon.text()[mark:]
        assert "accepted drop 'second'" not in after
        assert "accepted drop 'first'" not in after
        # and back to INFO: the lines come again
        edit_config(config, logging={"level": "INFO"})
        daemon.hup()
        daemon.wait_log("applied logging.level=INFO", after=mark)
        make_folder_drop(outbox, "third")
        daemon.wait_log("accepted drop 'third'", after=mark)
    finally:
        daemon.stop()


def test_a_config_that_no_longer_validates_is_refused_and_the_daemon_goes_on(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    config, daemon = _daemon(
        tmp_path, notify=listener, allowed_log=(r"reload refused.*intake\.scan_interval_secnds",)
    )
    outbox = tmp_path / "var" / "outbox"
    try:
        daemon.endpoint()
        good = config.read_text()
        config.write_text(good.replace("scan_interval_seconds", "scan_interval_secnds"))
        daemon.hup()
        daemon.wait_log("reload refused")
        line = next(line for line in daemon.text().splitlines() if "reload refused" in line)
        assert "unknown key 'intake.scan_interval_secnds'" in line
        assert "running on with the configuration loaded before" in line
        wait_for(lambda: "reload refused: " in (listener.last_status() or ""), 10, message="STATUS= names the refusal")
        make_folder_drop(outbox, "after-refusal")
        wait_for(lambda: not (outbox / "after-refusal").exists(), 15, message="intake goes on")
        assert daemon.alive()
        # a good file again clears the refusal (the last problem stays named as such)
        config.write_text(good)
        daemon.hup()
        daemon.wait_log("applied nothing changed")
        wait_for(lambda: "reload refused: " not in (listener.last_status() or "reload refused: "), 10,
                 message="STATUS= no longer says the reload is refused")
    finally:
        daemon.stop()
        listener.close()


def test_a_change_that_needs_a_restart_is_named_and_the_running_value_stays(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    config, daemon = _daemon(tmp_path, notify=listener)
    outbox = tmp_path / "var" / "outbox"
    elsewhere = tmp_path / "other-outbox"
    elsewhere.mkdir()
    try:
        base = daemon.endpoint()
        edit_config(config, folders={"outbox": str(elsewhere)}, intake={"quiet_period_seconds": 0.4})
        daemon.hup()
        daemon.wait_log("wait for a restart: folders.outbox")
        assert "applied intake.quiet_period_seconds=0.4" in daemon.text()
        wait_for(lambda: "restart needed for folders.outbox" in (listener.last_status() or ""), 10,
                 message="STATUS= names the restart")
        _, report = healthz(base)
        assert report["restart_needed"] == ["folders.outbox"]
        make_folder_drop(outbox, "still-here")  # the running outbox is still the one watched
        wait_for(lambda: not (outbox / "still-here").exists(), 15, message="the old outbox still taken")
    finally:
        daemon.stop()
        listener.close()


def test_a_new_job_interval_reschedules_the_job(tmp_path):
    config, daemon = _daemon(tmp_path)
    edit_config(config, retention={"purge_interval_minutes": 600})
    daemon.stop()
    daemon = OpsDaemon(config, tmp_path / "daemon.log").start()
    try:
        base = daemon.endpoint()
        time.sleep(1.5)
        _, report = healthz(base)
        assert report["workers"]["retention"]["seconds_since_beat"] > 1.4  # every 10 hours: not run yet
        edit_config(config, retention={"purge_interval_minutes": 0.005})  # every 0.3 s
        daemon.hup()
        daemon.wait_log("applied retention.purge_interval_minutes=0.005")
        time.sleep(1)
        _, report = healthz(base)
        assert report["workers"]["retention"]["interval_seconds"] == 0.3
        assert report["workers"]["retention"]["seconds_since_beat"] < 0.9
    finally:
        daemon.stop()


def test_a_new_channel_poll_interval_reschedules_its_job(tmp_path):
    from tests.dpo.network import A, SandboxProcess, gateway_config

    sandbox = SandboxProcess(tmp_path / "sandbox")
    root = tmp_path / "a"
    config = gateway_config(root, sandbox, A, ops={"enabled": True, "port": 0},
                            channels={"dpo": {"inbound_poll_seconds": 3600}})
    daemon = OpsDaemon(config, root / "daemon.log").start()
    try:
        base = daemon.endpoint()
        time.sleep(1.5)
        _, report = healthz(base)
        assert report["workers"]["inbound-DPO"]["seconds_since_beat"] > 1.4
        edit_config(config, channels={"dpo": {"inbound_poll_seconds": 0.3}})
        daemon.hup()
        daemon.wait_log("applied channels.dpo.inbound_poll_seconds=0.3")
        time.sleep(1.5)
        _, report = healthz(base)
        assert report["workers"]["inbound-DPO"]["interval_seconds"] == 0.3
        assert report["workers"]["inbound-DPO"]["seconds_since_beat"] < 1.2
    finally:
        daemon.stop()
        sandbox.stop()

"""The shipped Prometheus rules and Grafana dashboard (ops/): promtool accepts the rules and their unit
tests pass, the dashboard is valid JSON, and every expression in either names only metrics that a
running daemon exports on /metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.dpo.network import A, SandboxProcess, gateway_config
from tests.ops.promql_names import exported_names, metric_names, template_metric_names
from tests.ops.support import OpsDaemon

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "efm-gateway.rules.yml"
RULES_TESTS = Path(__file__).with_name("efm-gateway.rules.test.yml")
DASHBOARD = ROOT / "ops" / "grafana" / "efm-gateway.json"
# Made by Prometheus itself for every scrape target, not by the daemon.
PROMETHEUS_OWN = {"up"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    message = "promtool is missing (Debian's prometheus package has it: apt-get install prometheus; .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def rule_expressions() -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    found = {}
    for group in rules["groups"]:
        for index, rule in enumerate(group["rules"]):
            found[f"{rule.get('alert') or rule.get('record')} #{index}"] = rule["expr"]
    return found


def dashboard_expressions() -> dict[str, set[str]]:
    """Metric names by where they stand: each panel target and each template variable's query."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found[f"variable {variable['name']}"] = template_metric_names(query)
    return found


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_rules_fire_as_their_unit_tests_say():
    result = subprocess.run([promtool(), "test", "rules", RULES_TESTS.name], capture_output=True, text=True,
                            timeout=120, cwd=RULES_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {test["alertname"] for case in yaml.safe_load(RULES_TESTS.read_text())["tests"]
              for test in case["alert_rule_test"]}
    assert {"EfmGatewayMessagesInFeil", "EfmGatewayUnsentMessageTooOld", "EfmGatewayDiskUnderFloor",
            "EfmGatewayCertificateExpiresSoon", "EfmGatewayEndpointDown", "EfmGatewayWorkerLate"} <= tested


def test_the_rules_alert_on_what_an_operator_must_act_on():
    alerts = {name.split(" #")[0] for name in rule_expressions()}
    assert alerts == {
        "EfmGatewayDown", "EfmGatewayMessagesInFeil", "EfmGatewayUnsentMessageTooOld", "EfmGatewayInboxNotPickedUp",
        "EfmGatewayWorkerLate", "EfmGatewayDiskUnderFloor", "EfmGatewayCertificateExpiresSoon",
        "EfmGatewayEndpointDown",
    }


def test_the_dashboard_is_valid_json_with_a_query_in_every_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "efm-gateway" and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_the_name_reader_finds_metric_names_and_only_those():
    feil = rule_expressions()["EfmGatewayMessagesInFeil #1"]
    assert metric_names(feil) == {"efm_gateway_statuses_total"}
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, channel) (rate(a_bucket{instance=~"$instance"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert metric_names("b_seconds - time() < 30 * 86400") == {"b_seconds"}
    assert metric_names('c > on(instance) group_left(version) d{x="y or z"} offset 5m or vector(0)') == {"c", "d"}
    assert template_metric_names("label_values(efm_gateway_build_info, instance)") == {"efm_gateway_build_info"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """The names a daemon on the sandbox network (every channel configured) exports on /metrics."""
    root = tmp_path_factory.mktemp("monitoring")
    sandbox = SandboxProcess(root / "sandbox")
    try:
        config = gateway_config(root / "a", sandbox, A, ops={"enabled": True, "port": 0})
        daemon = OpsDaemon(config, root / "a" / "daemon.log").start()
        try:
            text = httpx.get(f"{daemon.endpoint()}/metrics", timeout=10).text
        finally:
            daemon.stop()
    finally:
        sandbox.stop()
    names = exported_names(text)
    assert "efm_gateway_build_info" in names and "process_cpu_seconds_total" in names
    return names


def test_every_rule_names_only_metrics_the_daemon_exports(exported):
    for where, expression in rule_expressions().items():
        names = metric_names(expression)
        assert names, where
        assert names - exported - PROMETHEUS_OWN == set(), where


def test_every_dashboard_query_names_only_metrics_the_daemon_exports(exported):
    found = dashboard_expressions()
    assert len(found) > 20
    for where, names in found.items():
        assert names, where
        assert names - exported == set(), where

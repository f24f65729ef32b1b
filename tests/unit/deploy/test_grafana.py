"""The Grafana files (deploy/grafana/): provisioning that compose mounts where Grafana reads
it, a dashboard on the provisioned data source, and PromQL that promtool accepts.
Whether the queried series exist is tests/e2e/test_dashboard_series.py's job."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql import selectors
from tests.unit.deploy.test_deploy_files import load_compose, promtool

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "meer-operations.json"
# Grafana's variables, as promtool needs them: plain durations.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def mounts(service: str) -> dict[Path, str]:
    """{host path: container path} of a compose service's bind mounts."""
    found = {}
    for volume in load_compose()["services"][service]["volumes"]:
        source, target, *_ = str(volume).split(":")
        if source.startswith("."):
            found[(ROOT / source).resolve()] = target
    return found


def test_compose_mounts_the_provisioning_and_the_dashboards() -> None:
    grafana = mounts("grafana")
    assert grafana[(GRAFANA / "provisioning").resolve()] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "meer.yml").read_text())["providers"]
    assert grafana[(GRAFANA / "dashboards").resolve()] == provider["options"]["path"]


def test_the_data_source_is_compose_prometheus_and_the_dashboard_uses_it() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090" in " ".join(load_compose()["services"]["prometheus"]["ports"][0].split(":")[1:])
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
            assert panel["targets"], panel["title"]


def test_panels_have_unique_ids_and_say_what_they_show() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert dashboard()["uid"] and dashboard()["time"]["from"] == "now/d", "default view: today so far"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["description"], panel["title"]


def test_the_dashboard_shows_what_ops_must_see_at_a_glance() -> None:
    names = {s.name for _, expression in targets() for s in selectors(expression)}
    assert {
        "meer_mailer_due_backlog",
        "meer_mailer_oldest_due_seconds",
        "meer_mailer_mails_total",
        "meer_tracking_hits_total",
        "meer_events_handled_total",
        "meer_outbox_backlog",
        "meer_http_requests_total",
        "meer_http_request_seconds_bucket",
    } <= names


def test_promtool_accepts_every_panel_query(tmp_path: Path) -> None:
    rules = []
    for index, (title, expression) in enumerate(targets()):
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        assert "$" not in expression, f"{title}: a Grafana variable promtool does not know: {expression}"
        rules.append({"record": f"panel:{index}", "expr": expression})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted((GRAFANA / "provisioning").rglob("*.yml")), ids=lambda p: p.name)
def test_provisioning_files_are_version_1(path: Path) -> None:
    assert yaml.safe_load(path.read_text())["apiVersion"] == 1


def test_no_grafana_secret_in_the_repository() -> None:
    environment = load_compose()["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", environment["GF_SECURITY_ADMIN_PASSWORD"])

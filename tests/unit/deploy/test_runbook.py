"""deploy/RUNBOOK.md has one entry per alert in deploy/prometheus/alerts.yml, each saying what
it means, how to confirm it and what to do, and its PromQL is valid (promtool)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.promql import selectors
from tests.unit.deploy.test_deploy_files import alert_rules, promtool

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "deploy" / "RUNBOOK.md"
PARTS = ("**What it means.**", "**Confirm.**", "**What to do.**")


def entries() -> dict[str, str]:
    """{alert name: its entry's text} from the `## Name` sections."""
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]
    return {section.split("\n", 1)[0].strip(): section for section in sections}


def runbook_queries() -> list[str]:
    """The PromQL of the runbook's ```promql blocks."""
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", RUNBOOK.read_text(), flags=re.DOTALL)]


def test_every_alert_has_an_entry_and_every_entry_an_alert() -> None:
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts, "no alerts found"
    assert set(entries()) == alerts, (
        f"no entry for {sorted(alerts - set(entries()))}; no alert for {sorted(set(entries()) - alerts)}"
    )


@pytest.mark.parametrize("alert", sorted(rule["alert"] for rule in alert_rules()))
def test_entry_says_what_it_means_how_to_confirm_and_what_to_do(alert: str) -> None:
    entry = entries().get(alert, "")
    positions = [entry.find(part) for part in PARTS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), f"{alert}: needs {PARTS} in order"
    confirm = entry[positions[1] : positions[2]]
    assert "```promql" in confirm, f"{alert}: confirm with a query"
    assert len(entry[positions[2] :].split()) >= 20, f"{alert}: say what to do"


def test_runbook_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = runbook_queries()
    assert len(queries) >= len(alert_rules())
    for query in queries:
        assert selectors(query), query
    path = tmp_path / "runbook.yml"
    rules = [{"record": f"runbook:{index}", "expr": query} for index, query in enumerate(queries)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbook", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_points_at_the_runbook() -> None:
    for rule in alert_rules():
        assert "RUNBOOK.md" in rule["annotations"].get("runbook_url", ""), rule["alert"]

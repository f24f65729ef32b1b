"""Every series the Grafana dashboard, the alert rules and the runbook query is one the
services really export: after the walking-skeleton flow (enrol → day-1 mail → pixel open → coaching), each
service's /metrics is scraped and every selector in every PromQL expression must match a
sample there. Selectors that only see data when something goes wrong (a failed mail, a 5xx,
a dead letter) must at least name a metric some service declares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.stack import HOST, WORKER_METRICS_PORTS
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    MAIL_CLIENT,
    MAILER,
    TRACKING,
    add_coach,
    create_organisation,
    enrol_starting_now,
    eventually,
    mails_to,
    raw_mail,
)
from tests.support.promql import Selector, selectors

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "deploy" / "RUNBOOK.md"
SERVICES = {
    "enrolment": ENROLMENT,
    "mailer": MAILER,
    "tracking": TRACKING,
    "coaching": COACHING,
    # Tracking's hit processor has no API; it serves /metrics alone (opens judged, held opens).
    "tracking-hit-processor": f"http://{HOST}:{WORKER_METRICS_PORTS['tracking-hit-processor'][1]}",
}
PIXEL = re.compile(r'src="(http://[^"]+/o/[^"]+\.gif)"')

# Made by Prometheus itself, not by a service; and the target labels it adds at scrape time.
PROMETHEUS_MADE = {"up"}
TARGET_LABELS = frozenset({"job", "instance"})
# Selectors that see samples only when something fails, as {(metric, label): (values, why)}:
# a selector of that metric matching one of those values of that label (or any, for no label).
FAILURE_ONLY = {
    ("meer_mailer_mails_total", "outcome"): ({"failed", "retried"}, "a mail failed or was postponed"),
    ("meer_http_requests_total", "status"): ({"5.."}, "a server error"),
    ("meer_tracking_hits_total", "outcome"): ({"lost"}, "pixel hits neither PostgreSQL nor the journal took"),
    ("meer_events_dead_lettered_total", ""): (set(), "a dead letter (the counter is born at the first one)"),
}

Sample = tuple[str, dict[str, str]]


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL expression) of every dashboard panel target, alert rule and runbook query."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]
    for block in re.findall(r"```promql\n(.*?)```", RUNBOOK.read_text(), flags=re.DOTALL):
        yield "RUNBOOK.md", block.strip()


def failure_only(selector: Selector) -> str | None:
    """Why a selector sees samples only after a failure, or None."""
    for (name, label), (values, why) in FAILURE_ONLY.items():
        if selector.name == name and (
            not label or any(m.label == label and m.op in {"=", "=~"} and m.value in values for m in selector.matchers)
        ):
            return why
    return None


async def scrape(http: httpx.AsyncClient) -> tuple[list[Sample], set[str]]:
    """Every sample of every service, and every series name a service declares (HELP/TYPE),
    samples or not (a labelled counter has none before its first increment)."""
    samples: list[Sample] = []
    declared: set[str] = set()
    for name, url in SERVICES.items():
        response = await http.get(f"{url}/metrics")
        assert response.status_code == 200, f"{name}: {response.status_code}"
        for family in text_string_to_metric_families(response.text):
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
                "summary": ["", "_sum", "_count"],
            }.get(family.type, [""])
            declared |= {family.name + suffix for suffix in suffixes}
            samples += [(sample.name, dict(sample.labels)) for sample in family.samples]
    return samples, declared


async def walking_skeleton(http: httpx.AsyncClient) -> None:
    """Enrol a participant, wait for the day-1 mail, fetch its pixel as a mail client does."""
    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    _, email = await enrol_starting_now(http, organisation["id"], first_name="Ria")
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail")
    html = (await raw_mail(http, mails[0]["id"])).get_body(preferencelist=("html",)).get_content()
    pixel = PIXEL.search(html)
    assert pixel is not None
    assert (await http.get(pixel.group(1), headers=MAIL_CLIENT)).status_code == 200


def test_the_reader_sees_every_query_and_the_failure_allowances_are_used() -> None:
    found = list(queries())
    assert len([q for q in found if q[0].startswith("alerts.yml")]) >= 10
    assert len([q for q in found if q[0].endswith(".json") or ".json:" in q[0]]) >= 15
    assert len([q for q in found if q[0] == "RUNBOOK.md"]) >= 12
    every = [s for _, expression in found for s in selectors(expression)]
    for key, (_, why) in FAILURE_ONLY.items():
        assert any(failure_only(s) == why for s in every), f"unused allowance {key}: remove it"


async def test_every_series_the_dashboard_and_alerts_query_is_exported(http: httpx.AsyncClient) -> None:
    await walking_skeleton(http)
    wanted = [(where, s) for where, expression in queries() for s in selectors(expression)]
    assert wanted

    async def open_reached_coaching() -> bool:
        samples, _ = await scrape(http)
        return any(
            name == "meer_events_handled_total"
            and labels.get("service") == "coaching"
            and labels.get("type") == "mail.opened"
            for name, labels in samples
        )

    # The open flow is asynchronous (tracking → Kafka → coaching): wait for its last step.
    await eventually(open_reached_coaching, what="coaching to handle mail.opened")
    samples, declared = await scrape(http)
    missing = []
    for where, selector in wanted:
        if selector.name in PROMETHEUS_MADE:
            continue
        if any(selector.matches(name, labels, ignore=TARGET_LABELS) for name, labels in samples):
            continue
        if failure_only(selector) and selector.name in declared:
            continue
        matchers = ", ".join(f"{m.label}{m.op}{m.value!r}" for m in selector.matchers)
        missing.append(f"{where}: {selector.name}{{{matchers}}}")
    assert not missing, "queried, but no service exports it after the flow:\n" + "\n".join(missing)

"""Tracking on the real stack: a person's open and click reach coaching through Kafka; a
machine's open is recorded and flagged, not dropped; a repeat never counts twice."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from shared.events import Envelope, LinkClicked, MailOpened, Topic
from tests.e2e.conftest import (
    MAIL_CLIENT,
    TRACKING,
    db_fetch,
    enrol_and_receive_day_one,
    eventually,
    read_topic,
    sent_pixel_token,
    tracking_links,
    tracking_token,
)

pytestmark = pytest.mark.stack


async def engagement(event_type: str, participant_id: UUID) -> list[Envelope]:
    found = []
    for record in await read_topic(Topic.ENGAGEMENT):
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == event_type and envelope.participant_id == participant_id:
            found.append(envelope)
    return found


async def test_an_open_and_a_click_reach_coaching_through_kafka(http: httpx.AsyncClient) -> None:
    participant_id, message = await enrol_and_receive_day_one(http)
    links = tracking_links(message)
    assert {"o", "c"} <= set(links), links

    pixel = await http.get(links["o"], headers=MAIL_CLIENT)
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert "no-store" in pixel.headers["cache-control"]
    click = await http.get(links["c"], headers=MAIL_CLIENT)
    assert click.status_code == 302
    assert click.headers["location"] == "https://testdorp.example", "the organisation's website, as the mailer signed"

    opened = await eventually(lambda: engagement(MailOpened.TYPE, participant_id), what="mail.opened on Kafka")
    clicked = await eventually(lambda: engagement(LinkClicked.TYPE, participant_id), what="link.clicked on Kafka")
    assert len(opened) == 1 and len(clicked) == 1
    open_event, click_event = opened[0].parsed(), clicked[0].parsed()
    assert isinstance(open_event, MailOpened) and isinstance(click_event, LinkClicked)
    assert open_event.first_open and open_event.day == 1
    assert click_event.url == "https://testdorp.example" and click_event.delivery_id == open_event.delivery_id

    # Coaching consumed both from Kafka: its idempotency record holds each event id.
    for envelope in (opened[0], clicked[0]):

        async def handled(event_id: UUID = envelope.event_id) -> list[Any]:
            return await db_fetch("coaching", "SELECT 1 FROM processed_events WHERE event_id = $1", event_id)

        await eventually(handled, what=f"coaching to handle {envelope.type}")

    # Tracking kept the verdict and its signals, never who or where from.
    rows = await db_fetch(
        "tracking", "SELECT first_open, likely_automated FROM open_record WHERE participant_id = $1", participant_id
    )
    assert [(r["first_open"], r["likely_automated"]) for r in rows] == [(True, False)]
    columns = {
        r["column_name"]
        for r in await db_fetch(
            "tracking",
            "SELECT column_name FROM information_schema.columns WHERE table_name IN ('open_record', 'link_hit')",
        )
    }
    assert not {c for c in columns if "ip" in c.split("_") or "agent" in c or "address" in c}, columns


async def test_a_repeated_open_is_recorded_as_a_repeat_and_never_a_second_first(http: httpx.AsyncClient) -> None:
    delivery_id, participant_id = uuid4(), uuid4()
    url = f"{TRACKING}/o/{await sent_pixel_token(delivery_id=delivery_id, participant_id=participant_id)}.gif"
    for _ in range(3):
        assert (await http.get(url, headers=MAIL_CLIENT)).status_code == 200

    async def three_opens() -> list[Envelope] | None:
        found = await engagement(MailOpened.TYPE, participant_id)
        return found if len(found) == 3 else None

    opens = await eventually(three_opens, what="three mail.opened events")
    assert [e.payload["first_open"] for e in sorted(opens, key=lambda e: e.occurred_at)] == [True, False, False]
    rows = await db_fetch("tracking", "SELECT count(*) AS n FROM first_open WHERE delivery_id = $1", delivery_id)
    assert rows[0]["n"] == 1


async def test_a_machine_like_open_is_recorded_and_flagged(http: httpx.AsyncClient) -> None:
    # Apple's privacy proxy: every image fetched at delivery, with a bare user agent.
    proxied = uuid4()
    token = await sent_pixel_token(participant_id=proxied, sent_at=time.time())
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers={"User-Agent": "Mozilla/5.0"})).status_code == 200
    # A security gateway that follows everything in a mail.
    scanned = uuid4()
    token = await sent_pixel_token(participant_id=scanned)
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"}
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers=scanner)).status_code == 200
    # A person, an hour after the mail was sent.
    person = uuid4()
    token = await sent_pixel_token(participant_id=person)
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)).status_code == 200

    verdicts = {}
    for who in (proxied, scanned, person):

        async def opened(participant_id: UUID = who) -> list[Envelope]:
            return await engagement(MailOpened.TYPE, participant_id)

        (event,) = await eventually(opened, what="each open on Kafka")
        verdicts[who] = (event.payload["likely_automated"], set(event.payload["signals"]))
    assert verdicts[proxied] == (True, {"fast_after_send", "privacy_proxy_user_agent"})
    assert verdicts[scanned] == (True, {"scanner_user_agent"})
    assert verdicts[person] == (False, set())
    rows = await db_fetch(
        "tracking",
        "SELECT likely_automated, signals FROM open_record WHERE participant_id = $1 AND first_open",
        scanned,
    )
    assert [(r["likely_automated"], r["signals"]) for r in rows] == [(True, ["scanner_user_agent"])]


async def test_a_scanner_following_every_link_of_a_mail_is_flagged(http: httpx.AsyncClient) -> None:
    delivery_id, participant_id = uuid4(), uuid4()

    def link(kind: str, url: str | None = None) -> str:
        token = tracking_token(kind, delivery_id=delivery_id, participant_id=participant_id, url=url)
        return f"{TRACKING}/{kind[0]}/{token}"

    browser_like = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0"}
    assert (await http.get(link("unsubscribe"), headers=browser_like)).status_code == 200
    assert (await http.get(link("report"), headers=browser_like)).status_code == 200
    assert (await http.get(link("click", "https://example.org/les"), headers=browser_like)).status_code == 302

    (clicked,) = await eventually(lambda: engagement(LinkClicked.TYPE, participant_id), what="link.clicked")
    assert clicked.payload["likely_automated"] is True and "link_burst" in clicked.payload["signals"]
    assert not await engagement("participant.unsubscribe_requested", participant_id), "a GET never unsubscribes"

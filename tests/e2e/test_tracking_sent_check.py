"""An open counts only for a mail that was sent, on the real stack: a correctly signed token
for a mail tracking never saw sent (a leaked key) is held and never published, and a quick
open that beats its own mail.sent is published once mail.sent arrives."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
import pytest

from shared.events import Envelope, MailOpened, MailSent
from tests.e2e.conftest import (
    MAIL_CLIENT,
    TRACKING,
    db_count,
    events_on,
    eventually,
    publish,
    sent_pixel_token,
    tracking_token,
)

pytestmark = pytest.mark.stack


async def held(delivery_id: UUID) -> int:
    return await db_count("tracking", "SELECT count(*) FROM held_open WHERE delivery_id = $1", delivery_id)


async def recorded(delivery_id: UUID) -> int:
    return await db_count("tracking", "SELECT count(*) FROM open_record WHERE delivery_id = $1", delivery_id)


async def opens_published(participant_id: UUID) -> list[dict[str, object]]:
    return await events_on("meer.engagement", key=str(participant_id), event_type=MailOpened.TYPE)


async def opens_at_least(participant_id: UUID, count: int) -> list[dict[str, object]] | None:
    events = await opens_published(participant_id)
    return events if len(events) >= count else None


async def test_a_signed_token_for_a_mail_never_sent_fabricates_no_open(http: httpx.AsyncClient) -> None:
    # Someone with the signing key makes a token for a mail that was never sent, and one for
    # a real sent mail but another participant.
    fabricated, participant = uuid4(), uuid4()
    real = uuid4()
    await sent_pixel_token(delivery_id=real)  # sent to some participant, not this one
    for delivery_id in (fabricated, real):
        token = tracking_token("open", delivery_id=delivery_id, participant_id=participant)
        gif = await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif", "always the GIF"
        # The hit processor holds it aside, with no open and no event.
        await eventually(lambda held_id=delivery_id: held(held_id), what="the hit held")  # type: ignore[misc]
        assert await recorded(delivery_id) == 0
    assert await db_count("tracking", "SELECT count(*) FROM first_open WHERE delivery_id = $1", real) == 0
    assert not await opens_published(participant)


async def test_an_open_that_beats_its_mail_sent_is_published_once_mail_sent_arrives(http: httpx.AsyncClient) -> None:
    delivery_id, participant_id, org_id = uuid4(), uuid4(), uuid4()
    token = tracking_token("open", delivery_id=delivery_id, participant_id=participant_id, org_id=org_id)
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)).status_code == 200
    await eventually(lambda: held(delivery_id), what="the hit held")
    assert not await opens_published(participant_id)

    sent = MailSent(
        delivery_id=delivery_id,
        day=1,
        lesson_title="Dag 1",
        pack="meer-contact",
        pack_version="1",
        message_id=f"<delivery-{delivery_id}@meer.test>",
        sent_at=datetime.now(UTC),
    )
    await publish([Envelope.wrap(sent, org_id=org_id, participant_id=participant_id)])

    (opened,) = await eventually(lambda: opens_published(participant_id), what="the held open published")
    assert opened["payload"]["delivery_id"] == str(delivery_id) and opened["payload"]["first_open"] is True
    assert await held(delivery_id) == 0 and await recorded(delivery_id) == 1
    # A later open of the same mail is a repeat, published at once.
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)).status_code == 200
    both = await eventually(lambda: opens_at_least(participant_id, 2), what="the repeat open published")
    assert sorted(event["payload"]["first_open"] for event in both)  # type: ignore[index] == [False, True]


async def test_a_known_sent_mail_is_opened_at_once(http: httpx.AsyncClient) -> None:
    delivery_id = uuid4()
    token = await sent_pixel_token(delivery_id=delivery_id)
    assert (await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)).status_code == 200
    await eventually(lambda: recorded(delivery_id), what="the open recorded")
    assert await recorded(delivery_id) == 1 and await held(delivery_id) == 0

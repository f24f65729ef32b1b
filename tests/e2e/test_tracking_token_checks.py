"""Signed tokens on the real stack: a tampered token and a retired key record nothing and
are counted; a key in its grace period still works; a click goes only where the mailer
signed, never to a URL someone adds."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from deploy.local import stack as local_stack
from tests.e2e.conftest import (
    DEV_TRACKING_KEY,
    MAIL_CLIENT,
    TRACKING,
    db_count,
    eventually,
    sent_pixel_token,
    tracking_token,
)

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


async def metric(http: httpx.AsyncClient, base: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus metric of a tracking process (0 when not yet counted)."""
    text = (await http.get(f"{base}/metrics")).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def opens_of(delivery_id: UUID) -> int:
    return await db_count("tracking", "SELECT count(*) FROM open_record WHERE delivery_id = $1", delivery_id)


def tampered(token: str) -> str:
    """The same signature over other claims: what someone gets who edits a token (a compact
    token ends in its 16-byte tag)."""
    other = tracking_token("open", day=2)

    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    return base64.urlsafe_b64encode(raw(other)[:-16] + raw(token)[-16:]).rstrip(b"=").decode()


async def recorded_once(delivery_id: UUID) -> bool:
    """Waits for the hit processor: True once the mail has its one open."""
    await eventually(lambda: opens_of(delivery_id), what="the open recorded")
    return await opens_of(delivery_id) == 1


async def test_a_tampered_token_records_nothing_and_is_counted(http: httpx.AsyncClient) -> None:
    delivery_id = uuid4()
    good = await sent_pixel_token(delivery_id=delivery_id)
    before = await metric(http, TRACKING, "meer_tracking_invalid_tokens_total", kind="open", reason="bad_signature")
    for token in (tampered(good), good[:-3] + "AAA", "geen-token"):
        gif = await http.get(f"{TRACKING}/o/{token}.gif", headers=MAIL_CLIENT)
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif", "always the GIF"
    after = await metric(http, TRACKING, "meer_tracking_invalid_tokens_total", kind="open", reason="bad_signature")
    assert after - before == 3
    # The genuine token does record, so the three above were refused for their tampering alone.
    await http.get(f"{TRACKING}/o/{good}.gif", headers=MAIL_CLIENT)
    assert await recorded_once(delivery_id)


@pytest.fixture
async def rotated_tracking(stack: None) -> AsyncIterator[str]:
    """A second tracking process whose keys say: one retired, one still in its grace period."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        **local_stack.service_env("tracking"),
        "MEER_HTTP_PORT": str(port),
        "MEER_CONSUMER_GROUP": f"tracking-rotation-{uuid4().hex[:8]}",
        "MEER_TRACKING_KEYS": f"{DEV_TRACKING_KEY},retired-key@2020-01-31,graced-key@2999-12-31",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.tracking"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            assert process.poll() is None, "the tracking process with rotated keys exited"
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{base}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, what="tracking with rotated keys")
        yield base
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def test_a_retired_key_is_refused_and_a_key_in_its_grace_period_is_not(
    http: httpx.AsyncClient, rotated_tracking: str
) -> None:
    retired, graced = uuid4(), uuid4()
    before = await metric(
        http, rotated_tracking, "meer_tracking_invalid_tokens_total", kind="open", reason="expired_key"
    )
    retired_token = await sent_pixel_token(delivery_id=retired, key="retired-key")
    gif = await http.get(f"{rotated_tracking}/o/{retired_token}.gif", headers=MAIL_CLIENT)
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    graced_token = await sent_pixel_token(delivery_id=graced, key="graced-key")
    await http.get(f"{rotated_tracking}/o/{graced_token}.gif", headers=MAIL_CLIENT)

    assert await recorded_once(graced), "an old key verifies during its grace period"
    assert await opens_of(retired) == 0, "a key past its date records nothing"
    after = await metric(
        http, rotated_tracking, "meer_tracking_invalid_tokens_total", kind="open", reason="expired_key"
    )
    assert after - before == 1
    link = tracking_token("click", key="retired-key", url="https://example.org/les")
    assert (await http.get(f"{rotated_tracking}/c/{link}")).status_code == 404


async def test_a_click_goes_only_where_the_mailer_signed(http: httpx.AsyncClient) -> None:
    delivery_id = uuid4()
    signed = tracking_token("click", delivery_id=delivery_id, url="https://example.org/les?dag=3")
    response = await http.get(f"{TRACKING}/c/{signed}", params={"u": "https://evil.example", "url": "//evil.example"})
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.org/les?dag=3"

    foreign = [
        tampered(signed),  # another URL cannot be swapped into a signed token
        tracking_token("click", url="https://evil.example", key="not-our-key"),
        tracking_token("click", url="javascript:alert(1)"),
        tracking_token("click", url="//evil.example"),
        tracking_token("click", url="https://evil.example\\@example.org"),
        tracking_token("click"),  # no URL at all
        tracking_token("open"),  # a pixel token is no link
    ]
    for token in foreign:
        refused = await http.get(f"{TRACKING}/c/{token}")
        assert refused.status_code == 404, token
        assert "location" not in refused.headers
        assert refused.headers["content-type"].startswith("text/html") and "werkt niet" in refused.text
    assert await db_count("tracking", "SELECT count(*) FROM link_hit WHERE delivery_id = $1", delivery_id) == 1

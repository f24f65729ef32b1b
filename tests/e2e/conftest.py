"""Helpers for tests on the real stack: API clients, the mail catcher, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.stack import Urls

ENROLMENT = Urls.service("enrolment")
MAILER = Urls.service("mailer")
TRACKING = Urls.service("tracking")
COACHING = Urls.service("coaching")
MAILCATCHER = Urls.mailcatcher
KAFKA = Urls.kafka
PG_SERVER = Urls.postgres_server()
LICENSOR = {"Authorization": "Bearer dev-only-licensor-secret"}

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 30, what: str = "condition") -> T:
    """Poll check() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def http(stack: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def db_fetch(service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_{service}")
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def db_count(service: str, query: str, *args: Any) -> int:
    conn = await asyncpg.connect(f"{PG_SERVER}/meer_{service}")
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def read_topic(topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on a topic right now, read without a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def unique_email(label: str = "deelnemer") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.org"


async def create_organisation(http: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    today = date.today()
    body = {
        "name": f"Testorganisatie {uuid.uuid4().hex[:6]}",
        "display_name": "Welzijn Testdorp",
        "contact_phone": "020 123 4567",
        "contact_email": "info@testdorp.example",
        "website": "https://testdorp.example",
        "address": "Kerkplein 3, 1234 AB Testdorp",
        "licence_valid_from": str(today - timedelta(days=1)),
        "licence_valid_until": str(today + timedelta(days=365)),
        "max_active_participants": 100,
        **overrides,
    }
    response = await http.post(f"{ENROLMENT}/api/organisations", json=body, headers=LICENSOR)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_coach(http: httpx.AsyncClient, org_id: str, name: str = "Coach Karin") -> dict[str, Any]:
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{org_id}/coaches",
        json={"name": name, "email": unique_email("coach")},
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def mails_to(http: httpx.AsyncClient, address: str) -> list[dict[str, Any]]:
    return list((await http.get(f"{MAILCATCHER}/api/messages", params={"to": address})).json())


async def raw_mail(http: httpx.AsyncClient, mail_id: int) -> EmailMessage:
    raw = (await http.get(f"{MAILCATCHER}/api/messages/{mail_id}/raw")).content
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message

"""Login limits on the real stack: failed logins are limited per client address, network,
account+address and account, with growing delays; a browser that logged in before (its
device cookie) is not locked out by anyone else's failures.

Enrolment takes the client address from X-Forwarded-For when the request comes from a
trusted proxy (127.0.0.1 here), so each test plays its own clients."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest

from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    STAFF_PASSWORD,
    client_address,
    create_organisation,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack
WRONG = "niet het goede wachtwoord"


async def login(
    http: httpx.AsyncClient,
    email: str,
    password: str,
    source: dict[str, str],
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, cookies=cookies) as client:  # no cookie jar shared between "browsers"
        return await client.post(
            f"{ENROLMENT}/api/auth/login", json={"email": email, "password": password}, headers=source
        )


async def fail_until_blocked_for(
    http: httpx.AsyncClient, email: str, source: dict[str, str], seconds: int
) -> httpx.Response:
    """An attacker's wrong passwords, waiting out each stated delay, until the block lasts
    at least `seconds`."""
    for _ in range(30):
        answer = await login(http, email, WRONG, source)
        if answer.status_code == 429:
            wait = int(answer.headers["Retry-After"])
            if wait >= seconds:
                return answer
            await asyncio.sleep(wait)  # the delay the server stated, then the next try
        else:
            assert answer.status_code == 401
    pytest.fail("the failures never brought a long enough delay")


async def test_thirty_accounts_tried_from_one_address_are_limited(http: httpx.AsyncClient) -> None:
    attacker = client_address()
    started = time.monotonic()
    answers = [await login(http, unique_email("gespoten"), WRONG, attacker) for _ in range(30)]
    elapsed = time.monotonic() - started
    codes = [a.status_code for a in answers]
    # Ten free failures per address, then delays that double (1 s, 2 s, 4 s, ...): most tries are
    # refused unchecked. k checked failures after the free ten need 2**k - 1 seconds of delays, so
    # however slow the machine, no more than log2(elapsed + 1) of them can have been checked.
    # Whether the very last try fell inside a delay or just after one depends on the machine's
    # speed, so the test asserts the bound on checked tries, not the last answer.
    assert codes[:10] == [401] * 10
    assert codes.count(401) <= 10 + 1 + math.floor(math.log2(elapsed + 1)), (codes, elapsed)
    assert set(codes) == {401, 429}, codes
    limited = next(a for a in answers if a.status_code == 429)
    assert "try again after" in limited.json()["error"]["message"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 901

    # Someone else, at another address, logs in as usual meanwhile.
    organisation = await create_organisation(http)
    admin = await staff_login(http, organisation["id"])
    assert (await login(http, admin["email"], STAFF_PASSWORD, client_address())).status_code == 200


async def test_the_owner_with_a_device_cookie_logs_in_while_an_attacker_locks_others_out(
    http: httpx.AsyncClient,
) -> None:
    organisation = await create_organisation(http)
    coach = await staff_login(http, organisation["id"], role="coach")  # this browser got a device cookie
    shared_wifi = client_address()
    blocked = await fail_until_blocked_for(http, coach["email"], shared_wifi, seconds=4)
    assert "try again after" in blocked.json()["error"]["message"]

    # A browser without the cookie, even with the right password, waits.
    stranger = await login(http, coach["email"], STAFF_PASSWORD, shared_wifi)
    assert stranger.status_code == 429
    # The owner's browser, at the same address, gets in: others' failures do not count for it.
    owner = await login(
        http, coach["email"], STAFF_PASSWORD, shared_wifi, cookies={"meer_device": coach["device_token"]}
    )
    assert owner.status_code == 200, owner.text
    assert owner.json()["access_token"] and owner.cookies.get("meer_device")
    # The owner's login does not forgive the attacker.
    assert (await login(http, coach["email"], WRONG, shared_wifi)).status_code == 429

    # A device cookie is bound to its account: it opens no other account's limits.
    other = await staff_login(http, organisation["id"], role="coach")
    await fail_until_blocked_for(http, other["email"], shared_wifi, seconds=4)
    borrowed = await login(
        http, other["email"], STAFF_PASSWORD, shared_wifi, cookies={"meer_device": coach["device_token"]}
    )
    assert borrowed.status_code == 429


async def test_the_coaching_login_page_remembers_the_browser(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    coach = await staff_login(http, organisation["id"], role="coach")
    shared_wifi = client_address()
    async with httpx.AsyncClient(base_url=COACHING, timeout=10, headers=shared_wifi) as browser:
        form = await browser.get("/inloggen")
        fields = {
            "email": coach["email"],
            "password": STAFF_PASSWORD,
            "login_token": form.cookies["meer_coaching_login"],
        }
        assert (await browser.post("/inloggen", data=fields)).status_code == 303
        assert browser.cookies.get("meer_coaching_device")
        browser.cookies.delete("meer_coaching_session")

        await fail_until_blocked_for(http, coach["email"], shared_wifi, seconds=4)
        async with httpx.AsyncClient(base_url=COACHING, timeout=10, headers=shared_wifi) as newcomer:
            form = await newcomer.get("/inloggen")
            fields["login_token"] = form.cookies["meer_coaching_login"]
            refused = await newcomer.post("/inloggen", data=fields)
            assert refused.status_code == 429 and "te vaak geprobeerd" in refused.text
        form = await browser.get("/inloggen")
        fields["login_token"] = form.cookies["meer_coaching_login"]
        again = await browser.post("/inloggen", data=fields)
        assert again.status_code == 303, again.text

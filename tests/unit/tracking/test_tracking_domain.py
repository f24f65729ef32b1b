"""Tracking's rules without I/O: person or machine, first opens, safe redirects, reports,
one-click unsubscribe and what the pages may show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.tracking.domain import (
    HitFacts,
    JudgeRules,
    MailFacts,
    ReportAnswer,
    ReportRefused,
    first_open_flags,
    judge_hit,
    mail_facts,
    page_branding,
    pixel_token,
    read_hit_facts,
    read_report_form,
    report_changed,
    safe_redirect_url,
    unsubscribe_via,
    user_agent_signals,
)
from shared.branding import DEFAULT_BRAND_COLOUR

RULES = JudgeRules(fast_hit_s=60, instant_click_s=10, burst_min_links=2)
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
AN_HOUR = MailFacts(seconds_since_sent=3600)


def hit(user_agent: str | None = THUNDERBIRD, method: str = "GET", prefetch: bool = False) -> HitFacts:
    return HitFacts(method=method, user_agent=user_agent, prefetch=prefetch)


def test_a_person_opening_an_hour_later_is_a_person() -> None:
    verdict = judge_hit(hit(), AN_HOUR, RULES)
    assert not verdict.likely_automated and verdict.signals == ()


def test_a_person_may_open_a_mail_the_moment_it_arrives() -> None:
    verdict = judge_hit(hit(), MailFacts(seconds_since_sent=3), RULES)
    assert not verdict.likely_automated
    assert verdict.signals == ("fast_after_send",), "the signal is kept, but alone it decides nothing"


def test_apples_privacy_proxy_fetching_at_delivery_is_flagged() -> None:
    verdict = judge_hit(hit("Mozilla/5.0"), MailFacts(seconds_since_sent=4), RULES)
    assert verdict.likely_automated
    assert verdict.signals == ("fast_after_send", "privacy_proxy_user_agent")


def test_the_privacy_proxy_alone_much_later_is_not_enough() -> None:
    assert not judge_hit(hit("Mozilla/5.0"), AN_HOUR, RULES).likely_automated


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
        "python-requests/2.32.3",
        "python-httpx/0.28.1",
        "curl/8.5.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mimecast URL Protect",
    ],
)
def test_known_scanners_crawlers_and_http_libraries_are_flagged_at_any_time(user_agent: str) -> None:
    verdict = judge_hit(hit(user_agent), AN_HOUR, RULES)
    assert verdict.likely_automated and verdict.signals == ("scanner_user_agent",)


@pytest.mark.parametrize(
    "user_agent",
    [
        THUNDERBIRD,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    ],
)
def test_mail_clients_and_googles_open_time_proxy_are_people(user_agent: str) -> None:
    assert user_agent_signals(user_agent) == set()


def test_no_user_agent_a_prefetch_and_a_head_are_machines() -> None:
    assert judge_hit(hit(None), AN_HOUR, RULES).signals == ("no_user_agent",)
    assert judge_hit(hit(prefetch=True), AN_HOUR, RULES).signals == ("prefetch",)
    assert judge_hit(hit(method="HEAD"), AN_HOUR, RULES).signals == ("head_request",)


def test_a_link_followed_within_seconds_of_sending_is_a_scanner() -> None:
    quick = MailFacts(seconds_since_sent=5, distinct_links_in_window=1)
    assert judge_hit(hit(), quick, RULES, kind="link").signals == ("instant_click",)
    assert judge_hit(hit(), quick, RULES, kind="link").likely_automated
    later = MailFacts(seconds_since_sent=30, distinct_links_in_window=1)
    assert not judge_hit(hit(), later, RULES, kind="link").likely_automated


def test_a_burst_over_different_links_of_one_mail_is_a_scanner() -> None:
    facts = mail_facts(
        hit_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
        sent_at=datetime(2026, 5, 1, 9, tzinfo=UTC),
        token_sent_at=0,
        recent_links=["report", "unsubscribe"],
        this_link="https://example.org",
    )
    assert facts.distinct_links_in_window == 3
    verdict = judge_hit(hit(), facts, RULES, kind="link")
    assert verdict.likely_automated and verdict.signals == ("link_burst",)


def test_the_same_link_twice_is_no_burst() -> None:
    facts = mail_facts(
        hit_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
        sent_at=None,
        token_sent_at=0,
        recent_links=["https://example.org"],
        this_link="https://example.org",
    )
    assert facts.distinct_links_in_window == 1
    assert not judge_hit(hit(), facts, RULES, kind="link").likely_automated


def test_the_token_time_stands_in_while_mail_sent_has_not_arrived() -> None:
    hit_at = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    from_token = mail_facts(
        hit_at=hit_at, sent_at=None, token_sent_at=int((hit_at - timedelta(seconds=20)).timestamp())
    )
    assert from_token.seconds_since_sent == 20
    from_event = mail_facts(hit_at=hit_at, sent_at=hit_at - timedelta(seconds=25), token_sent_at=0)
    assert from_event.seconds_since_sent == 25, "mail.sent wins when it is known"


def test_a_hit_before_sending_time_counts_as_right_after_sending() -> None:
    # Clocks of two hosts differ a little; a negative age is no reason to call it a person.
    verdict = judge_hit(hit("Mozilla/5.0"), MailFacts(seconds_since_sent=-2), RULES)
    assert verdict.likely_automated


def test_request_facts_are_read_from_raw_headers() -> None:
    facts = read_hit_facts("get", [(b"User-Agent", b" Thunderbird "), (b"Sec-Purpose", b"prefetch;prerender")])
    assert facts == HitFacts(method="GET", user_agent="Thunderbird", prefetch=True)
    assert read_hit_facts("GET", [(b"user-agent", b"")]).user_agent is None


def test_only_the_first_hit_on_a_newly_claimed_mail_is_its_first_open() -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    assert first_open_flags([a, b, a, c, b], newly_opened={a, b}) == [True, True, False, False, False]


@pytest.mark.parametrize(
    ("path", "token"),
    [("/o/abc.def.gif", "abc.def"), ("/o/.gif", None), ("/o/a/b.gif", None), ("/c/abc.gif", None), ("/o/abc", None)],
)
def test_the_pixel_path_holds_one_token(path: str, token: str | None) -> None:
    assert pixel_token(path) == token


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.org/les?dag=3", True),
        ("http://example.org", True),
        ("javascript:alert(1)", False),
        ("//evil.example", False),
        ("https:evil.example", False),
        ("https://evil.example\\@example.org", False),
        ("https://example.org/\r\nSet-Cookie: x", False),
        ("data:text/html,<script>", False),
        ("ftp://example.org", False),
        ("", False),
        (None, False),
        ("https://example.org/" + "a" * 2100, False),
    ],
)
def test_only_plain_web_addresses_are_redirect_targets(url: str | None, safe: bool) -> None:
    assert safe_redirect_url(url) == (url if safe else None)


def test_a_report_needs_a_score_on_the_scale_and_a_short_note() -> None:
    assert read_report_form({"score": "4", "note": "  Ging goed.\r\nMorgen weer.  "}) == ReportAnswer(
        4, "Ging goed.\nMorgen weer."
    )
    assert read_report_form({"score": "1", "note": "   "}) == ReportAnswer(1, None)
    with pytest.raises(ReportRefused, match="Kies eerst"):
        read_report_form({"note": "vergeten"})
    with pytest.raises(ReportRefused, match="Kies eerst"):
        read_report_form({"score": "6"})
    with pytest.raises(ReportRefused, match="te lang"):
        read_report_form({"score": "3", "note": "x" * 501})
    assert read_report_form({"score": "3", "note": "x" * 500}).note == "x" * 500


def test_a_double_submit_of_the_same_answer_is_no_new_report() -> None:
    assert not report_changed(ReportAnswer(3, None), ReportAnswer(3, None))
    assert report_changed(ReportAnswer(3, None), ReportAnswer(3, "toch"))
    assert report_changed(None, ReportAnswer(3, None))


def test_unsubscribe_needs_the_one_click_body_or_the_pages_confirmation() -> None:
    assert unsubscribe_via({"List-Unsubscribe": "One-Click"}) == "one_click"
    assert unsubscribe_via({"bevestigen": "ja"}) == "page"
    assert unsubscribe_via({}) is None
    assert unsubscribe_via({"List-Unsubscribe": "Two-Clicks"}) is None


def test_pages_show_only_a_plain_colour_and_a_web_logo() -> None:
    brand = page_branding(
        {
            "display_name": "Welzijn Noord",
            "brand_colour": "red;} body{display:none",
            "logo_url": "javascript:alert(1)",
            "contact_phone": "020 123 4567",
        }
    )
    assert brand["display_name"] == "Welzijn Noord" and brand["contact_phone"] == "020 123 4567"
    assert brand["brand_colour"] == DEFAULT_BRAND_COLOUR and brand["logo_url"] is None
    assert (
        page_branding({"brand_colour": "#7A3E9D", "logo_url": "https://x.example/l.png"})["brand_colour"] == "#7A3E9D"
    )
    assert page_branding(None)["display_name"] == "Meer contact"


def test_an_open_counts_only_for_a_mail_seen_sent_to_the_tokens_participant_and_organisation() -> None:
    from services.tracking.domain import was_sent_as_claimed

    participant, org = uuid4(), uuid4()
    assert was_sent_as_claimed((participant, org), participant_id=participant, org_id=org)
    assert not was_sent_as_claimed(None, participant_id=participant, org_id=org), "mail.sent not seen (yet)"
    assert not was_sent_as_claimed((uuid4(), org), participant_id=participant, org_id=org), "another participant's"
    assert not was_sent_as_claimed((participant, uuid4()), participant_id=participant, org_id=org)

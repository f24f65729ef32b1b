"""A lesson that names a kind of local offer: the organisation's offers of that kind in both parts,
escaped and linked through tracking; the lesson's general text when it has none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from uuid import uuid4

import pytest

from services.mailer.mail import MailContext, MailSettings, render_programme_mail, to_wire
from services.mailer.programme import load_pack
from shared.events import LOCAL_OFFER_KINDS
from shared.tracking_tokens import TokenSigner

PACK = load_pack()
SETTINGS = MailSettings("training@meer.test", "meer.test", "https://t.meer.test")
SIGNER = TokenSigner(["unit-key"])
LIBRARY = {
    "offer_id": str(uuid4()),
    "kind": "library",
    "name": "Bieb <Centrum> & Co",
    "description": "Leesclub voor iedereen.\nKoffie staat klaar.",
    "location": "Marktplein 1, Zuid",
    "schedule": "elke dinsdag 10:00-12:00",
    "phone": "040 765 4321",
    "website": "https://bieb.example/leesclub?a=1&b=2",
}
WALKING = {"offer_id": str(uuid4()), "kind": "walking_group", "name": "Wandelen in het park"}


def parts(day: int, offers: Sequence[Mapping[str, Any]], variant: str = "standaard") -> tuple[str, str]:
    context = MailContext(
        delivery_id=uuid4(),
        participant_id=uuid4(),
        org_id=uuid4(),
        to_address="ans@example.org",
        first_name="Ans",
        coach_name="Sanne",
        organisation_name="Welzijn Zuid",
        branding={"display_name": "Welzijn Zuid", "brand_colour": "#aa3300"},
        lesson=PACK.lesson(variant, day),
        day=day,
        programme_days=PACK.days,
        sent_at=datetime(2026, 11, 23, 8, tzinfo=UTC),
        local_offers=offers,
    )
    message = message_from_bytes(
        to_wire(render_programme_mail(context, SETTINGS, SIGNER), SETTINGS), policy=policy.default
    )
    assert isinstance(message, EmailMessage)
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


@pytest.mark.parametrize("variant", ["standaard", "op-afstand"])
def test_a_lesson_shows_the_organisations_offers_of_its_kind_escaped_in_both_parts(variant: str) -> None:
    html, text = parts(25, [LIBRARY, WALKING], variant)

    assert "Bibliotheek bij jou in de buurt" in html and "BIBLIOTHEEK BIJ JOU IN DE BUURT" in text
    assert "Bieb &lt;Centrum&gt; &amp; Co" in html and "<Centrum>" not in html
    assert "Leesclub voor iedereen.<br>Koffie staat klaar." in html
    for fact in ("Waar: Marktplein 1, Zuid", "Wanneer: elke dinsdag 10:00-12:00", "Telefoon: 040 765 4321"):
        assert fact in html and fact in text
    assert "- Bieb <Centrum> & Co" in text and "Website: https://bieb.example/leesclub?a=1&b=2" in text
    # The link goes through tracking (only signed addresses are redirected to); the address is shown as it is.
    assert ">https://bieb.example/leesclub?a=1&amp;b=2</a>" in html
    assert html.count("https://t.meer.test/c/") == 1
    assert "Wandelen in het park" not in html + text, "another kind is not shown in the library lesson"
    assert "MCLOCALOFFER" not in html + text and "lokaal_aanbod" not in html + text


def test_without_offers_of_that_kind_the_lesson_keeps_its_general_text() -> None:
    with_offer_html, _ = parts(25, [LIBRARY])
    for offers in ([], [WALKING]):
        html, text = parts(25, offers)

        assert "Bibliotheek bij jou in de buurt" not in html and "BIBLIOTHEEK BIJ JOU" not in text
        assert "De bibliotheek is meer dan een plek om boeken te lenen." in html
        assert "De bibliotheek is meer dan een plek om boeken te lenen." in text
        assert "MCLOCALOFFER" not in html + text and "lokaal_aanbod" not in html + text
        assert html.count("<p") < with_offer_html.count("<p")


def test_an_offer_the_copy_holds_in_an_unreadable_form_is_left_out_not_the_mail() -> None:
    broken = {"kind": "library", "name": "Zonder id"}
    newer_kind = {"offer_id": str(uuid4()), "kind": "zwembad", "name": "Een soort van later"}
    unsafe_link = {**LIBRARY, "offer_id": str(uuid4()), "name": "Vreemde link", "website": "javascript:alert(1)"}

    html, text = parts(25, [broken, newer_kind, unsafe_link])

    assert (
        "Zonder id" not in html
        and "Een soort van later" not in html
        and "Vreemde link" in html
        and "Vreemde link" in text
    )
    assert "javascript:" not in html and "javascript:" not in text


def test_every_kind_the_pack_names_shows_in_every_lesson_that_names_it() -> None:
    offers = [{"offer_id": str(uuid4()), "kind": kind, "name": f"Aanbod {kind}"} for kind in LOCAL_OFFER_KINDS]
    for day, kinds in {
        33: ("community_centre", "coffee_morning"),
        38: ("walking_group", "sports"),
        40: ("volunteering",),
    }.items():
        html, text = parts(day, offers)
        for kind in kinds:
            assert f"Aanbod {kind}" in html and f"Aanbod {kind}" in text
        assert "Aanbod library" not in html

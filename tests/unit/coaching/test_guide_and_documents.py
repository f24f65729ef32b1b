"""The call guide covers all four calls; the recruitment kit and the plan export are real A4 PDFs."""

from __future__ import annotations

import io
import re
from datetime import date

from PIL import Image

from services.coaching.documents import (
    KitOrganisation,
    PlanDocument,
    PlanOffer,
    brand_colour,
    personal_plan,
    recruitment_flyer,
    recruitment_poster,
    text_colour_on,
)
from services.coaching.guide import GUIDE, guide_for
from shared.branding import readable_text_colour
from tests.support.pdf import pdf_text

A4_MEDIABOX = re.compile(rb"/MediaBox \[\s*0 0 595\.27\d+ 841\.88\d+\s*\]")


def logo_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (240, 80), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def organisation(**changes: object) -> KitOrganisation:
    values = {
        "display_name": "Welzijn & Zo <Noord>",
        "signup_url": "https://enrolment.example/aanmelden/6f1c",
        "brand_colour": "#0b6e4f",
        "contact_phone": "020 123 4567",
        "contact_email": "info@zo.example",
        "website": "https://zo.example",
        "logo": None,
        **changes,
    }
    return KitOrganisation(**values)  # type: ignore[arg-type]


def test_each_of_the_four_calls_has_questions_things_to_look_at_and_plan_notes() -> None:
    assert sorted(GUIDE) == [1, 2, 3, 4]
    for guide in GUIDE.values():
        titles = [title for title, _ in guide.sections]
        assert titles == ["Wat kunt u vragen", "Waar let u op", "Voor het persoonlijk plan"]
        assert all(items for _, items in guide.sections)
    assert guide_for(7).number == 4


def test_flyer_and_poster_are_one_a4_page_each_with_and_without_a_logo() -> None:
    for make in (recruitment_flyer, recruitment_poster):
        for logo in (None, logo_png(), b"not an image"):
            pdf = make(organisation(logo=logo))
            assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
            assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page/") >= 1
            assert A4_MEDIABOX.search(pdf), "A4 portrait"


def test_a_real_logo_and_the_qr_code_end_up_in_the_flyer_as_images() -> None:
    without = recruitment_flyer(organisation(logo=None))
    with_logo = recruitment_flyer(organisation(logo=logo_png()))
    assert without.count(b"/Subtype /Image") == 1  # the QR code
    assert with_logo.count(b"/Subtype /Image") == 2  # the QR code and the logo


def test_a_bad_colour_falls_back_and_text_stays_readable_on_the_band() -> None:
    assert brand_colour("red; drop table").hexval() == brand_colour(None).hexval()
    assert text_colour_on(brand_colour("#0b6e4f")).hexval() == "0xffffff"
    assert text_colour_on(brand_colour("#ffe066")).hexval() == "0x000000"
    # The platform's one rule: a mid-tone gets black text, as on the sign-up page and in the mails.
    assert text_colour_on(brand_colour("#e07000")).hexval() == "0x" + readable_text_colour("#e07000")[1:]


def test_the_plan_export_is_a_pdf_even_with_markup_in_the_text() -> None:
    pdf = personal_plan(
        PlanDocument(
            first_name="Gerrit <b>",
            organisation="Welzijn & Zo",
            coach_name="Karin",
            version=2,
            saved_on=date(2026, 3, 1),
            noticed_how="Buurvrouw belde & vertelde",
            own_question="Ik wil <weer> mensen zien",
            causes=["Verlies van een partner of dierbare"],
            causes_other=None,
            goals="Naar de soos",
            steps="1. Dinsdag koffie\n2. Bellen met Ans",
        )
    )
    assert pdf.startswith(b"%PDF-") and A4_MEDIABOX.search(pdf)


def test_the_plan_lists_the_local_offers_its_goals_name() -> None:
    offer = PlanOffer.from_offer(
        {
            "offer_id": "2f6c",
            "kind": "library",
            "name": "Bibliotheek Zandvoort",
            "description": "Boeken lenen en koffie drinken.",
            "location": "Prinsesseweg 34",
            "schedule": "ma t/m za 10:00-17:00",
            "phone": "023 571 4000",
            "website": None,
        }
    )
    plan = PlanDocument(
        first_name="Gerrit",
        organisation="Welzijn Aan Zee",
        coach_name="Karin",
        version=1,
        saved_on=date(2026, 3, 1),
        noticed_how=None,
        own_question="Ik wil weer mensen zien",
        causes=[],
        causes_other=None,
        goals="Naar de bibliotheek",
        steps=None,
        offers=[offer],
    )
    text = pdf_text(personal_plan(plan))
    shown_lines = (
        "Wat er bij mij in de buurt is",
        "Bibliotheek Zandvoort",
        "Prinsesseweg 34, ma t/m za",
        "023 571 4000",
    )
    for shown in shown_lines:
        assert f"({shown}" in text, (shown, text)
    without = pdf_text(personal_plan(PlanDocument(**{**plan.__dict__, "offers": ()})))
    assert "Wat er bij mij in de buurt is" not in without

"""The recruitment kit fetches a logo only from enrolment, and only the organisation's own."""

from __future__ import annotations

from uuid import uuid4

from services.coaching.kit import enrolment_logo_url

ORG = uuid4()
SHA = "ab" * 32
INSIDE = "http://enrolment:8001"


def test_enrolments_own_logo_is_fetched_from_the_configured_enrolment_address() -> None:
    public = f"https://aanmelden.meercontact.nl/logos/{ORG}/{SHA}.png"
    assert enrolment_logo_url(public, org_id=ORG, enrolment_base_url=INSIDE) == f"{INSIDE}/logos/{ORG}/{SHA}.png"
    prefixed = f"https://meercontact.nl/enrolment/logos/{ORG}/{SHA}.jpg"
    assert enrolment_logo_url(prefixed, org_id=ORG, enrolment_base_url="https://meercontact.nl/enrolment/") == (
        f"https://meercontact.nl/enrolment/logos/{ORG}/{SHA}.jpg"
    )


def test_any_other_url_is_not_fetched() -> None:
    for url in (
        None,
        "",
        "http://169.254.169.254/latest/meta-data/",
        f"http://intern.example/logos/{uuid4()}/{SHA}.png",  # another organisation's logo
        f"http://intern.example/logos/{ORG}/{SHA}.svg",
        f"http://intern.example/logos/{ORG}/{SHA}.png?x=1",
        f"http://intern.example/logos/{ORG}/../../admin/{SHA}.png",
        f"file:///logos/{ORG}/{SHA}.png",
        f"gopher://intern.example/logos/{ORG}/{SHA}.png",
    ):
        assert enrolment_logo_url(url, org_id=ORG, enrolment_base_url=INSIDE) is None, url

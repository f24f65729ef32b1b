"""A local offer's fields: what enrolment accepts, normalises and refuses (each refusal names its field)."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from services.enrolment.schemas import LocalOfferFields
from shared.events import LOCAL_OFFER_KINDS, LocalOfferKind

GOOD = {
    "kind": "library",
    "name": "  Bibliotheek Centrum ",
    "description": "Leesclub.\r\nKoffie staat klaar.",
    "location": "Marktplein 1",
    "schedule": "elke dinsdag 10:00-12:00",
    "phone": "0201234567",
    "website": "https://bieb.example/leesclub",
}


def test_a_good_offer_is_normalised() -> None:
    offer = LocalOfferFields.model_validate(GOOD)

    assert offer.name == "Bibliotheek Centrum"
    assert offer.description == "Leesclub.\nKoffie staat klaar."
    assert offer.phone == "020 123 4567"
    assert offer.website == "https://bieb.example/leesclub"


def test_only_kind_and_name_are_required_and_empty_optionals_become_null() -> None:
    offer = LocalOfferFields.model_validate(
        {"kind": "walking_group", "name": "Wandelclub", "phone": " ", "website": ""}
    )

    assert (offer.phone, offer.website, offer.location, offer.description) == (None, None, None, "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "swimming_pool"),
        ("name", ""),
        ("name", "Bieb\nCentrum"),
        ("name", "x" * 101),
        ("description", "Leesclub\x00"),
        ("description", "x" * 1001),
        ("location", "Markt\tplein"),
        ("schedule", "dinsdag\r\nwoensdag"),
        ("phone", "bel maar"),
        ("phone", "12"),
        ("website", "bieb.example"),
        ("website", "javascript:alert(1)"),
        ("website", "ftp://bieb.example"),
        ("website", "https://"),
        ("website", "https://bieb example"),
    ],
)
def test_bad_input_is_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        LocalOfferFields.model_validate({**GOOD, field: value})

    assert [error["loc"][0] for error in refused.value.errors()] == [field]


def test_every_kind_has_a_pack_word_and_a_dutch_label_and_words_are_unique() -> None:
    assert set(LOCAL_OFFER_KINDS) == set(typing.get_args(LocalOfferKind))
    words = [word for word, _ in LOCAL_OFFER_KINDS.values()]
    assert len(set(words)) == len(words)
    assert all(word.isidentifier() and word.islower() for word in words)

"""The call guide for coaches: for each of the four calls, what to ask and what to look at.

The content follows the method the coaches learn: signal, discuss, clarify the person's
own question, investigate the causes, then make a personal plan together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GuideCall:
    """The guide for one planned call."""

    number: int
    title: str
    when: str
    purpose: str
    sections: tuple[tuple[str, tuple[str, ...]], ...]


GUIDE: Mapping[int, GuideCall] = {
    1: GuideCall(
        number=1,
        title="Kennismaken",
        when="Rond de start, in de eerste dagen",
        purpose=(
            "U leert elkaar kennen. De deelnemer weet daarna wie u bent, hoe het programma werkt "
            "en dat hij of zij u altijd kan bellen."
        ),
        sections=(
            (
                "Wat kunt u vragen",
                (
                    "Hoe gaat het met u op dit moment?",
                    "Zijn de eerste mails goed aangekomen? Lukt het lezen? (Kijk samen ook even in de map met "
                    "ongewenste mail.)",
                    "Met wie heeft u in een gewone week contact?",
                    "Wanneer voelt u zich het meest alleen?",
                    "Wat hoopt u dat deze 60 dagen u brengen? Zeg het gerust in uw eigen woorden.",
                ),
            ),
            (
                "Waar let u op",
                (
                    "Heeft de deelnemer de eerste mails geopend? Zo niet: help met vinden en openen.",
                    "Hoe spreekt de deelnemer over zichzelf en over anderen?",
                    "Wat is een goed moment om te bellen? Spreek het volgende gesprek af.",
                ),
            ),
            (
                "Voor het persoonlijk plan",
                (
                    "Schrijf op hoe de eenzaamheid is opgemerkt (signaleren).",
                    "Schrijf de eigen vraag van de deelnemer op, zo veel mogelijk in de eigen woorden.",
                ),
            ),
        ),
    ),
    2: GuideCall(
        number=2,
        title="Hoe gaat het thuis?",
        when="Rond dag 14",
        purpose=(
            "De eerste lessen zijn thuis gedaan. U bespreekt wat de deelnemer eraan heeft en zoekt samen "
            "naar de oorzaken van het alleen voelen."
        ),
        sections=(
            (
                "Wat kunt u vragen",
                (
                    "Welke les is u bijgebleven? Wat vond u ervan?",
                    "Hoe ging de opdracht die u het moeilijkst vond?",
                    "Is er de laatste jaren veel veranderd in uw leven? Denk aan verlies, een verhuizing of "
                    "uw gezondheid.",
                    "Wat denkt u als u aan contact met anderen denkt?",
                    "Wat heeft u vroeger geholpen als het even niet ging?",
                ),
            ),
            (
                "Waar let u op",
                (
                    "Het percentage geopende mails: leest de deelnemer mee?",
                    "De scores van de opdrachten en hoe die veranderen. Twee lage scores na elkaar? "
                    "Vraag wat er lastig was.",
                    "Negatieve gedachten over zichzelf of anderen: benoem ze voorzichtig.",
                ),
            ),
            (
                "Voor het persoonlijk plan",
                (
                    "Vink de oorzaken aan die u samen heeft verkend, en vul aan in eigen woorden.",
                    "Schrijf een eerste doel op dat de deelnemer zelf belangrijk vindt.",
                ),
            ),
        ),
    ),
    3: GuideCall(
        number=3,
        title="Naar buiten",
        when="Rond dag 35",
        purpose=(
            "De opdrachten gaan nu stap voor stap naar buiten. U moedigt aan, helpt kleine stappen te "
            "zetten en denkt mee over contact in de eigen buurt."
        ),
        sections=(
            (
                "Wat kunt u vragen",
                (
                    "Welke stap heeft u al gezet? Hoe ging dat?",
                    "Wat vond u spannend, en wat hielp u toen?",
                    "Wat is een kleine volgende stap die bij u past?",
                    "Zijn er plekken of activiteiten in de buurt waar u wel eens heen wilt?",
                    "Mag ik u in contact brengen met iemand die u daarbij kan helpen?",
                ),
            ),
            (
                "Waar let u op",
                (
                    "De scores van de opdrachten buiten de deur: lukt het, of is het te veel?",
                    "Dagen zonder geopende mail: haakt de deelnemer af?",
                    "De afspraken uit het vorige gesprek: wat is ervan gekomen?",
                ),
            ),
            (
                "Voor het persoonlijk plan",
                (
                    "Werk de doelen en de afgesproken stappen bij.",
                    "Noteer welke organisatie of activiteit in de buurt kan helpen.",
                ),
            ),
        ),
    ),
    4: GuideCall(
        number=4,
        title="Terugkijken en vooruitkijken",
        when="Bijna aan het eind",
        purpose=(
            "U kijkt samen terug op de 60 dagen en maakt afspraken voor daarna, zodat wat goed gaat "
            "ook goed blijft gaan."
        ),
        sections=(
            (
                "Wat kunt u vragen",
                (
                    "Als u terugkijkt: wat is er veranderd?",
                    "Voelt u zich minder alleen dan bij de start? Waar merkt u dat aan?",
                    "Wat wilt u blijven doen na de laatste mail?",
                    "Wie of wat kan u daarbij helpen?",
                    "Vindt u het goed als we over een paar maanden nog eens bellen?",
                ),
            ),
            (
                "Waar let u op",
                (
                    "Het hele verloop: geopende mails, de scores en hoe die veranderden.",
                    "De doelen en stappen uit het persoonlijk plan: wat is gelukt?",
                    "Is er meer hulp nodig? Denk aan een doorverwijzing.",
                ),
            ),
            (
                "Voor het persoonlijk plan",
                (
                    "Schrijf op wat er bereikt is en welke stappen de deelnemer zelf verder zet.",
                    "Bied aan het plan mee te geven (download het plan voor de deelnemer).",
                ),
            ),
        ),
    ),
}


def guide_for(number: int) -> GuideCall:
    """The guide for call 1..4 (an extra call uses the guide of the call before it)."""
    return GUIDE[min(max(number, 1), 4)]

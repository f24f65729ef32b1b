"""PDFs coaching makes: the recruitment flyer and poster (with QR code), and the personal
plan for the participant. Pure: bytes and text in, PDF bytes out (reportlab + qrcode)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from xml.sax.saxutils import escape

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer

from shared.branding import brand_colour_or_default, readable_text_colour


@dataclass(frozen=True)
class KitOrganisation:
    """What the recruitment kit shows of an organisation."""

    display_name: str
    signup_url: str
    brand_colour: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    website: str | None = None
    logo: bytes | None = None


def brand_colour(value: str | None) -> colors.Color:
    """The organisation's colour, or the platform's when it is missing or not a plain colour."""
    return colors.HexColor(brand_colour_or_default(value))


def text_colour_on(background: colors.Color) -> colors.Color:
    """White or black, whichever reads better on the colour (the platform's one rule)."""
    return colors.HexColor(readable_text_colour("#" + background.hexval()[2:]))


def tint(colour: colors.Color, share: float) -> colors.Color:
    """The colour mixed into white (an opaque tint: transparency would also fade the QR code)."""
    return colors.Color(*(1 - share + share * channel for channel in (colour.red, colour.green, colour.blue)))


def qr_image(url: str) -> ImageReader:
    """A QR code for the sign-up link (medium error correction survives a crease or a stain)."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=2)
    code.add_data(url)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white").get_image()
    return ImageReader(image.convert("RGB"))


def load_logo(data: bytes | None) -> ImageReader | None:
    """The logo as an image reportlab can draw, or None when the bytes are not an image."""
    if not data:
        return None
    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    image: Image.Image = opened if opened.mode in ("RGB", "RGBA") else opened.convert("RGBA")
    return ImageReader(image)


def _draw_image_in_box(canvas: Canvas, image: ImageReader, x: float, y: float, width: float, height: float) -> None:
    """Draw scaled to fit the box, keeping its proportions, centred vertically."""
    image_width, image_height = image.getSize()
    scale = min(width / image_width, height / image_height)
    drawn_width, drawn_height = image_width * scale, image_height * scale
    canvas.drawImage(
        image, x, y + (height - drawn_height) / 2, drawn_width, drawn_height, mask="auto", preserveAspectRatio=True
    )


def _paragraph(canvas: Canvas, text: str, style: ParagraphStyle, x: float, top: float, width: float) -> float:
    """Draw a paragraph whose top is at `top`; return where the next one may start."""
    paragraph = Paragraph(text, style)
    _, height = paragraph.wrap(width, 1000)
    paragraph.drawOn(canvas, x, top - height)
    return float(top - height)


def _header(canvas: Canvas, organisation: KitOrganisation, height: float) -> None:
    page_width, page_height = A4
    colour = brand_colour(organisation.brand_colour)
    canvas.setFillColor(colour)
    canvas.rect(0, page_height - height, page_width, height, stroke=0, fill=1)
    logo = load_logo(organisation.logo)
    name_x = 2 * cm
    if logo is not None:
        box = height - 1.2 * cm
        canvas.setFillColor(colors.white)
        canvas.roundRect(1.6 * cm, page_height - height + 0.6 * cm, box * 1.6, box, 6, stroke=0, fill=1)
        _draw_image_in_box(
            canvas, logo, 1.8 * cm, page_height - height + 0.8 * cm, box * 1.6 - 0.4 * cm, box - 0.4 * cm
        )
        name_x = 1.6 * cm + box * 1.6 + 0.8 * cm
    style = ParagraphStyle("org", fontName="Helvetica-Bold", fontSize=20, leading=24, textColor=text_colour_on(colour))
    paragraph = Paragraph(escape(organisation.display_name), style)
    _, text_height = paragraph.wrap(page_width - name_x - 2 * cm, height)
    paragraph.drawOn(canvas, name_x, page_height - height / 2 - text_height / 2)


def _contact_lines(organisation: KitOrganisation) -> list[str]:
    lines = []
    if organisation.contact_phone:
        lines.append(f"Bel ons: <b>{escape(organisation.contact_phone)}</b>")
    if organisation.contact_email:
        lines.append(f"Mail ons: {escape(organisation.contact_email)}")
    if organisation.website:
        lines.append(escape(organisation.website))
    return lines


def recruitment_flyer(organisation: KitOrganisation) -> bytes:
    """An A4 flyer: who we are, what Meer contact is, and how to sign up (link and QR code)."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle(f"Meer contact — folder {organisation.display_name}")
    canvas.setAuthor(organisation.display_name)
    page_width, page_height = A4
    colour = brand_colour(organisation.brand_colour)
    _header(canvas, organisation, 4.2 * cm)
    left, width = 2 * cm, page_width - 4 * cm
    heading = ParagraphStyle("h", fontName="Helvetica-Bold", fontSize=30, leading=36, textColor=colour)
    lead = ParagraphStyle("lead", fontName="Helvetica", fontSize=15, leading=21, textColor=colors.HexColor("#1a1a1a"))
    body = ParagraphStyle("body", fontName="Helvetica", fontSize=13, leading=18, textColor=colors.HexColor("#1a1a1a"))
    top = page_height - 5.6 * cm
    top = _paragraph(canvas, "Voelt u zich wel eens alleen?", heading, left, top, width) - 0.5 * cm
    top = (
        _paragraph(
            canvas,
            "Dat overkomt veel mensen. Met <b>Meer contact</b> zet u in 60 dagen kleine stappen naar meer "
            "contact met anderen. U doet het op uw eigen tempo, en "
            f"{escape(organisation.display_name)} helpt u daarbij.",
            lead,
            left,
            top,
            width,
        )
        - 0.6 * cm
    )
    points = [
        "Elke dag een korte mail met een les van hooguit tien minuten.",
        "Een kleine opdracht per dag: eerst thuis, daarna stap voor stap buiten de deur.",
        "Een vaste coach die u minstens vier keer belt en met u meedenkt.",
        "U kunt op elk moment pauzeren of stoppen.",
    ]
    for point in points:
        canvas.setFillColor(colour)
        canvas.circle(left + 0.2 * cm, top - 0.3 * cm, 0.12 * cm, stroke=0, fill=1)
        top = _paragraph(canvas, escape(point), body, left + 0.7 * cm, top, width - 0.7 * cm) - 0.25 * cm
    # The sign-up block, right below the points: a tinted panel with the QR code on the right.
    panel_height = 9.5 * cm
    panel_bottom = top - 0.6 * cm - panel_height
    canvas.setFillColor(tint(colour, 0.1))
    canvas.roundRect(left, panel_bottom, width, panel_height, 10, stroke=0, fill=1)
    qr_size = 6.5 * cm
    canvas.drawImage(
        qr_image(organisation.signup_url),
        left + width - qr_size - 0.6 * cm,
        panel_bottom + (panel_height - qr_size) / 2,
        qr_size,
        qr_size,
    )
    text_width = width - qr_size - 1.8 * cm
    panel_top = panel_bottom + panel_height - 0.7 * cm
    sign_up = ParagraphStyle("s", fontName="Helvetica-Bold", fontSize=20, leading=24, textColor=colour)
    panel_top = _paragraph(canvas, "Doe mee!", sign_up, left + 0.7 * cm, panel_top, text_width) - 0.3 * cm
    panel_top = _paragraph(
        canvas, "Scan de code met de camera van uw telefoon, of ga naar:", body, left + 0.7 * cm, panel_top, text_width
    )
    url_style = ParagraphStyle("u", fontName="Helvetica-Bold", fontSize=11, leading=15, textColor=colors.black)
    panel_top = _paragraph(
        canvas, escape(organisation.signup_url), url_style, left + 0.7 * cm, panel_top - 0.2 * cm, text_width
    )
    contact = _contact_lines(organisation)
    if contact:
        _paragraph(
            canvas,
            "Liever eerst even praten?<br/>" + "<br/>".join(contact),
            body,
            left + 0.7 * cm,
            panel_top - 0.4 * cm,
            text_width,
        )
    small = ParagraphStyle("f", fontName="Helvetica", fontSize=9, leading=12, textColor=colors.HexColor("#4a4a4a"))
    _paragraph(
        canvas,
        f"Meer contact is een programma tegen eenzaamheid, aangeboden door {escape(organisation.display_name)}.",
        small,
        left,
        1.8 * cm,
        width,
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def recruitment_poster(organisation: KitOrganisation) -> bytes:
    """An A4 poster to hang up: a short question, a big QR code and the link."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle(f"Meer contact — poster {organisation.display_name}")
    canvas.setAuthor(organisation.display_name)
    page_width, page_height = A4
    colour = brand_colour(organisation.brand_colour)
    _header(canvas, organisation, 3.6 * cm)
    left, width = 1.8 * cm, page_width - 3.6 * cm
    heading = ParagraphStyle(
        "h", fontName="Helvetica-Bold", fontSize=44, leading=50, textColor=colour, alignment=TA_CENTER
    )
    lead = ParagraphStyle(
        "l", fontName="Helvetica", fontSize=20, leading=27, textColor=colors.HexColor("#1a1a1a"), alignment=TA_CENTER
    )
    top = page_height - 5.2 * cm
    top = _paragraph(canvas, "Vaker alleen dan u wilt?", heading, left, top, width) - 0.5 * cm
    top = (
        _paragraph(
            canvas,
            "Zet in 60 dagen kleine stappen naar <b>meer contact</b>.<br/>"
            "Elke dag een korte mail, en een coach die u belt.",
            lead,
            left,
            top,
            width,
        )
        - 0.8 * cm
    )
    qr_size = 9.5 * cm
    qr_bottom = top - qr_size
    canvas.setFillColor(colors.white)
    canvas.setStrokeColor(colour)
    canvas.setLineWidth(4)
    canvas.roundRect(
        (page_width - qr_size) / 2 - 0.4 * cm, qr_bottom - 0.4 * cm, qr_size + 0.8 * cm, qr_size + 0.8 * cm, 12
    )
    canvas.drawImage(qr_image(organisation.signup_url), (page_width - qr_size) / 2, qr_bottom, qr_size, qr_size)
    scan = ParagraphStyle(
        "s", fontName="Helvetica-Bold", fontSize=22, leading=28, textColor=colour, alignment=TA_CENTER
    )
    top = _paragraph(canvas, "Scan de code en meld u aan", scan, left, qr_bottom - 1.0 * cm, width) - 0.2 * cm
    url_style = ParagraphStyle(
        "u", fontName="Helvetica", fontSize=13, leading=17, textColor=colors.black, alignment=TA_CENTER
    )
    top = _paragraph(canvas, escape(organisation.signup_url), url_style, left, top, width) - 0.4 * cm
    contact = _contact_lines(organisation)
    if contact:
        _paragraph(canvas, " · ".join(contact), url_style, left, top, width)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


@dataclass(frozen=True)
class PlanDocument:
    """What the participant's copy of the plan says."""

    first_name: str | None
    organisation: str | None
    coach_name: str | None
    version: int
    saved_on: date
    noticed_how: str | None
    own_question: str | None
    causes: Sequence[str]
    causes_other: str | None
    goals: str | None
    steps: str | None
    offers: Sequence[PlanOffer] = ()
    """The organisation's local offers that the goals name, as the participant finds them."""


@dataclass(frozen=True)
class PlanOffer:
    """A local offer on the participant's copy of the plan."""

    name: str
    description: str | None = None
    location: str | None = None
    schedule: str | None = None
    phone: str | None = None
    website: str | None = None

    @classmethod
    def from_offer(cls, offer: Mapping[str, Any]) -> PlanOffer:
        """From an offer as organisation.local_offers_changed told it."""
        fields = ("description", "location", "schedule", "phone", "website")
        return cls(name=str(offer.get("name") or ""), **{f: offer.get(f) or None for f in fields})

    def lines(self) -> list[str]:
        """What the plan says of it, each line escaped for the PDF."""
        where = ", ".join(escape(part) for part in (self.location, self.schedule) if part)
        contact = " · ".join(escape(part) for part in (self.phone, self.website) if part)
        return [
            f"<b>{escape(self.name)}</b>",
            *([_text(self.description)] if self.description else []),
            *([where] if where else []),
            *([contact] if contact else []),
        ]


def _text(value: str) -> str:
    return escape(value).replace("\n", "<br/>")


def personal_plan(plan: PlanDocument) -> bytes:
    """The personal plan as a PDF to give to the participant."""
    buffer = io.BytesIO()
    styles = getSampleStyleSheet()
    title = ParagraphStyle("t", parent=styles["Title"], fontName="Helvetica-Bold", fontSize=24, leading=30)
    heading = ParagraphStyle("h", parent=styles["Heading2"], fontName="Helvetica-Bold", fontSize=15, spaceBefore=14)
    body = ParagraphStyle("b", parent=styles["BodyText"], fontName="Helvetica", fontSize=12, leading=17)
    muted = ParagraphStyle("m", parent=body, textColor=colors.HexColor("#4a4a4a"), fontSize=10, leading=14)
    owner = f"van {escape(plan.first_name)}" if plan.first_name else ""
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=2.2 * cm,
        rightMargin=2.2 * cm,
        topMargin=2 * cm,
        bottomMargin=2 * cm,
        title="Mijn persoonlijk plan",
        author=plan.organisation or "Meer contact",
    )
    story: list[object] = [
        Paragraph(f"Persoonlijk plan {owner}".strip(), title),
        Paragraph(
            "Dit plan heeft u samen met uw coach gemaakt. Het is van u: u mag het altijd aanvullen of veranderen.",
            body,
        ),
        Spacer(1, 0.3 * cm),
    ]
    facts = [f"Versie {plan.version}, {plan.saved_on:%d-%m-%Y}"]
    if plan.coach_name:
        facts.append(f"Coach: {escape(plan.coach_name)}")
    if plan.organisation:
        facts.append(escape(plan.organisation))
    story.append(Paragraph(" · ".join(facts), muted))
    sections = [
        ("Hoe het begon", plan.noticed_how),
        ("Mijn vraag, in mijn eigen woorden", plan.own_question),
    ]
    for name, value in sections:
        if value:
            story += [Paragraph(name, heading), Paragraph(_text(value), body)]
    if plan.causes or plan.causes_other:
        story.append(Paragraph("Wat meespeelt", heading))
        if plan.causes:
            story.append(
                ListFlowable(
                    [ListItem(Paragraph(escape(cause), body), leftIndent=12) for cause in plan.causes],
                    bulletType="bullet",
                    start="•",
                )
            )
        if plan.causes_other:
            story.append(Paragraph(_text(plan.causes_other), body))
    for name, value in (("Mijn doelen", plan.goals), ("De stappen die we hebben afgesproken", plan.steps)):
        if value:
            story += [Paragraph(name, heading), Paragraph(_text(value), body)]
    if plan.offers:
        story.append(Paragraph("Wat er bij mij in de buurt is", heading))
        story.append(
            ListFlowable(
                [ListItem(Paragraph("<br/>".join(offer.lines()), body), leftIndent=12) for offer in plan.offers],
                bulletType="bullet",
                start="•",
            )
        )
    document.build(story)
    return buffer.getvalue()

"""Logo checks: only real PNG or JPEG images of a sensible size get through."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from services.enrolment.domain import check_logo
from shared.errors import Refusal

LIMITS = {"max_bytes": 200_000, "max_side": 1000}


def image_bytes(fmt: str, size: tuple[int, int] = (120, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (31, 95, 139)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg")])
def test_png_and_jpeg_are_accepted(fmt: str, kind: str) -> None:
    data = image_bytes(fmt)
    checked = check_logo(data, **LIMITS)
    assert checked.format == kind and checked.content_type == f"image/{kind}"
    assert (checked.width, checked.height) == (120, 60)
    assert checked.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00",
        b"\x89PNG\r\n\x1a\n this is not really a png",
        b"%PDF-1.7",
    ],
)
def test_svg_and_everything_that_is_not_a_real_png_or_jpeg_is_refused(data: bytes) -> None:
    with pytest.raises(Refusal) as refused:
        check_logo(data, **LIMITS)
    assert refused.value.kind == "unsupported" and refused.value.field == "logo"


def test_a_gif_is_refused_even_though_pillow_can_read_it() -> None:
    with pytest.raises(Refusal) as refused:
        check_logo(image_bytes("GIF"), **LIMITS)
    assert refused.value.kind == "unsupported"


def test_a_truncated_png_is_refused() -> None:
    data = image_bytes("PNG", (400, 400))
    with pytest.raises(Refusal):
        check_logo(data[: len(data) // 2], **LIMITS)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    with pytest.raises(Refusal) as refused:
        check_logo(b"\x89PNG" + b"0" * 300_000, **LIMITS)
    assert refused.value.kind == "too_large"


@pytest.mark.parametrize("size", [(1001, 50), (50, 1001), (8, 8)])
def test_dimensions_out_of_range_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(Refusal) as refused:
        check_logo(image_bytes("PNG", size), **LIMITS)
    assert refused.value.kind == "invalid" and "pixels" in refused.value.message


def test_empty_file_is_refused() -> None:
    with pytest.raises(Refusal):
        check_logo(b"", **LIMITS)

"""Reading what a PDF made by reportlab says, for tests (no PDF library needed)."""

import base64
import re
import zlib


def pdf_text(pdf: bytes) -> str:
    """The text drawn on the PDF's pages (reportlab writes each page's content stream
    compressed, then in ASCII85)."""
    streams = re.findall(rb"/ASCII85Decode /FlateDecode.*?stream\r?\n(.*?)~>\s*endstream", pdf, re.DOTALL)
    return "".join(zlib.decompress(base64.a85decode(stream)).decode("latin-1") for stream in streams)

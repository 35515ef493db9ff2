"""PDFs an attacker would send, written as raw bytes (no library decides what is valid).

Each is small on the wire and expensive (or impossible) to read: the point is to make a
text extractor spend CPU, memory or output far beyond what the upload's size suggests.
"""

from __future__ import annotations

import zlib

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _document(page_streams: list[bytes], *, page_count: int | None = None) -> bytes:
    """A valid PDF: catalog, pages, a font, and one content stream per distinct page.

    With ``page_count`` greater than the streams given, pages reuse the streams in turn,
    so a thousand pages cost a few bytes each.
    """
    count = page_count or len(page_streams)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below once page object numbers are known
        FONT,
    ]
    stream_ids = []
    for raw in page_streams:
        packed = zlib.compress(raw, 9)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed)
            + packed
            + b"\nendstream"
        )
        stream_ids.append(len(objects))
    page_ids = []
    for i in range(count):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % stream_ids[i % len(stream_ids)]
        )
        page_ids.append(len(objects))
    kids = b" ".join(b"%d 0 R" % n for n in page_ids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count)
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_pdf(text: str) -> bytes:
    """A harmless one-page PDF saying ``text``."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return _document([b"BT /F1 12 Tf 72 720 Td (" + escaped.encode("latin-1") + b") Tj ET"])


def operator_flood(repeats: int = 1_000_000, pages: int = 1) -> bytes:
    """A content stream repeating a text operator ``repeats`` times (~2 KB compressed):
    seconds of CPU per page in a pure-Python extractor, and ~``repeats`` characters."""
    return _document([b"BT /F1 12 Tf " + b"(a) Tj " * repeats + b"ET"], page_count=pages)


def decompression_bomb(megabytes: int = 300) -> bytes:
    """A content stream that inflates ~1000-fold: past any sane extractor's output limit."""
    return _document([b" " * (megabytes * 1024 * 1024)])


def many_pages(count: int) -> bytes:
    """``count`` pages sharing one tiny content stream."""
    return _document([b"BT /F1 12 Tf 72 720 Td (p) Tj ET"], page_count=count)


def broken_xref() -> bytes:
    """A PDF whose cross-reference table points into nothing and whose trailer lies."""
    return b"%PDF-1.7\nxref\n0 9999999\n0000000000 65535 f \ntrailer\n<< /Root 77 0 R >>\n%%EOF"

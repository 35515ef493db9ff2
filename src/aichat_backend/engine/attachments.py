"""Files sent with a message: checked, fingerprinted, and turned into what a model reads.

Text-like files go to the model as text, images as image parts, PDFs as their extracted
text; anything else is refused before anything is stored.

Only PDFs are parsed here, and never on the event loop (``pdf_extractor``). Images are
not decoded by us at all: their magic numbers are checked and the bytes go to the model
as they came; text is a UTF-8 decode of at most ``max_bytes``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from aichat_backend.domain import Attachment
from aichat_backend.engine.pdf_extractor import PdfExtractor, PdfRefused, refusal
from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
TEXT_APPLICATION_TYPES = {
    "application/json",
    "application/ld+json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/sql",
    "application/javascript",
    "application/typescript",
    "application/x-python",
    "application/x-sh",
    "application/x-shellscript",
    "application/graphql",
    "application/x-ndjson",
}
PDF_TYPE = "application/pdf"
# Magic numbers, so a file that merely claims to be an image is not sent as one.
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
MAX_FILENAME = 255


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    max_bytes: int
    max_count: int
    # Its worker processes start at the first PDF unless the owner warms them first.
    pdf: PdfExtractor = field(default_factory=PdfExtractor)


def _is_image(mime: str, content: bytes) -> bool:
    if mime == "image/webp":  # RIFF is any RIFF file (WAV, AVI): the form type says WebP
        return content[:4] == b"RIFF" and content[8:12] == b"WEBP"
    return content.startswith(IMAGE_MAGIC[mime])


def _unsupported(filename: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"attachment {filename[:80]!r}: {why}",
        reason=Reason.UNSUPPORTED_ATTACHMENT,
        field="attachments",
        metadata={"filename": filename[:255]},
    )


def is_text_type(mime: str) -> bool:
    return mime.startswith("text/") or mime in TEXT_APPLICATION_TYPES or mime.endswith("+json")


async def prepare(
    files: list[tuple[str, str, bytes]], limits: AttachmentLimits, user_id: str
) -> list[Attachment]:
    """(filename, mime type, content) → stored attachments, or INVALID_ARGUMENT.

    ``user_id``: whose PDFs these are (the readers are shared fairly between users)."""
    if len(files) > limits.max_count:
        raise InvalidArgument(
            f"at most {limits.max_count} attachments per message",
            reason=Reason.TOO_MANY_ATTACHMENTS,
            field="attachments",
        )
    prepared = []
    for filename, raw_mime, content in files:
        mime = raw_mime.split(";", 1)[0].strip().lower()
        if not filename or len(filename) > MAX_FILENAME or any(c in filename for c in "/\\\x00"):
            raise InvalidArgument(
                "attachment filename must be 1-255 characters without path separators",
                reason=Reason.INVALID_ATTACHMENT,
                field="attachments.filename",
            )
        if len(content) > limits.max_bytes:
            raise InvalidArgument(
                f"attachment {filename[:80]!r} is {len(content)} bytes; the limit is "
                f"{limits.max_bytes}",
                reason=Reason.ATTACHMENT_TOO_LARGE,
                field="attachments.content",
                metadata={"filename": filename, "limit_bytes": str(limits.max_bytes)},
            )
        text: str | None
        if mime in IMAGE_TYPES:
            if not _is_image(mime, content):
                raise _unsupported(filename, f"content is not a {mime} image")
            text = None
        elif mime == PDF_TYPE:
            try:
                text = await limits.pdf.extract(content, user_id)
            except PdfRefused as refused:
                raise refusal(filename, refused) from None
        elif is_text_type(mime):
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                raise _unsupported(filename, "text files must be UTF-8") from None
        else:
            raise _unsupported(
                filename,
                f"type {mime or '(none)'} is not supported: send text, JSON, CSV, Markdown, "
                "source code, PNG/JPEG/GIF/WebP images or PDF",
            )
        prepared.append(
            Attachment(
                filename=filename,
                mime_type=mime,
                size_bytes=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                content=content,
                text_content=text,
            )
        )
    return prepared

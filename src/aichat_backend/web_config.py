"""What the web page needs to know of the settings, as the JSON file Envoy serves it from.

The page (src/aichat_web) is static files that Envoy answers from disk, so settings reach
it as one small generated file, ``var/web-config.json`` in envoy.yaml: the application
name and the attachment limits the backend will enforce (shown before an upload, so a user
never waits for a file the server would refuse). ``aichat-backend web-config --out FILE``
writes it from the same settings sources as ``serve``; `make run` and the tests do that.
"""

from __future__ import annotations

import json
from typing import Any

from aichat_backend.config import Settings


def page_config(settings: Settings) -> dict[str, Any]:
    return {
        "appName": settings.app_name,
        "maxAttachmentBytes": settings.max_attachment_bytes,
        "maxAttachmentsPerMessage": settings.max_attachments_per_message,
        # The whole JSON request body (base64 grows files by a third) stays within this.
        "maxMessageBytes": settings.max_message_bytes,
    }


def page_config_json(settings: Settings) -> str:
    return json.dumps(page_config(settings), indent=2) + "\n"

"""A script played over one connection, in a wire format's pieces.

Gates, cuts, hangs and in-stream errors happen here, between the pieces a wire format
writes; every wait races the client's hang-up (``http_wire.Response``).
"""

from __future__ import annotations

import uuid

from aichat_devtools.fake_llm.anthropic_format import AnthropicFormat
from aichat_devtools.fake_llm.http_wire import Response, chunk, head, reason_phrase, send_json
from aichat_devtools.fake_llm.openai_format import OpenAIFormat
from aichat_devtools.fake_llm.script import Script

Format = OpenAIFormat | AnthropicFormat


async def play(response: Response, fmt: Format, script: Script, *, stream: bool) -> bool:
    """Play the script; False when it ended by cutting the connection."""
    request_id = (fmt.request_id_header, "req_" + uuid.uuid4().hex[:16])
    if not (stream and script.ttft_after_headers):
        await response.pause(script.ttft)
    if script.error_status is not None and not (stream and script.error_after is not None):
        status = script.error_status
        message = script.error_message or reason_phrase(status)
        extra = [request_id]
        if status == 429 and script.retry_after is not None:
            extra.append(("retry-after", f"{script.retry_after:g}"))
        await send_json(response.conn, status, fmt.error(status, message, script.error_type), extra)
        return True
    if not stream:
        return await _play_whole(response, fmt, script, request_id)

    response_head = head(
        200,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            ("connection", "keep-alive"),
            request_id,
        ],
    )
    await response.write(response_head + chunk(fmt.start()))
    if script.ttft_after_headers:
        await response.pause(script.ttft)
    for sent, piece in enumerate([*fmt.pieces, None]):
        if sent == script.cut_after:
            response.cut()
            return False
        if sent == script.hang_after:
            await response.hang()
        if sent == script.gate_after and script.gate is not None:
            await script.gate.wait()
            if script.delay_after_gate is not None:
                script.token_delay = script.delay_after_gate
        if sent == script.error_after:
            status = script.error_status or (529 if isinstance(fmt, AnthropicFormat) else 500)
            message = script.error_message or reason_phrase(status)
            await response.write(
                chunk(fmt.stream_error(status, message, script.error_type)) + b"0\r\n\r\n"
            )
            return True
        if piece is None:
            break
        if sent and script.token_delay:
            await response.pause(script.token_delay)
        await response.write(chunk(fmt.piece(piece)))
    await response.write(chunk(fmt.end()) + b"0\r\n\r\n")
    return True


async def _play_whole(
    response: Response, fmt: Format, script: Script, request_id: tuple[str, str]
) -> bool:
    count = len(fmt.pieces)
    if script.cut_after is not None and script.cut_after <= count:
        response.cut()
        return False
    if script.hang_after is not None and script.hang_after <= count:
        await response.hang()
    await response.pause(script.token_delay * max(0, count - 1))
    await send_json(response.conn, 200, fmt.whole(), [request_id])
    return True

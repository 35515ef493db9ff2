"""Hostile PDFs are refused without stalling anyone else (issue 19, part A).

Extraction runs in a worker process bounded in CPU time, wall time, pages, memory and
extracted characters; each refusal is INVALID_ARGUMENT with a reason, and nothing of the
turn is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_devtools.fake_llm import Script
from tests.support import hostile_pdf
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md, retry_info

pytestmark = pytest.mark.timeout(90)

COOLDOWN = 30
LIMITS = {
    "pdf_max_pages": 50,
    "pdf_max_chars": 20_000,
    "pdf_cpu_seconds": 2,
    # The CPU budget is what refuses the costly PDFs; the wall-clock bound only has to be
    # longer than an ordinary PDF's reading takes on a loaded test machine.
    "pdf_timeout_seconds": 15,
}


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", sqlite_url, **LIMITS) as s:
        yield s


def _pdf(content: bytes, name: str = "x.pdf") -> rpb.Attachment:
    return rpb.Attachment(filename=name, mime_type="application/pdf", content=content)


async def _refused(stack: ChatStack, user: str, content: bytes) -> tuple[grpc.StatusCode, str]:
    session = await stack.new_session(user)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "read this", attachments=[_pdf(content)])
    assert await stack.messages(user, session) == []  # nothing of the turn stored
    assert stack.fake.requests == []
    return err.value.code(), error_info(err.value).reason


# Made by the test that uses them, not at collection: every worker collects every module,
# and the 300 MB bomb alone costs ~2.5 s of CPU to compress.
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: hostile_pdf.operator_flood(1_000_000), "PDF_TOO_COSTLY"),
        (lambda: hostile_pdf.decompression_bomb(300), "UNSUPPORTED_ATTACHMENT"),
        (lambda: hostile_pdf.many_pages(400), "PDF_TOO_MANY_PAGES"),
        (lambda: hostile_pdf.operator_flood(30_000), "PDF_TEXT_TOO_LONG"),
        (hostile_pdf.broken_xref, "UNSUPPORTED_ATTACHMENT"),
        (lambda: b"%PDF-1.7\n" + b"\x00" * 4096, "UNSUPPORTED_ATTACHMENT"),
    ],
    ids=["operator-flood", "decompression-bomb", "many-pages", "too-much-text", "xref", "junk"],
)
async def test_hostile_pdf_is_refused(
    stack: ChatStack, user: str, make: Callable[[], bytes], reason: str
) -> None:
    code, got = await _refused(stack, user, make())
    assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


async def test_encrypted_pdf_is_refused(stack: ChatStack, user: str) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="locked")
    code, reason = await _refused(stack, user, bytes(pdf.output()))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_ATTACHMENT")


async def test_a_normal_pdf_still_reaches_the_model_after_a_refusal(
    stack: ChatStack, user: str, other_user: str
) -> None:
    await _refused(stack, user, hostile_pdf.operator_flood(1_000_000))  # worker replaced
    # Another user's (the sender of a costly PDF waits first: see the cool-down below).
    session = await stack.new_session(other_user)
    stack.fake.enqueue(Script(tokens=["ok"]))
    events = await stack.turn(
        other_user,
        session,
        "read",
        attachments=[_pdf(hostile_pdf.text_pdf("Revenue grew 12%"))],
    )
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert "Revenue grew 12%" in str(stack.fake.requests[-1].body)


async def test_other_users_are_served_while_a_hostile_pdf_is_being_read(
    sqlite_url: str, user: str
) -> None:
    # The flood needs over 7 s of CPU before pypdf gives up on it; a 4 s budget ends it
    # first, with a long window in which the extraction is known to be running. The wall
    # clock bound is generous: on a loaded machine 4 s of CPU can take far longer.
    async with chat_stack(
        "openai", sqlite_url, pdf_cpu_seconds=4, pdf_timeout_seconds=60, pdf_max_chars=10**7
    ) as stack:
        extractor = stack.server.app.engine.pdf_extractor
        attacker = await stack.new_session(user)
        hostile = asyncio.create_task(
            stack.turn(
                user, attacker, "x", attachments=[_pdf(hostile_pdf.operator_flood(1_000_000))]
            )
        )
        async with asyncio.timeout(20):
            await extractor.wait_busy()
        health = health_pb2_grpc.HealthStub(stack.server.channel)
        victim = user + "-other"
        await stack.new_session(victim)
        for _ in range(20):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            page = await stack.server.sessions.ListSessions(
                spb.ListSessionsRequest(), metadata=md(victim)
            )
            assert len(page.sessions) == 1
        # All of that happened while the hostile PDF was still being read.
        assert extractor.busy == 1 and not hostile.done()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await hostile
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "PDF_TOO_COSTLY"


# --- readers shared fairly (issue 24, item 3) ---------------------------------------------


async def test_a_user_whose_pdf_was_too_costly_waits_before_the_next(
    stack: ChatStack, user: str, other_user: str
) -> None:
    code, reason = await _refused(stack, user, hostile_pdf.operator_flood(1_000_000))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PDF_TOO_COSTLY")
    session = await stack.new_session(user)
    normal = [_pdf(hostile_pdf.text_pdf("Revenue grew 12%"))]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "read", attachments=normal)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err.value).reason == "PDF_COOLING_DOWN"
    retry = retry_info(err.value)
    assert retry is not None and 0 < retry.retry_delay.seconds <= COOLDOWN
    assert await stack.messages(user, session) == []
    # Only that user waits: another user's PDF is read at once.
    other = await stack.new_session(other_user)
    stack.fake.enqueue(Script(tokens=["ok"]))
    events = await stack.turn(other_user, other, "read", attachments=normal)
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED


async def test_one_users_pdfs_are_read_one_at_a_time_and_others_go_on(
    sqlite_url: str, user: str, other_user: str
) -> None:
    # Two readers. The attacker sends two hostile PDFs at once: one is read, the other
    # waits for the attacker's own turn, so the second reader stays free and another
    # user's PDF is read while both hostile ones are still pending.
    async with chat_stack(
        "openai",
        sqlite_url,
        pdf_workers=2,
        pdf_cpu_seconds=4,
        pdf_timeout_seconds=60,
        pdf_max_chars=10**7,
    ) as stack:
        extractor = stack.server.app.engine.pdf_extractor
        hostile = []
        for _ in range(2):
            session = await stack.new_session(user)
            flood = [_pdf(hostile_pdf.operator_flood(1_000_000))]
            hostile.append(asyncio.create_task(stack.turn(user, session, "x", attachments=flood)))
        async with asyncio.timeout(20):
            await extractor.wait_busy()
        victim = await stack.new_session(other_user)
        stack.fake.enqueue(Script(tokens=["ok"]))
        events = await stack.turn(
            other_user, victim, "read", attachments=[_pdf(hostile_pdf.text_pdf("fine"))]
        )
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        assert not any(task.done() for task in hostile)  # both still pending all along
        reasons = []
        for task in hostile:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await task
            reasons.append(error_info(err.value).reason)
        # The first was too costly; the second, waiting behind it, then met the cool-down.
        assert sorted(reasons) == ["PDF_COOLING_DOWN", "PDF_TOO_COSTLY"]


async def test_readers_default_to_more_than_one(sqlite_url: str) -> None:
    async with chat_stack("openai", sqlite_url) as stack:
        assert stack.server.app.engine.pdf_extractor.limits.workers >= 2

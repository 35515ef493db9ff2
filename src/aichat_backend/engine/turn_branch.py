"""Where a turn goes in the session's tree, and what the model reads for it.

A turn is a user message and its answer hung below a parent. StreamChat hangs them below
the session's active message; EditMessage below the edited message's parent (a sibling
of it); RegenerateAnswer stores no user message and hangs only a new answer below the
question answered again. In every case the model reads the path from the root to the
new message's parent — never another branch — then the user message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aichat_backend import names
from aichat_backend.domain import Attachment, Message, Role
from aichat_backend.engine.requests import TurnRequest
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import FailedPrecondition
from aichat_backend.reasons import Reason
from aichat_backend.records import HistoryWindow, TurnContext

# A regenerate or an edit replaces an answer (or a question above it): calls that still
# wait for approval are superseded, and a later ResolveToolCalls on them is refused with
# TOOL_CALL_SUPERSEDED (records.DENIED_BY_BRANCH is the text they are denied with).


@dataclass(slots=True)
class BranchPoint:
    context: TurnContext  # its history: the path to ``parent_id``, oldest first
    parent_id: str  # the new user message's parent ('' for a first message)
    question: Message | None = None  # RegenerateAnswer: the question answered again
    files: list[Attachment] | None = None  # the user message's files when not the request's


async def branch_point(
    store: TurnStore, req: TurnRequest, session_id: str, window: HistoryWindow
) -> BranchPoint:
    past = dataclasses.replace(window, extra=1)  # the path ends at the message replaced
    if req.regenerate:
        target = names.parse_message(req.regenerate).message_id
        question_id = await store.question_of(req.user_id, session_id, target)
        context = await store.load_context(req.user_id, session_id, past, question_id)
        question = context.history.pop()
        req.text = question.text
        return BranchPoint(context, question.parent_id, question, question.attachments)
    if req.edit_of:
        edit_id = names.parse_message(req.edit_of).message_id
        context = await store.load_context(req.user_id, session_id, past, edit_id)
        edited = context.history.pop()
        if edited.role is not Role.USER:
            raise FailedPrecondition(
                "only a user message can be edited; an answer is regenerated instead",
                reason=Reason.NOT_A_USER_MESSAGE,
                metadata={"message": edited.name, "role": edited.role.value},
            )
        keep = not req.attachments and not req.drop_attachments
        return BranchPoint(context, edited.parent_id, files=edited.attachments if keep else None)
    context = await store.load_context(req.user_id, session_id, window)
    return BranchPoint(context, context.session.active_message_id)

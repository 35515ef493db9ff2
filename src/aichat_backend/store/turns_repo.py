"""The storage side of a chat turn, in three repositories by what each owns.

- ``turn_leases``: the session's claim (claim, renew, release) and the sweep of turns a
  crash left behind;
- ``answers_repo``: the user message, each round's answer, the turn's result;
- ``tool_calls_repo``: the calls an answer asked for and the user's decisions on them.

This module only names them together for callers that want one import.
"""

from __future__ import annotations

from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.messages_repo import new_message_id
from aichat_backend.store.tool_calls_repo import PendingCall, ToolCallRepository
from aichat_backend.store.turn_leases import LeaseRepository, TurnClaim, sweep_interrupted

# The earlier name of the repository of a turn's messages (begin, finish, turn_result).
TurnRepository = AnswerRepository

__all__ = [
    "AnswerRepository",
    "LeaseRepository",
    "PendingCall",
    "ToolCallRepository",
    "TurnClaim",
    "TurnRepository",
    "new_message_id",
    "sweep_interrupted",
]

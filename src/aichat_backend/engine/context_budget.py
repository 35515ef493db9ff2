"""Which messages of the conversation the model is sent: the newest that fit its window.

Counting is offline and errs high: no tokenizer or vocabulary is downloaded, a text is
taken as one token per 3 UTF-8 bytes (English runs about 4 bytes a token in every
tokenizer in use, code and other scripts a little less), plus a few tokens per message
for the role markers. The provider's own count of an earlier call of the same session
(an answer's ``input_tokens``) then scales the estimate to the model's real tokenizer.

The selection works on the ordered list of messages of the conversation's path (oldest
first), whatever query produced it: the newest summary checkpoint on it
(``Message.context_summary``) stands in for its message and every one before it, and the
newest messages after it are taken while they fit ``Budget.input_tokens``. Pure and
allocation-light: it runs before every turn's first token (issue 26: ≤ 0.3 ms for 100
messages).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aichat_backend.domain import ContextSummary, Message, Role

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD = 8  # role markers and separators of one message in every chat format
IMAGE_TOKENS = 1_600  # the most one image costs at OpenAI (high detail) and Anthropic
TOOL_RESULT_OVERHEAD = 40  # the <tool_output> wrapper context.tool_output puts around it
# The provider's count corrects ours by at most this much either way: an earlier call
# counted against a context this estimate cannot reproduce exactly (a count-window cut,
# a summary made since) must not make the next one wildly wrong.
SCALE_MIN, SCALE_MAX = 0.5, 2.0


def text_tokens(text: str) -> int:
    n = len(text) if text.isascii() else len(text.encode())
    return -(-n // BYTES_PER_TOKEN)


def message_tokens(m: Message) -> int:
    """What one stored message costs in a request (its tool results and files included)."""
    tokens = MESSAGE_OVERHEAD + text_tokens(m.text)
    for a in m.attachments:
        if a.text_content is not None:
            tokens += text_tokens(a.text_content) + text_tokens(a.filename) + 12
        elif a.content:
            tokens += IMAGE_TOKENS
    for c in m.tool_calls:
        tokens += 2 * MESSAGE_OVERHEAD + TOOL_RESULT_OVERHEAD + text_tokens(c.tool_name)
        tokens += text_tokens(json.dumps(c.arguments)) + text_tokens(c.result_text)
    for b in m.reasoning:  # sent back on Anthropic tool rounds; counted wherever it is
        tokens += text_tokens(b.text)
    return tokens


def summary_message_text(summary: ContextSummary) -> str:
    """How a summary is sent: as part of the system prompt, marked as what it is."""
    return (
        "Summary of the earlier part of this conversation (its messages are not repeated "
        f"here):\n<conversation_summary>\n{summary.text}\n</conversation_summary>"
    )


@dataclass(frozen=True, slots=True)
class ContextConfig:
    margin_ratio: float = 0.05  # of the window, never filled: our count is an estimate
    compaction: bool = True  # False: what does not fit is left out, never summarized
    keep_ratio: float = 0.5  # of the room, kept verbatim by a compaction
    summary_max_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class Budget:
    """A request's room: the window less what is kept for the answer and a margin."""

    window: int
    output_reserve: int
    margin: int

    @property
    def input_tokens(self) -> int:
        return max(0, self.window - self.output_reserve - self.margin)


def budget_for(
    window: int, max_output: int, requested_output: int | None, margin_ratio: float
) -> Budget:
    """The answer keeps the turn's own limit, else the model's (at most a quarter of the
    window: a long answer is rarer than a long conversation, and the provider refuses
    only what does not fit)."""
    reserve = min(requested_output or min(max_output, max(window // 4, 1)), max_output)
    return Budget(window, reserve, int(window * margin_ratio))


@dataclass(slots=True)
class Choice:
    """What a turn sends of its conversation: ``path[start:]`` verbatim after the summary."""

    summary: ContextSummary | None
    summary_at: int  # index in the path of the message carrying the summary; -1: none
    start: int  # index of the first message sent verbatim
    fixed: int  # scaled tokens of what is always sent: system prompt, tools, new message
    tokens: int  # scaled tokens of everything sent
    costs: list[int]  # scaled tokens of each message after the summary, oldest first
    scale: float
    overflow: bool  # messages after the summary were left out for want of room

    @property
    def verbatim(self) -> int:
        return len(self.costs) - (self.start - self.summary_at - 1)


def provider_scale(path: Sequence[Message], fixed_before: int) -> float:
    """Provider tokens per estimated token, from the newest answer whose input the
    provider counted: what that call read was ``fixed_before`` (system prompt and tools)
    plus the summary in effect and the messages after it up to that answer."""
    for j in range(len(path) - 1, -1, -1):
        m = path[j]
        if m.role is not Role.ASSISTANT or m.input_tokens <= 0:
            continue
        estimate = fixed_before
        for k in range(j - 1, -1, -1):
            earlier = path[k]
            if earlier.context_summary is not None:
                estimate += text_tokens(summary_message_text(earlier.context_summary))
                break
            estimate += message_tokens(earlier)
        if estimate <= 0:
            return 1.0
        return min(SCALE_MAX, max(SCALE_MIN, m.input_tokens / estimate))
    return 1.0


def choose(
    path: Sequence[Message],
    fixed: int,
    budget: Budget,
    scale: float | None = None,
    fixed_before: int = 0,
) -> Choice:
    """The newest messages after the path's newest summary that fit with ``fixed``
    (unscaled tokens of the system prompt, tools and the new message) in the budget.
    ``scale`` None: the provider's correction (``provider_scale``), from the same counts."""
    summary_at = -1
    for i in range(len(path) - 1, -1, -1):
        if path[i].context_summary is not None:
            summary_at = i
            break
    summary = path[summary_at].context_summary if summary_at >= 0 else None
    summary_cost = text_tokens(summary_message_text(summary)) if summary is not None else 0
    raw = [message_tokens(m) for m in path[summary_at + 1 :]]
    if scale is None:
        scale = _scale(path, summary_at, raw, fixed_before + summary_cost)
    fixed_scaled = int(fixed * scale) + 1
    used = fixed_scaled + (int(summary_cost * scale) + 1 if summary is not None else 0)
    costs = [int(c * scale) + 1 for c in raw]
    room = budget.input_tokens
    start = len(path)
    for i in range(len(costs) - 1, -1, -1):
        if used + costs[i] > room:
            break
        used += costs[i]
        start = summary_at + 1 + i
    overflow = start > summary_at + 1
    return Choice(summary, summary_at, start, fixed_scaled, used, costs, scale, overflow)


def _scale(path: Sequence[Message], summary_at: int, raw: list[int], before: int) -> float:
    """``provider_scale`` without counting a message twice: the newest counted answer
    after the summary read ``before`` and the messages between them."""
    for j in range(len(path) - 1, summary_at, -1):
        m = path[j]
        if m.role is Role.ASSISTANT and m.input_tokens > 0:
            estimate = before + sum(raw[: j - summary_at - 1])
            return min(SCALE_MAX, max(SCALE_MIN, m.input_tokens / max(1, estimate)))
    return provider_scale(path[: summary_at + 1], before) if summary_at >= 0 else 1.0


def fold_point(path: Sequence[Message], choice: Choice, room: int) -> int:
    """Where a compaction cuts: ``path[choice.summary_at + 1 : cut]`` is folded and
    ``path[cut:]`` kept, the kept part the newest messages within ``room`` (scaled tokens,
    the fixed part included) opening with a user message; ``choice.summary_at + 1``
    when there is nothing to fold."""
    first = choice.summary_at + 1
    used = choice.fixed
    keep = len(path)
    for i in range(len(choice.costs) - 1, -1, -1):
        if used + choice.costs[i] > room:
            break
        used += choice.costs[i]
        keep = first + i
    # The kept part opens with the user, and a tool call stays with its answer.
    while keep < len(path) and path[keep].role is not Role.USER:
        keep += 1
    return keep if keep > first else first

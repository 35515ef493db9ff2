"""What one model call used and cost, and where that is written: its answer, its turn.

A call's usage is the provider's counts (``StreamFinished``) priced with the catalogue's
prices of the model that answered (a fallback's, when one stood in), rounded once to
the nano unit (``money``). The same ``Usage`` goes to the answer that round wrote, to
the turn's running totals (``TurnEnded``) and, through the store, to the day's row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aichat_backend.domain import Message
from aichat_backend.money import Cost, add_costs
from aichat_backend.providers.base import StreamFinished
from aichat_backend.providers.pricing import ModelPrices
from aichat_backend.records import Usage

# The prices of a catalogue model by name (None: it has none).
PricesOf = Callable[[str], ModelPrices | None]


class Tally(Protocol):
    """Anything that carries a usage's counts (a message, a turn's totals)."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    cost: Cost | None


def call_usage(model: str, finished: StreamFinished | None, prices: PricesOf) -> Usage | None:
    """The usage of a model call that reported any, counted for the model that answered."""
    if finished is None or not (finished.input_tokens or finished.output_tokens):
        return None
    priced = prices(model)
    cost = None
    if priced is not None:
        amount = priced.cost(
            input_tokens=finished.input_tokens,
            output_tokens=finished.output_tokens,
            cached_input_tokens=finished.cached_input_tokens,
            cache_write_tokens=finished.cache_write_tokens,
        )
        cost = Cost.of(amount, priced.currency)
    return Usage(
        model,
        finished.input_tokens,
        finished.output_tokens,
        reasoning_tokens=finished.reasoning_tokens,
        cached_input_tokens=finished.cached_input_tokens,
        cache_write_tokens=finished.cache_write_tokens,
        cost=cost,
    )


def set_usage(target: Message, usage: Usage | None) -> None:
    """A round's answer carries its own call's usage (unchanged when none was reported)."""
    if usage is None:
        return
    target.input_tokens, target.output_tokens = usage.input_tokens, usage.output_tokens
    target.reasoning_tokens = usage.reasoning_tokens
    target.cached_input_tokens = usage.cached_input_tokens
    target.cache_write_tokens = usage.cache_write_tokens
    target.cost = usage.cost


def add_usage(target: Tally, usage: Usage | None) -> None:
    """Add a call's usage to running totals (a turn's)."""
    if usage is None:
        return
    target.input_tokens += usage.input_tokens
    target.output_tokens += usage.output_tokens
    target.reasoning_tokens += usage.reasoning_tokens
    target.cached_input_tokens += usage.cached_input_tokens
    target.cache_write_tokens += usage.cache_write_tokens
    target.cost = add_costs(target.cost, usage.cost)


def copy_usage(target: Tally, source: Tally) -> None:
    """``target`` says what ``source`` says."""
    target.input_tokens, target.output_tokens = source.input_tokens, source.output_tokens
    target.reasoning_tokens = source.reasoning_tokens
    target.cached_input_tokens = source.cached_input_tokens
    target.cache_write_tokens = source.cache_write_tokens
    target.cost = source.cost

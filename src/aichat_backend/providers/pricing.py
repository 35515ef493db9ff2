"""What a model costs: its prices per million tokens, and the cost of one model call.

Money is ``Decimal`` from the catalogue file to the cost: a float would turn the
operator's "0.15" into 0.1499999… and drift when turns are summed into budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """Prices per million tokens, in ``currency`` (ISO 4217, as the operator names it).

    Cached input is what the provider charges for input read from its prompt cache
    (OpenAI ``cached_tokens``, Anthropic ``cache_read_input_tokens``), cache writes what
    Anthropic charges for input written to it (``cache_creation_input_tokens``); either,
    when not given, costs as fresh input.
    """

    currency: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None

    def cost(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Decimal:
        """The cost of one call, from its usage (``StreamFinished``'s token counts).

        ``input_tokens`` is every input token, the cached and cache-written ones
        included (as the adapters report it); ``output_tokens`` includes reasoning.
        """
        cached = min(max(cached_input_tokens, 0), max(input_tokens, 0))
        written = min(max(cache_write_tokens, 0), max(input_tokens, 0) - cached)
        fresh = max(input_tokens, 0) - cached - written
        total = (
            fresh * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + max(output_tokens, 0) * self.output
        )
        return total / MILLION

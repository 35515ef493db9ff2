"""Money as the service keeps it: exact, in whole nano units of one currency.

A model call's cost is computed from the catalogue's prices as a ``Decimal`` and rounded
once, there, to the nano unit (10⁻⁹) that ``google.type.Money`` carries. From then on a
cost is an integer count of nanos: a turn's rounds, a day's row in ``usage_daily`` and a
budget's counter in Redis all add integers, so every sum of the same calls is the same
number wherever it is made (a float would drift; a Decimal column is not exact on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

NANOS_PER_UNIT = 1_000_000_000
_NANO = Decimal(1).scaleb(-9)
# What usage_daily says of a row whose calls were priced in two currencies: ISO 4217's
# code for "no currency" (the catalogue's currency changed within one day).
MIXED_CURRENCY = "XXX"


def to_nanos(amount: Decimal) -> int:
    """``amount`` in nano units, rounded half to even (the one rounding of a cost)."""
    return int((amount / _NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)


@dataclass(frozen=True, slots=True)
class Cost:
    """An amount of money: ``nanos`` (10⁻⁹ units) of ``currency`` (ISO 4217)."""

    nanos: int
    currency: str

    @classmethod
    def of(cls, amount: Decimal, currency: str) -> Cost:
        return cls(to_nanos(amount), currency)

    @property
    def amount(self) -> Decimal:
        return from_nanos(self.nanos)

    def plus(self, other: Cost | None) -> Cost:
        """The sum of two costs; a cost plus another currency's is a mistake, not money."""
        if other is None:
            return self
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Cost(self.nanos + other.nanos, self.currency)


def add_costs(a: Cost | None, b: Cost | None) -> Cost | None:
    """Sum where either may be unknown (a model without prices costs nothing known)."""
    if a is None:
        return b
    return a.plus(b)

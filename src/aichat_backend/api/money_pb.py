"""Money as the contract shows it: ``google.type.Money`` from exact amounts and costs."""

from __future__ import annotations

from decimal import Decimal

from google.type import money_pb2

from aichat_backend.money import NANOS_PER_UNIT, Cost, to_nanos


def nanos_pb(nanos: int, currency: str) -> money_pb2.Money:
    """``nanos`` (10⁻⁹ units) as Money: units and nanos carry the same sign."""
    units, rest = divmod(abs(nanos), NANOS_PER_UNIT)
    sign = -1 if nanos < 0 else 1
    return money_pb2.Money(currency_code=currency, units=sign * units, nanos=sign * rest)


def money_pb(amount: Decimal, currency: str) -> money_pb2.Money:
    """An amount as Money, rounded to the nano (half to even)."""
    return nanos_pb(to_nanos(amount), currency)


def cost_pb(cost: Cost) -> money_pb2.Money:
    return nanos_pb(cost.nanos, cost.currency)

"""Money is exact: a cost is rounded once, to the nano unit, then added as integers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aichat_backend.api.money_pb import cost_pb, money_pb
from aichat_backend.money import Cost, add_costs, from_nanos, to_nanos
from aichat_backend.providers.pricing import ModelPrices


def test_a_cost_is_rounded_once_half_to_even() -> None:
    assert to_nanos(Decimal("0.0000000005")) == 0  # half a nano: to the even 0
    assert to_nanos(Decimal("0.0000000015")) == 2
    assert to_nanos(Decimal("1.1")) == 1_100_000_000
    assert from_nanos(1_100_000_000) == Decimal("1.1")


def test_many_small_costs_add_up_exactly() -> None:
    prices = ModelPrices("USD", input=Decimal("0.15"), output=Decimal("0.60"))
    one = Cost.of(prices.cost(input_tokens=7, output_tokens=3), "USD")
    assert one == Cost(2_850, "USD")  # 7 * 0.15 + 3 * 0.60 millionths
    total: Cost | None = None
    for _ in range(100_000):
        total = add_costs(total, one)
    assert total == Cost(285_000_000, "USD") and total.amount == Decimal("0.285")


def test_costs_of_two_currencies_do_not_add() -> None:
    with pytest.raises(ValueError, match="cannot add EUR to USD"):
        Cost(1, "USD").plus(Cost(1, "EUR"))
    assert add_costs(None, None) is None
    assert add_costs(None, Cost(1, "EUR")) == Cost(1, "EUR")


def test_money_messages_carry_units_and_nanos_with_one_sign() -> None:
    paid = cost_pb(Cost(12_345_678_901, "EUR"))
    assert (paid.currency_code, paid.units, paid.nanos) == ("EUR", 12, 345_678_901)
    refund = money_pb(Decimal("-1.5"), "USD")
    assert (refund.units, refund.nanos) == (-1, -500_000_000)

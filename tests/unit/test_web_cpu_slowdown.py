"""The CPU slowdown of the page's rendering bound (tests/e2e/web/cpu_slowdown.py)."""

from __future__ import annotations

from tests.e2e.web.cpu_slowdown import DEVICE_INDEX, MAX_SLOWDOWN, slowdown_for


def test_the_slowed_cpu_is_a_high_end_desktop_slowed_4x() -> None:
    """The device the bound is for; 4x at most, as the issue says; never faster than the host."""
    assert DEVICE_INDEX * MAX_SLOWDOWN == 1750
    assert slowdown_for(1750) == 4.0
    assert slowdown_for(3000) == 4.0
    assert slowdown_for(875) == 2.0
    assert slowdown_for(300) == 1.0

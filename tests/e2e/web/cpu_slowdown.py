"""How far to slow the browser's CPU for the rendering bound (issue 28: "with Chromium's CPU
slowed 4x, no long task over 50 ms").

DevTools' CPU throttling is relative to the host. Lighthouse's 4x is a convention for a
high-end desktop (BenchmarkIndex 1500-2000), which it moves into the mid-tier mobile
bracket; on a weaker host Lighthouse says to lower the multiplier, and DevTools' own
calibration picks it from the same benchmark (lighthouse docs/throttling.md, "Calibrating
the CPU slowdown"; chrome-devtools-frontend CalibrationController.ts). This machine is a
shared VM whose speed moves: its BenchmarkIndex was ~900 on 2026-12-07, where the page
ran at about half the speed it had when the bound was set, and lower again beside the
whole suite. Slowed 4x there, it stands for a device slower than any the bound was
written for, and the bound failed as the machine did, not as the page did.

So the device is fixed and the host is measured: the page is slowed to the device a
high-end desktop slowed 4x is (index DEVICE_INDEX), never more than the issue's 4x, and
the host's index is measured in the same page just before the stream, under the same
load. A page whose tasks really grow still fails: 4x on the old page made a 405 ms task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

# The middle of Lighthouse's high-end desktop bracket (1750), slowed 4x.
DEVICE_INDEX = 1750 / 4
MAX_SLOWDOWN = 4.0

# Lighthouse's BenchmarkIndex, as DevTools' calibration runs it (250 ms per part): the
# mean of a part that makes garbage (string building) and one that makes none (copying
# an array), in iterations per second / 10. Run three times after a warm-up; the median.
BENCHMARK_INDEX_JS = """() => {
  const RUN_MS = 250;
  const withGarbage = () => {
    const start = Date.now(); let n = 0;
    while (Date.now() - start < RUN_MS) {
      let s = "";
      for (let j = 0; j < 10000; j++) s += "a";
      n++;
    }
    return n / 10 / ((Date.now() - start) / 1000);
  };
  const withoutGarbage = () => {
    const a = [], b = [];
    for (let i = 0; i < 100000; i++) a[i] = b[i] = i;
    const start = Date.now(); let n = 0;
    while (n % 10 !== 0 || Date.now() - start < RUN_MS) {
      const [from, to] = n % 2 ? [b, a] : [a, b];
      for (let j = 0; j < from.length; j++) to[j] = from[j];
      n++;
    }
    return n / 10 / ((Date.now() - start) / 1000);
  };
  const index = () => (withGarbage() + withoutGarbage()) / 2;
  index();
  const runs = [index(), index(), index()].sort((x, y) => x - y);
  return runs[1];
}"""


def slowdown_for(host_index: float) -> float:
    """The CPU throttling rate that makes a host of ``host_index`` the bound's device."""
    return max(1.0, min(MAX_SLOWDOWN, host_index / DEVICE_INDEX))


async def device_slowdown(page: Page) -> tuple[float, float]:
    """(the host's BenchmarkIndex measured in ``page`` now, the rate to throttle it by)."""
    index = float(await page.evaluate(BENCHMARK_INDEX_JS))
    return index, slowdown_for(index)

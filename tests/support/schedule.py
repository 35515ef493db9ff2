"""How the suite is split between parallel workers (pytest-xdist's ``-n N``).

The unit of work is one test, except where tests share something a worker holds:

- a test that uses a module- or package-scoped fixture (a stack started once for its
  module, the web page's browser) runs on the worker that runs the rest of that module or
  package, so the stack starts once and is never torn down halfway through;
- tests marked ``xdist_group(name)`` run on one worker, one after another (for tests that
  truly cannot run beside each other; none need it today).

Units are handed out longest first (their last measured duration, in tests/durations.json),
so a 40 s test starts at once instead of ending the run alone. A test not in that file
counts as short; `make test-durations` measures them all again.

Why not xdist's own loadgroup: it passes a test's group to the controller as a suffix of
the test's id, which pytest 9.2's structured node ids silently drop (pytest-xdist issue
1386: every test runs wherever, as if unmarked). Here each worker writes the groups it
collected to a file the controller named, before it reports its collection; the
controller's scheduler (xdist's loadscope, keyed by those groups) reads them once every
worker has collected.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
SHARED_SCOPES = ("module", "package", "class")
UNKNOWN = 0.2  # seconds: most tests take less
SLOW = 10.0  # a test marked slow that has not been measured yet


def group_of(item: pytest.Item) -> str | None:
    """The work unit an item belongs to when it is not one on its own."""
    for mark in item.iter_markers("xdist_group"):
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    info = getattr(item, "_fixtureinfo", None)
    widest: str | None = None
    for defs in info.name2fixturedefs.values() if info is not None else ():
        scope = defs[-1].scope if defs else "function"
        if scope == "package":
            widest = "package"
        elif scope in SHARED_SCOPES and widest is None:
            widest = "module"
    if widest is None:
        return None
    path = Path(item.nodeid.split("::", 1)[0])
    return str(path.parent if widest == "package" else path)


def bare_nodeid(nodeid: str) -> str:
    """A node id without the ``@group`` suffix xdist adds under ``--dist loadgroup``."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def load_durations() -> dict[str, float]:
    try:
        data: dict[str, float] = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return data


def plan(items: list[pytest.Item]) -> list[str | None]:
    """Put the longest units of work first, in place.

    Returns each item's group (None: a unit of its own), in the new order. Items of one
    group stay together and in their original order; the sort is stable.
    """
    known = load_durations()
    groups: list[str | None] = []
    units: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        group = group_of(item)
        groups.append(group)
        units.setdefault(group if group is not None else f"\0{index}", []).append(index)

    def estimate(index: int) -> float:
        item = items[index]
        default = SLOW if item.get_closest_marker("slow") else UNKNOWN
        return known.get(item.nodeid, default)

    ordered = sorted(units.values(), key=lambda unit: -sum(estimate(i) for i in unit))
    order = [index for unit in ordered for index in unit]
    items[:] = [items[i] for i in order]
    return [groups[i] for i in order]


def durations_json(durations: Iterable[tuple[str, float]], floor: float = 0.5) -> str:
    """What `make test-durations` writes: every test that took ``floor`` seconds or more."""
    total: dict[str, float] = {}
    for nodeid, seconds in durations:
        total[bare_nodeid(nodeid)] = total.get(bare_nodeid(nodeid), 0.0) + seconds
    kept = {k: round(v, 1) for k, v in sorted(total.items()) if v >= floor}
    return json.dumps(kept, indent=1) + "\n"


# The xdist side. Workers write {test id: group} to GROUPS_KEY's folder; the controller's
# scheduler reads it.
GROUPS_KEY = "aichat_groups_dir"
_groups_dir = pytest.StashKey[Path]()


def share_groups(config: pytest.Config, items: list[pytest.Item], groups: list[str | None]) -> None:
    """On an xdist worker: tell the controller which tests form one unit of work."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or GROUPS_KEY not in workerinput:
        return
    grouped = {
        bare_nodeid(item.nodeid): group for item, group in zip(items, groups, strict=True) if group
    }
    path = Path(workerinput[GROUPS_KEY]) / f"{workerinput['workerid']}.json"
    path.with_suffix(".part").write_text(json.dumps(grouped))
    path.with_suffix(".part").rename(path)


def configure_node(node: Any) -> None:
    """On the controller, for each worker it starts: where to write its groups."""
    config: pytest.Config = node.config
    if _groups_dir not in config.stash:
        config.stash[_groups_dir] = Path(tempfile.mkdtemp(prefix="aichat-xdist-groups-"))
    node.workerinput[GROUPS_KEY] = str(config.stash[_groups_dir])


def cleanup(config: pytest.Config) -> None:
    if _groups_dir in config.stash:
        shutil.rmtree(config.stash[_groups_dir], ignore_errors=True)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's loadgroup, with the groups the workers wrote and in their order."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            # The workers' order is already longest first; a reorder by size would undo it.
            config.option.loadscopereorder = False
            self._groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                # Called only once every worker has reported its collection, which each
                # does after writing its file; the files are alike, any one will do.
                files = sorted(config.stash[_groups_dir].glob("*.json"))
                self._groups = json.loads(files[0].read_text()) if files else {}
            group = self._groups.get(bare_nodeid(nodeid))
            return f"group:{group}" if group is not None else nodeid

    return GroupScheduling(config, log)

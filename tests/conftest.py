"""Fixtures shared by every level of the suite.

`backend` runs a test once on SQLite and once on the machine's real PostgreSQL. In CI
(CI=true) a missing PostgreSQL fails the run instead of skipping those tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import postgres, schedule, serve_process
from tests.support.ci import IN_CI
from tests.support.migrated import SqliteTemplate
from tests.support.server import Running, make_settings, running_server


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    problem = postgres.available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name, url = postgres.create_database()
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("migrated_sqlite").copy_to(tmp_path / "aichat.db")
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: SqliteTemplate) -> str:
    """A database of this test's own, its schema in place (a copy: see support/migrated)."""
    return migrated_sqlite.copy_to(tmp_path / "aichat.db")


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    settings = make_settings(database_url, data_dir=tmp_path)
    async with running_server(settings) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_server_process_outlives_its_test() -> Iterator[None]:
    """A test that fails before it stops the servers it started must not leave them running."""
    mark = serve_process.started_count()
    yield
    serve_process.kill_left_behind(mark)


@pytest.fixture
def user() -> str:
    """A user id no other test uses: tests share a database but never a user."""
    return f"user-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def other_user() -> str:
    return f"other-{uuid.uuid4().hex[:10]}"


# Parallel runs (pytest-xdist): which tests share a worker, and the longest first.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"write each test's duration to {schedule.DURATIONS} (`make test-durations`)",
    )


@pytest.hookimpl(trylast=True)  # the order after -k/-m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    schedule.share_groups(config, items, schedule.plan(items))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    schedule.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` (which means ``--dist load``) and ``--dist loadgroup``: ours."""
    wanted = config.getvalue("dist") in ("load", "loadgroup")
    return schedule.make_scheduler(config, log) if wanted else None


def pytest_unconfigure(config: pytest.Config) -> None:
    schedule.cleanup(config)


_durations: list[tuple[str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations.append((report.nodeid, report.duration))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    recording = session.config.getoption("--record-durations")
    # A run with failures still measured every test; an interrupted one did not.
    done = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    if recording and not hasattr(session.config, "workerinput") and done:
        schedule.DURATIONS.write_text(schedule.durations_json(_durations))

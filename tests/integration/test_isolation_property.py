"""Property: three users doing random things never see each other's data.

A hypothesis state machine drives random SessionService calls (and messages stored the
way the chat engine stores them) for three users against one real server, keeping a
model of what each user owns. Checked after every step: each user's list is exactly
their model, nothing of another user is ever returned, and another user's session names
answer NOT_FOUND exactly like names that never existed.

The server runs once per backend on an event loop in a background thread; hypothesis
runs its steps synchronously and hands each RPC to that loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from google.protobuf import field_mask_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from aichat_backend.domain import Role
from aichat_backend.errors import NotFound
from aichat_backend.store.messages_repo import MessageRepository
from tests.support.grpc_helpers import error_info, joined_body, md
from tests.support.server import Running, make_settings, running_server

T = TypeVar("T")
USERS = (0, 1, 2)
# A few ids every user of an example may choose, so users collide on client-chosen ids
# (which must not matter). Suffixed per example so examples never share a session id.
CHOSEN_IDS = ("alpha", "beta", "gamma", "delta")
RPC_TIMEOUT = 30.0
PROPERTY_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,  # no example database written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class LoopThread:
    """One event loop in a daemon thread that owns the server for the whole property."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = RPC_TIMEOUT) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class LiveServer:
    loop: LoopThread
    server: Running


@pytest.fixture(params=["sqlite", "postgres"])
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'aichat.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
    loop = LoopThread()
    # Rate limit off: the property sends hundreds of calls per user within seconds.
    context = running_server(make_settings(url, data_dir=tmp_path, rate_rps=0))
    try:
        server = loop.run(context.__aenter__())
        try:
            yield LiveServer(loop, server)
        finally:
            loop.run(context.__aexit__(None, None, None))
    finally:
        loop.close()


# --- the model ---------------------------------------------------------------------------


@dataclass
class ModelSession:
    display_name: str
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ref:
    """A session name as some user created it (the owner is part of the model only)."""

    owner: int
    session_id: str

    @property
    def name(self) -> str:
        return f"sessions/{self.session_id}"


def make_machine(live: LiveServer) -> type[RuleBasedStateMachine]:
    server = live.server

    def call(make: Callable[[], Awaitable[T]]) -> T:
        """Run one RPC on the server's loop (grpc.aio calls belong to the loop they start on)."""

        async def run() -> T:
            return await make()

        return live.loop.run(run())

    def expect_not_found(make: Callable[[], Awaitable[Any]], name: str) -> None:
        try:
            call(make)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err
            info = error_info(err)
            assert info.reason == "SESSION_NOT_FOUND", info
            assert info.metadata.get("resource") in (None, "", name), info
            return
        raise AssertionError(f"{name}: expected NOT_FOUND, call succeeded")

    class Isolation(RuleBasedStateMachine):
        refs = Bundle("refs")

        def __init__(self) -> None:
            super().__init__()
            # Fresh user ids for every example: the database is shared, the model is not.
            self.run = uuid.uuid4().hex[:8]
            self.user_ids = [f"prop-{self.run}-u{i}" for i in USERS]
            self.model: dict[int, dict[str, ModelSession]] = {u: {} for u in USERS}
            self.counter = 0
            self.steps = 0

        # --- helpers ----------------------------------------------------------------

        def uid(self, user: int) -> str:
            return self.user_ids[user]

        def marker(self, user: int) -> str:
            """Every text a user writes carries their id: a leak is visible anywhere."""
            self.counter += 1
            return f"[{self.uid(user)}] #{self.counter}"

        def check_session(self, user: int, got: rpb.Session) -> None:
            session_id = got.name.removeprefix("sessions/")
            assert session_id in self.model[user], f"user {user} sees unknown {got.name}"
            want = self.model[user][session_id]
            assert got.display_name == want.display_name
            assert got.message_count == len(want.messages)
            assert self.uid(user) in got.display_name or got.display_name == ""

        # --- rules ------------------------------------------------------------------

        @rule(
            target=refs,
            user=st.sampled_from(USERS),
            chosen=st.none() | st.sampled_from(CHOSEN_IDS),
            named=st.booleans(),
        )
        def create(self, user: int, chosen: str | None, named: bool) -> Any:
            chosen = f"{chosen}-{self.run}" if chosen is not None else None
            display_name = self.marker(user) if named else ""
            request = spb.CreateSessionRequest(
                session=rpb.Session(display_name=display_name), session_id=chosen or ""
            )
            if chosen is not None and chosen in self.model[user]:
                try:
                    call(
                        partial(server.sessions.CreateSession, request, metadata=md(self.uid(user)))
                    )
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
                    assert error_info(err).reason == "SESSION_ALREADY_EXISTS"
                    return Ref(user, chosen)
                raise AssertionError("duplicate id accepted")
            created = call(
                partial(server.sessions.CreateSession, request, metadata=md(self.uid(user)))
            )
            session_id = created.name.removeprefix("sessions/")
            if chosen is not None:
                assert session_id == chosen
            assert session_id not in self.model[user]
            self.model[user][session_id] = ModelSession(display_name)
            self.check_session(user, created)
            return Ref(user, session_id)

        @rule(user=st.sampled_from(USERS), ref=refs)
        def get(self, user: int, ref: Ref) -> None:
            rpc = partial(
                server.sessions.GetSession,
                spb.GetSessionRequest(name=ref.name),
                metadata=md(self.uid(user)),
            )
            if ref.session_id in self.model[user]:
                self.check_session(user, call(rpc))
            else:
                expect_not_found(rpc, ref.name)

        @rule(user=st.sampled_from(USERS), ref=refs, renamed=st.booleans())
        def update(self, user: int, ref: Ref, renamed: bool) -> None:
            new_name = self.marker(user) if renamed else ""
            rpc = partial(
                server.sessions.UpdateSession,
                spb.UpdateSessionRequest(
                    session=rpb.Session(name=ref.name, display_name=new_name),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                ),
                metadata=md(self.uid(user)),
            )
            mine = self.model[user].get(ref.session_id)
            if mine is None:
                expect_not_found(rpc, ref.name)
                return
            mine.display_name = new_name
            self.check_session(user, call(rpc))

        @rule(user=st.sampled_from(USERS), ref=refs)
        def delete(self, user: int, ref: Ref) -> None:
            rpc = partial(
                server.sessions.DeleteSession,
                spb.DeleteSessionRequest(name=ref.name),
                metadata=md(self.uid(user)),
            )
            if ref.session_id not in self.model[user]:
                expect_not_found(rpc, ref.name)
                return
            call(rpc)
            del self.model[user][ref.session_id]

        @rule(user=st.sampled_from(USERS), ref=refs)
        def clear(self, user: int, ref: Ref) -> None:
            rpc = partial(
                server.sessions.ClearMessages,
                spb.ClearMessagesRequest(name=ref.name),
                metadata=md(self.uid(user)),
            )
            if ref.session_id not in self.model[user]:
                expect_not_found(rpc, ref.name)
                return
            call(rpc)
            self.model[user][ref.session_id].messages.clear()

        @rule(user=st.sampled_from(USERS), ref=refs)
        def add_message(self, user: int, ref: Ref) -> None:
            text = self.marker(user) + " says hello"

            async def append() -> None:
                async with server.app.db.transaction() as tx:
                    await MessageRepository(tx, self.uid(user)).append(
                        ref.session_id,
                        Role.USER,
                        text,
                        display_name_if_empty=text[:60],
                        lock_tools=True,
                    )

            mine = self.model[user].get(ref.session_id)
            if mine is None:
                with pytest.raises(NotFound):
                    call(append)
                return
            call(append)
            mine.messages.append(text)
            if not mine.display_name:
                mine.display_name = text[:60]

        @rule(user=st.sampled_from(USERS), ref=refs, page_size=st.sampled_from([0, 1, 2, 50]))
        def list_messages(self, user: int, ref: Ref, page_size: int) -> None:
            if ref.session_id not in self.model[user]:
                expect_not_found(
                    partial(
                        server.sessions.ListMessages,
                        spb.ListMessagesRequest(parent=ref.name),
                        metadata=md(self.uid(user)),
                    ),
                    ref.name,
                )
                return
            texts: list[str] = []
            token = ""
            for _ in range(100):
                page = call(
                    partial(
                        server.sessions.ListMessages,
                        spb.ListMessagesRequest(
                            parent=ref.name, page_size=page_size, page_token=token
                        ),
                        metadata=md(self.uid(user)),
                    )
                )
                for m in page.messages:
                    assert m.name.startswith(ref.name + "/messages/")
                texts += [m.text for m in page.messages]
                token = page.next_page_token
                if not token:
                    break
            assert texts == self.model[user][ref.session_id].messages

        @rule(user=st.sampled_from(USERS), ref=refs)
        def export(self, user: int, ref: Ref) -> None:
            def rpc() -> Awaitable[Any]:
                return joined_body(
                    server.sessions.ExportSession(
                        spb.ExportSessionRequest(name=ref.name, format=spb.EXPORT_FORMAT_JSON),
                        metadata=md(self.uid(user)),
                    )
                )

            if ref.session_id not in self.model[user]:
                expect_not_found(rpc, ref.name)
                return
            doc = json.loads(call(rpc).data)
            want = self.model[user][ref.session_id]
            assert doc["session"]["name"] == ref.name
            assert [m["text"] for m in doc.get("messages", [])] == want.messages
            for other in USERS:
                if other != user:
                    assert self.uid(other) not in json.dumps(doc)

        @rule(user=st.sampled_from(USERS))
        def get_missing(self, user: int) -> None:
            expect_not_found(
                partial(
                    server.sessions.GetSession,
                    spb.GetSessionRequest(name="sessions/never-created"),
                    metadata=md(self.uid(user)),
                ),
                "sessions/never-created",
            )

        # --- invariants -------------------------------------------------------------

        @invariant()
        def lists_match_the_model(self) -> None:
            # One user per step, in rotation (every user every third step): cheap enough to
            # run after each step, and a leak into anyone's list is caught within 3 steps.
            self.steps += 1
            self.check_list(self.steps % len(USERS), page_size=100)

        @rule(user=st.sampled_from(USERS), page_size=st.sampled_from([1, 2, 3]))
        def list_in_pages(self, user: int, page_size: int) -> None:
            self.check_list(user, page_size)

        def teardown(self) -> None:
            for user in USERS:
                self.check_list(user, page_size=100)
                self.check_list(user, page_size=2)

        def check_list(self, user: int, page_size: int) -> None:
            seen: list[rpb.Session] = []
            token = ""
            for _ in range(100):
                page = call(
                    partial(
                        server.sessions.ListSessions,
                        spb.ListSessionsRequest(page_size=page_size, page_token=token),
                        metadata=md(self.uid(user)),
                    )
                )
                assert len(page.sessions) <= page_size
                seen += page.sessions
                token = page.next_page_token
                if not token:
                    break
            names = [s.name for s in seen]
            assert len(names) == len(set(names)), f"duplicates across pages: {names}"
            assert sorted(names) == sorted(f"sessions/{sid}" for sid in self.model[user])
            for s in seen:
                self.check_session(user, s)
            times = [s.update_time.ToMicroseconds() for s in seen]
            assert times == sorted(times, reverse=True), "newest activity first"

    return Isolation


@pytest.mark.timeout(60)
def test_users_never_see_each_other(live_server: LiveServer) -> None:
    # The rules exercise the same SQL on both backends: PostgreSQL gets fewer examples to
    # keep the suite fast; SQLite gets the full budget.
    examples = 25 if live_server.server.app.db.dialect == "sqlite" else 10
    run_state_machine_as_test(
        make_machine(live_server), settings=settings(PROPERTY_SETTINGS, max_examples=examples)
    )

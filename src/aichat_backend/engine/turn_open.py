"""Opening a StreamChat / SendMessage turn: checks, context, the first write, replays.

The path to the first token is kept short: the history is read, the upstream request
leaves, and the user's message is stored meanwhile (``TurnStore.begin_turn``); nothing
reaches the client before that store has committed (``first_write``, awaited once the
turn is driven). A request with a request_id stores first and calls the model after (one
round trip more, for those requests only): the key is taken before the upstream call, so
a concurrent duplicate finds it and reads the first turn's stream instead of calling the
model again.
"""

from __future__ import annotations

import asyncio

from aichat_backend.domain import Attachment
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.conversation import Given, given_messages
from aichat_backend.engine.events import TurnEnded
from aichat_backend.engine.pdf_extractor import PdfExtractor
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import (
    ChatConfig,
    TurnRequest,
    check_turn_request,
    turn_fingerprint,
)
from aichat_backend.engine.round_open import RoundOpener
from aichat_backend.engine.turn_branch import branch_point
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_setup import TurnSetup
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import Aborted
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason
from aichat_backend.records import (
    DENIED_BY_BRANCH,
    TURN_SCOPE,
    BegunTurn,
    HistoryWindow,
    NewTurn,
)


class TurnOpener:
    def __init__(
        self,
        store: TurnStore,
        setup: TurnSetup,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        round_opener: RoundOpener,
        pdf: PdfExtractor,
    ) -> None:
        self._store = store
        self._setup = setup
        self._catalogue = catalogue
        self._config = config
        self._round = round_opener
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments, pdf
        )

    async def open(self, req: TurnRequest) -> TurnRun | TurnEnded:
        """Check the request, read the context, send the model request and start storing
        the user's message; or the stored result of a request_id seen before.

        A coroutine of its own, so what only the start needs (the history, the request's
        files) is freed when it returns rather than held by every running stream.
        """
        session_id = check_turn_request(req)
        files = await attachment_rules.prepare(req.attachments, self._limits, req.user_id)
        given: Given = ([], [])
        if req.conversation is not None:
            given = await given_messages(req.conversation, session_id, self._limits, req.user_id)
        if req.model:
            self._catalogue.get(req.model)
        fingerprint = ""
        if req.request_id:
            fingerprint = turn_fingerprint(req, session_id)
            stored = await self._store.find_replay(req.user_id, TURN_SCOPE, req.request_id)
            if stored is not None:
                return replay(stored, fingerprint)  # or the running turn to read
        run, new_turn = await self._new_turn(req, session_id, files, given, fingerprint)
        if req.request_id:
            return await self._key_first(req, run, new_turn, fingerprint)
        # The upstream request leaves now; the user's message is stored meanwhile, and
        # nothing reaches the client before that store has committed. (Unless the
        # conversation must be compacted first: that waits until after TurnStarted.)
        self._round.send_early(run)
        run.claimed = asyncio.create_task(self._store.begin_turn(req.user_id, new_turn))
        return run

    async def _new_turn(
        self,
        req: TurnRequest,
        session_id: str,
        files: list[Attachment],
        given: Given,
        fingerprint: str,
    ) -> tuple[TurnRun, NewTurn]:
        """Where the turn hangs in the tree, its run, and what its first write stores."""
        window = HistoryWindow(
            req.memory_limit, self._config.memory_default, self._config.memory_max
        )
        point = await branch_point(self._store, req, session_id, window)
        context, files = point.context, files if point.files is None else point.files
        run = self._setup.new_run(req, session_id, context, files, given)
        run.unnamed = not context.session.display_name
        new_turn = self._setup.new_turn(req, session_id, run, context, files, given, fingerprint)
        new_turn.parent_id, new_turn.question = point.parent_id, point.question
        if req.regenerate or req.edit_of:
            # It replaces an answer, or a question above one: what waits is superseded,
            # wherever it is in the tree (the path read shows only this branch).
            new_turn.deny_pending = DENIED_BY_BRANCH
        return run, new_turn

    async def _key_first(
        self, req: TurnRequest, run: TurnRun, new_turn: NewTurn, fingerprint: str
    ) -> TurnRun | TurnEnded:
        """The key first, then the model: a duplicate that took it meanwhile wins, and
        this request reads that turn (or its result) instead."""
        try:
            begun = await self._store.begin_turn(req.user_id, new_turn)
        except Aborted as exc:
            if exc.reason is not Reason.TURN_IN_PROGRESS:
                raise
            stored = await self._store.find_replay(req.user_id, TURN_SCOPE, req.request_id)
            if stored is None:
                raise
            return replay(stored, fingerprint)
        claimed: asyncio.Future[BegunTurn] = asyncio.get_running_loop().create_future()
        claimed.set_result(begun)
        run.claimed = claimed
        self._round.send_early(run)
        return run


async def first_write(run: TurnRun) -> BegunTurn:
    """The turn's first write, awaited once the turn is driven: nothing reaches the client
    before it has committed. The run then holds its user message and first answer."""
    assert run.claimed is not None
    try:
        begun: BegunTurn = await run.claimed
    except BaseException:
        if run.stream is not None:
            run.stream.cancel()
        raise
    # Stored: a cut-off turn's finalizer has nothing to wait for, and the task is
    # not kept alive by every held stream.
    run.claimed = None
    run.user_message, run.message = begun.user_message, begun.answer
    run.answers.append(begun.answer.name)
    return begun

"""The backend process's life around the App: hardened before anything starts, the
collector tuned once the App is up, stopped gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aichat_backend import hardening
from aichat_backend.config import ConfigError, Settings
from aichat_backend.server import App, CannotListen

log = logging.getLogger("aichat_backend.server")  # the name these lines always had

FULL_COLLECTION_AFTER = 100  # gen-1 collections between full ones (CPython's default: 10)


async def serve(settings: Settings) -> int:
    # Before any child exists: none of them may read this process's /proc files.
    hardening.make_undumpable()
    try:
        app = App(settings)
    except ValueError as exc:  # a bad model catalogue or MCP servers file
        raise ConfigError(str(exc)) from None
    # Every secret has been read into the settings, the catalogue and the tool configs:
    # the environment (and its exec-time copy in /proc/self/environ) no longer needs them.
    removed = hardening.scrub_environment()
    if removed:
        log.info("secrets removed from the environment", extra={"variables": removed})
    # Out of process: what alembic imports would stay in this one for good.
    try:
        await app.start(migrate_in_child=True)
    except CannotListen:
        await app.stop(0)  # what started before the bind (tool servers, the database)
        raise
    # Everything alive now (modules, descriptors, SDK classes) lives until exit: move it
    # out of the collector's generations so each collection walks only request garbage.
    gc.collect()
    gc.freeze()
    # A full collection walks every object of every held stream (~30 ms with 200 held,
    # measured), pausing all of them at once. After 10 young-generation passes (the
    # default) that happened every few seconds while streams were being added; after 100
    # it did not happen in the same run, and the young generations stay as they were.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await app.stop()
    return 0

"""The engine's ports kept in memory, for the engine's tests (never shipped).

``MemoryStore`` is a ``TurnStore`` and a ``SessionStore`` over plain dicts, with the
same rules as the SQL side (tests/contract holds the three implementations to them):
every method checks before it changes anything, so a refusal leaves nothing behind,
and hands out copies, so a caller's later changes never reach what is stored.
"""

from aichat_devtools.memory_store.sessions import MemoryStore

__all__ = ["MemoryStore"]

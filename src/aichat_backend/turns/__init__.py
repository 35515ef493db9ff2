"""A turn's events kept for resuming it: sequence numbers, a batched log, fan-out.

The chat engine makes events; the API layer numbers them and hands each to the
``TurnEventLog`` as a ``Frame`` (text, or an opaque rendered event). The log keeps the
frames of running turns in memory only until a flush has stored them (per tick, never
per token), wakes local readers at once and, on PostgreSQL, other replicas' readers by
NOTIFY after each flush. A reader subscribes first, then reads the stored past, then
drops what the past covered: no gap, nothing twice.
"""

"""LLM provider adapters: the ``ChatProvider`` contract (``base``), one adapter per API
family, SDK error translation, the model catalogue and retry/fallback before the first
token. Import the submodules directly; this package imports nothing so that reading
``base`` does not load both SDKs.
"""

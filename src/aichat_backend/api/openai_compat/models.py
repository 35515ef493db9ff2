"""``GET /v1/models`` and ``GET /v1/models/{model}``: the catalogue as OpenAI lists models."""

from __future__ import annotations

from typing import Any

from aichat_backend.errors import NotFound
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason


class ModelList:
    def __init__(self, catalogue: ModelCatalogue, created: int) -> None:
        self._catalogue = catalogue
        self._created = created  # when this process read the catalogue

    def list(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model(e) for e in self._catalogue.entries()]}

    def get(self, name: str) -> dict[str, Any]:
        if not self._catalogue.has(name):
            raise NotFound(
                f"The model {name[:100]!r} does not exist here.",
                reason=Reason.MODEL_NOT_IN_CATALOGUE,
                field="model",
            )
        return self._model(self._catalogue.get(name))

    def _model(self, entry: ModelEntry) -> dict[str, Any]:
        return {
            "id": entry.name,
            "object": "model",
            "created": self._created,
            "owned_by": entry.provider,
        }

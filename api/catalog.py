"""Which model ids the API serves: every ready generator on the server (a model whose metadata satisfies the
text-generation task's contract, `tuneship.tasks`), and `MODEL:ADAPTER` for each adapter published beside a
generator in the model repository, when the API knows the repository's folder.

Read from the server's repository index and model metadata (both open to every caller, unlike model configs,
which an admin key restricts), kept for a few seconds, and read again at once when a request names an id not seen
yet: a model loaded or an adapter published a moment ago is found without waiting."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tuneship.client import AsyncTritonClient, TritonError
from tuneship.repository import published_adapters, published_at
from tuneship.tasks import task_of_metadata

SEPARATOR = ":"


@dataclass(frozen=True)
class ServedModel:
    id: str
    model: str  # the generator's name on the server
    adapter: str | None
    created: int  # when it was published (seconds since the epoch), as OpenAI's `created`


class Catalog:
    def __init__(self, client: AsyncTritonClient, repository: Path | None, refresh_s: float) -> None:
        self.client = client
        self.repository = repository
        self.refresh_s = refresh_s
        self._models: dict[str, ServedModel] = {}
        self._read_at = float("-inf")
        self._generators: dict[str, bool] = {}  # name@version -> is a generator (metadata read once)
        self._lock = asyncio.Lock()

    async def models(self, fresh: bool = False) -> dict[str, ServedModel]:
        async with self._lock:
            if fresh or time.monotonic() - self._read_at > self.refresh_s:
                self._models = await self._read()
                self._read_at = time.monotonic()
            return self._models

    async def resolve(self, model_id: str) -> ServedModel | None:
        models = await self.models()
        if model_id not in models:
            models = await self.models(fresh=True)
        return models.get(model_id)

    async def _read(self) -> dict[str, ServedModel]:
        index = await self.client.get_model_repository_index()
        found: dict[str, ServedModel] = {}
        now = int(time.time())
        for entry in sorted(index, key=lambda e: e.get("name", "")):
            name, version = entry.get("name", ""), entry.get("version", "")
            if entry.get("state") != "READY" or not await self._is_generator(name, version):
                continue
            created = self._created(name, now)
            found[name] = ServedModel(id=name, model=name, adapter=None, created=created)
            if self.repository is not None:
                for adapter, when in published_adapters(self.repository, name).items():
                    model_id = f"{name}{SEPARATOR}{adapter}"
                    found[model_id] = ServedModel(id=model_id, model=name, adapter=adapter, created=when)
        return found

    def _created(self, name: str, default: int) -> int:
        when = published_at(self.repository, name) if self.repository is not None else None
        return default if when is None else when

    async def _is_generator(self, name: str, version: str) -> bool:
        key = f"{name}@{version}"
        if key not in self._generators:
            try:
                metadata = await self.client.get_model_metadata(name, version)
            except TritonError:
                return False  # unloaded between the index and this call: not served now
            task = task_of_metadata(metadata)
            self._generators[key] = task is not None and task.generates
        return self._generators[key]

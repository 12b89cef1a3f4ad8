"""Server-sent events that end their generation when the caller goes away.

Starlette's StreamingResponse notices a disconnect only on the next write under ASGI 2.4 servers, and leaves the
body iterator to the garbage collector; here a watcher reads the disconnect at once and the iterator is closed
then and there, so its `finally` cancels the generation and frees the engine's slot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


class EventStream(StreamingResponse):
    def __init__(self, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def write() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the connection is gone: the watcher sees the disconnect too
                    finally:
                        group.cancel_scope.cancel()

                group.start_soon(write)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

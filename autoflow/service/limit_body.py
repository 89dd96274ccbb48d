"""413 for request bodies over the limit, declared (Content-Length) or streamed."""

from __future__ import annotations

import json


class LimitBody:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    return await self._too_large(send)
        seen = 0
        started = False
        refused = False

        async def counted():
            # Over the limit: answer 413 here and tell the app the client went away. (An
            # exception raised from receive() would reach the app's body parsing, which
            # turns any error into a 400.)
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        await self._too_large(send)
                    return {"type": "http.disconnect"}
            return msg

        async def tracked_send(msg):
            nonlocal started
            if refused:
                return  # answered already (413): what the app says after is dropped
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, counted, tracked_send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


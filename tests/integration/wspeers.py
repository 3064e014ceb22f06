"""
WebSocket peers from the C{websockets} library for integration tests.

C{websockets} runs on asyncio, the proxy on the Twisted reactor: L{AsyncioThread}
runs an asyncio event loop in a thread of its own, and L{AsyncioThread.call}
hands it a coroutine and gives the reactor thread a Deferred for the result,
so the proxy keeps running while a test waits. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet import defer
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

T = TypeVar("T")

Handler = Callable[[ServerConnection], Awaitable[None]]


class AsyncioThread:
    """An asyncio event loop in a background thread, stopped cleanly at the end."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.loop = asyncio.new_event_loop()
        self.backends: list[WSBackend] = []
        self.clients: list[ClientConnection] = []
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="websockets peers", daemon=True
        )
        self._thread.start()

    def call(
        self, coro: Coroutine[Any, Any, T], timeout: float = 10.0
    ) -> defer.Deferred[T]:
        """Run C{coro} on the loop; a Deferred (on the reactor) for its result."""

        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        future = asyncio.run_coroutine_threadsafe(bounded(), self.loop)
        d: defer.Deferred[T] = defer.Deferred()

        def done(f: Any) -> None:
            self.reactor.callFromThread(_settle, d, f)

        future.add_done_callback(done)
        return d

    async def backend(
        self,
        name: str = "backend",
        handler: Handler | None = None,
        subprotocols: Sequence[str] | None = None,
        refuse: int | None = None,
        port: int = 0,
    ) -> WSBackend:
        """Start a C{websockets} server on 127.0.0.1 (from the reactor thread)."""
        backend = WSBackend(name, handler or echo, subprotocols, refuse)
        await self.call(backend.start(port))
        self.backends.append(backend)
        return backend

    async def connect(self, url: str, **options: Any) -> ClientConnection:
        """Open a C{websockets} client connection (closed at the end)."""
        client = await self.call(_connect(url, options))
        self.clients.append(client)
        return client

    async def closeAll(self) -> None:
        """Cut every client, stop every backend (from the reactor thread)."""
        await self.call(self._closeAll())

    async def _closeAll(self) -> None:
        # Close handshakes first, so the proxy sees every leg end cleanly;
        # a peer that does not answer in time is cut.
        closing = [client.close() for client in self.clients]
        await asyncio.wait_for(asyncio.gather(*closing), 5)
        for backend in self.backends:
            await backend.stop(graceful=True)

    def stop(self) -> None:
        """Cancel what is left on the loop, stop it and join the thread."""

        async def cancelRest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancelRest(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _settle(d: defer.Deferred[Any], future: Any) -> None:
    error = future.exception()
    if error is not None:
        d.errback(error)
    else:
        d.callback(future.result())


async def _connect(url: str, options: dict[str, Any]) -> ClientConnection:
    settings: dict[str, Any] = {
        "proxy": None,
        "compression": None,
        "max_size": None,
        "open_timeout": 5,
        "close_timeout": 5,
        "ping_interval": None,
    }
    settings.update(options)
    return await connect(url, **settings)


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came."""
    async for message in ws:
        await ws.send(message)


@dataclass
class WSBackend:
    """
    A C{websockets} server: records every request (upgrades and plain HTTP)
    and every connection's close, answers plain HTTP with a short text, and
    runs C{handler} on each WebSocket.
    """

    name: str
    handler: Handler
    subprotocols: Sequence[str] | None = None
    refuse: int | None = None
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    # (close code received, reason), one per connection once it is closed.
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    _server: Server | None = None
    _closed: asyncio.Condition | None = None

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1."""
        self._closed = asyncio.Condition()
        protocols = (
            [Subprotocol(p) for p in self.subprotocols]
            if self.subprotocols is not None
            else None
        )
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            port,
            subprotocols=protocols,
            process_request=self._processRequest,
            compression=None,
            max_size=None,
            ping_interval=None,
            close_timeout=5,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, graceful: bool = False) -> None:
        """
        Stop listening; close every open connection with 1001 (C{graceful}),
        or cut it, as a crash would.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=graceful)
        if not graceful:
            for ws in self.connections:
                ws.transport.abort()
        await server.wait_closed()

    def _processRequest(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        self.requests.append(request)
        if self.refuse is not None:
            return connection.respond(self.refuse, f"{self.name} refuses\n")
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return connection.respond(200, f"{self.name} plain {request.path}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            assert self._closed is not None
            async with self._closed:
                self.closes.append((ws.close_code, ws.close_reason))
                self._closed.notify_all()

    async def waitClosed(self, count: int = 1) -> list[tuple[int | None, str | None]]:
        """The closes once C{count} connections have closed (on the loop)."""
        assert self._closed is not None
        async with self._closed:
            await self._closed.wait_for(lambda: len(self.closes) >= count)
        return list(self.closes)

    def headers(self, index: int = -1) -> Headers:
        """The headers of a request this backend received (the last: -1)."""
        return self.requests[index].headers


__all__ = ["AsyncioThread", "WSBackend", "echo"]

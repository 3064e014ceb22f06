"""
The control channel between the owner process and a follower: JSON
messages, each behind a 4-byte length, over a UNIX socket pair, with
listening sockets passed alongside (SCM_RIGHTS).

A message is ``{"op": NAME, "id": N, "args": {...}}``; the other side runs
its handler for NAME (a value or a Deferred) and answers ``{"re": N,
"value": ...}`` or ``{"re": N, "error": "..."}``. A message without an
C{id} wants no answer. A descriptor sent with L{ControlChannel.sendDescriptor}
arrives before the message sent after it, which takes it with
L{ControlChannel.takeDescriptor}.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ChannelError", "ControlChannel", "Handler"]

Handler = Callable[..., Any]
"""Runs one operation with the message's arguments; a value or a Deferred."""

# A view or a count document of a very large configuration stays far below.
_MAX_MESSAGE = 64 * 1024 * 1024


class ChannelError(Exception):
    """The other side could not run an operation, or the channel closed."""


@implementer(IFileDescriptorReceiver)
class ControlChannel(Int32StringReceiver):
    """One end of the control channel, answering with C{handlers}."""

    MAX_LENGTH = _MAX_MESSAGE
    _log = Logger()

    def __init__(self, handlers: Mapping[str, Handler], name: str) -> None:
        self._handlers = handlers
        self.name = name
        self._nextId = 0
        self._waiting: dict[int, Deferred[Any]] = {}
        self._descriptors: deque[int] = deque()
        self.closed: Deferred[None] = Deferred()
        """Fires when the channel is gone (the other process ended)."""
        self.open = False

    def connectionMade(self) -> None:
        self.open = True

    def call(self, op: str, **args: Any) -> Deferred[Any]:
        """Run C{op} on the other side; fires with its answer."""
        if not self.open:
            return fail(ChannelError(f"{self.name}: closed"))
        self._nextId += 1
        waiting: Deferred[Any] = Deferred()
        self._waiting[self._nextId] = waiting
        self._send({"op": op, "id": self._nextId, "args": args})
        return waiting

    def tell(self, op: str, **args: Any) -> None:
        """Run C{op} on the other side, wanting no answer."""
        if self.open:
            self._send({"op": op, "args": args})

    def sendDescriptor(self, fd: int) -> None:
        """Pass C{fd} (a listening socket) for the next message to take."""
        self.transport.sendFileDescriptor(fd)  # type: ignore[union-attr]

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self._descriptors.append(descriptor)

    def takeDescriptor(self) -> int:
        """
        The oldest descriptor received and not yet taken (the caller owns it).

        :raise ChannelError: if none came.
        """
        if not self._descriptors:
            raise ChannelError(f"{self.name}: no socket came with the message")
        return self._descriptors.popleft()

    def _send(self, message: dict[str, Any]) -> None:
        self.sendString(json.dumps(message, separators=(",", ":")).encode())

    def stringReceived(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self._log.error("{name}: a message that is not JSON", name=self.name)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if "re" in message:
            waiting = self._waiting.pop(message["re"], None)
            if waiting is None:
                return
            if "error" in message:
                waiting.errback(ChannelError(message["error"]))
            else:
                waiting.callback(message.get("value"))
            return
        op, ident = message.get("op"), message.get("id")
        handler = self._handlers.get(op)
        if handler is None:
            result: Deferred[Any] = fail(ChannelError(f"no operation {op!r}"))
        else:
            result = maybeDeferred(handler, **message.get("args", {}))
        result.addCallbacks(
            lambda value: self._answer(ident, {"value": value}),
            lambda failure: self._failed(op, ident, failure),
        )

    def _answer(self, ident: int | None, answer: dict[str, Any]) -> None:
        if ident is not None and self.open:
            self._send({"re": ident, **answer})

    def _failed(self, op: str, ident: int | None, failure: Failure) -> None:
        if not failure.check(ChannelError):
            self._log.failure("{name}: {op} failed", failure, name=self.name, op=op)
        self._answer(ident, {"error": failure.getErrorMessage()})

    def lengthLimitExceeded(self, length: int) -> None:
        self._log.error(
            "{name}: a message of {length} bytes; the channel is closed",
            name=self.name,
            length=length,
        )
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.open = False
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(ChannelError(f"{self.name}: closed"))
        while self._descriptors:
            os.close(self._descriptors.popleft())
        self.closed.callback(None)

"""
The listening sockets worker processes share: the owner's ports, bound as
their endpoint strings say, and a follower's, adopted from the descriptors
the owner passed. Every one accepts a connection at a time, so the kernel's
wake-ups spread connections over the processes
(L{acceptOneAtATime}).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from twisted_proxy._twisted_internals import acceptOneAtATime

__all__ = ["AdoptedEndpoint", "SharedEndpoint"]


def _shared(port: IListeningPort) -> IListeningPort:
    acceptOneAtATime(port)
    return port


@implementer(IStreamServerEndpoint)
class SharedEndpoint:
    """The owner's port for a listener: bound as C{named} says, then shared."""

    def __init__(self, named: IStreamServerEndpoint) -> None:
        self._named = named

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self._named.listen(factory).addCallback(_shared)


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """A follower's port for a listener: the owner's socket, served here."""

    def __init__(self, reactor: Any, sockets: dict[str, int], endpoint: str) -> None:
        self._reactor = reactor
        self._sockets = sockets
        self._endpoint = endpoint

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        fd = self._sockets.pop(self._endpoint, None)
        if fd is None:
            return fail(
                CannotListenError(
                    None, self._endpoint, "the owner process sent no socket for it"
                )
            )
        try:
            held = socket.socket(fileno=fd)
            family = held.family
            held.detach()
            os.set_blocking(fd, False)
            port = self._reactor.adoptStreamPort(fd, family, factory)
        except OSError as e:
            return fail(CannotListenError(None, self._endpoint, e))
        finally:
            # The port holds its own copy.
            os.close(fd)
        return succeed(_shared(port))

"""
A WebSocket echo server on 127.0.0.1: the reference peer of the conformance
run (L{tests.conformance.run}).

Autobahn on Twisted, set up as Autobahn's own testee server is for the
fuzzingclient: every text and binary message is sent back whole and
unchanged, C{failByDrop} is off (a protocol error gets a closing handshake,
as the RFC asks), and permessage-deflate is accepted when offered. It prints
C{listening on ws://127.0.0.1:PORT/} once it listens, and stops on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.internet.task import react

SERVER_NAME = "twisted-proxy-conformance-echo"


class EchoProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """Sends every message back as it came: same payload, same type."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def acceptDeflate(offers: Sequence[object]) -> PerMessageDeflateOfferAccept | None:
    """Accept the first permessage-deflate offer, as Autobahn's testee does."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def echoFactory() -> WebSocketServerFactory:
    """The echo server's factory, with the testee server's protocol options."""
    factory = WebSocketServerFactory(server=SERVER_NAME)
    factory.protocol = EchoProtocol
    factory.setProtocolOptions(
        failByDrop=False,
        perMessageCompressionAccept=acceptDeflate,
    )
    return factory


async def serve(reactor: IReactorTCP, port: int) -> None:
    """Listen on 127.0.0.1:C{port} (0: any free port) until the reactor stops."""
    endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    listening: IListeningPort = await endpoint.listen(echoFactory())
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    print(f"listening on ws://127.0.0.1:{address.port}/", flush=True)
    # react() stops the reactor on SIGTERM/SIGINT; until then, serve.
    await Deferred()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    react(lambda reactor: Deferred.fromCoroutine(serve(reactor, args.port)))


if __name__ == "__main__":
    main(sys.argv[1:])

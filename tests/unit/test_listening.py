"""
FrontSwitch: what a port serves, which a reload may replace while the port
stays open.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol

from twisted_proxy.listening import FrontSwitch


class Front(Factory):
    """A front end that says which one built each connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[str] = []

    def startFactory(self) -> None:
        self.events.append("start")

    def stopFactory(self) -> None:
        self.events.append("stop")

    def buildProtocol(self, addr: object) -> Protocol:
        protocol = Protocol()
        protocol.factory = self
        return protocol


def test_newConnectionsGoToTheFrontEndOfTheMoment() -> None:
    """
    Connections are built by the current front end; after a switch, by the
    new one. On an open port, the new one is started and the old one
    stopped; a port's log lines name the front end, not the switch.
    """
    old, new = Front("old"), Front("new")
    switch = FrontSwitch(old)
    switch.doStart()
    assert switch.buildProtocol(None).factory is old  # type: ignore[union-attr]
    assert switch.logPrefix() == "Front"
    switch.switch(new)
    assert switch.buildProtocol(None).factory is new  # type: ignore[union-attr]
    assert (old.events, new.events) == (["start", "stop"], ["start"])
    switch.doStop()
    assert new.events == ["start", "stop"]


def test_aSwitchBeforeThePortOpensStartsNothing() -> None:
    """Switched before any port serves it, neither front end is started."""
    old, new = Front("old"), Front("new")
    switch = FrontSwitch(old)
    switch.switch(new)
    assert (old.events, new.events) == ([], [])
    switch.doStart()
    assert new.events == ["start"]

"""
planListeners: what a reload does to each listener, matched by endpoint.
"""

from __future__ import annotations

from twisted_proxy.config.model import Listener, ListenerTLS
from twisted_proxy.core.listenplan import ListenerPlan, planListeners


def _tls(where: str, certificate: str = "site.crt") -> ListenerTLS:
    return ListenerTLS(certificate=certificate, key="site.key", where=where)


def test_theSameFileKeepsEveryListener() -> None:
    """Listeners written the same way again are kept, untouched."""
    listen = [Listener("tcp:80"), Listener("ssl:443", tls=_tls("listen[1].tls"))]
    plan = planListeners(listen, listen)
    assert plan == ListenerPlan(kept=((0, 0), (1, 1)))
    assert plan.untouched


def test_movingAListenerInTheFileKeepsIt() -> None:
    """
    Where a listener is written (its index, the key path its TLS messages
    name) is not a setting: moved further down, it is still kept.
    """
    running = [Listener("tcp:80"), Listener("ssl:443", tls=_tls("listen[1].tls"))]
    fresh = [
        Listener("ssl:443", tls=_tls("listen[0].tls"), index=0),
        Listener("tcp:80", index=1),
    ]
    plan = planListeners(running, fresh)
    assert plan == ListenerPlan(kept=((1, 0), (0, 1)))
    assert plan.untouched


def test_otherSettingsOnTheSameEndpointChangeItInPlace() -> None:
    """Same endpoint, another certificate or a redirect: changed, not rebound."""
    running = [
        Listener("tcp:80"),
        Listener("ssl:443", tls=_tls("listen[1].tls")),
    ]
    fresh = [
        Listener("tcp:80", redirect_https="https://example.test"),
        Listener("ssl:443", tls=_tls("listen[1].tls", "other.crt"), index=1),
    ]
    plan = planListeners(running, fresh)
    assert plan == ListenerPlan(changed=((0, 0), (1, 1)))
    assert not plan.untouched


def test_newEndpointsAreAddedAndMissingOnesRemoved() -> None:
    """An endpoint only in the file is added; one no longer in it, removed."""
    running = [Listener("tcp:80"), Listener("tcp:81", index=1)]
    fresh = [Listener("tcp:82"), Listener("tcp:80", index=1)]
    assert planListeners(running, fresh) == ListenerPlan(
        kept=((0, 1),), added=(0,), removed=(1,)
    )


def test_endpointsAreComparedAsWritten() -> None:
    """
    Two spellings of one port are two endpoints: the new one is added (and
    binding it will say the port is taken) and the old one removed.
    """
    plan = planListeners([Listener("tcp:80")], [Listener("tcp:port=80")])
    assert plan == ListenerPlan(added=(0,), removed=(0,))


def test_noListenersIsTheEmbeddersFrontEnd() -> None:
    """
    A service with no [[listen]] has one front end, C{None}, which stays
    while the file still has none and goes once it names listeners.
    """
    assert planListeners([None], [None]) == ListenerPlan(kept=((0, 0),))
    assert planListeners([None], [Listener("tcp:80")]) == ListenerPlan(
        added=(0,), removed=(0,)
    )


def test_aRepeatedEndpointIsMatchedOnce() -> None:
    """Each running listener pairs with one of the file's at most."""
    running = [Listener("tcp:80")]
    fresh = [Listener("tcp:80"), Listener("tcp:80", index=1)]
    assert planListeners(running, fresh) == ListenerPlan(kept=((0, 0),), added=(1,))

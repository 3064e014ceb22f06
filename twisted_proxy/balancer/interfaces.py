"""
L{IBalancer}: what a front end needs of the shared load balancer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, TypedDict

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from typing_extensions import Unpack

    from twisted_proxy.balancer.keys import RequestFacts
    from twisted_proxy.balancer.state import MemberState


class Outcome(TypedDict, total=False):
    """How an exchange with a member went, besides whether it was ok."""

    bytesIn: int
    """Response body bytes received from the member (heads not counted)."""
    bytesOut: int
    """Request body bytes sent to the member (heads not counted)."""
    failure: str | None
    """Why it failed: a C{FAIL_*} kind or words such as C{"answered 503"}."""
    elapsed: float | None
    """Seconds from the request to the response's end (None: not timed)."""


class IBalancer(Interface):
    """Chooses balancer members for requests and hears how each exchange went."""

    def pick(
        balancerName: str,
        facts: RequestFacts | None = None,
        exclude: Collection[MemberState] = (),
    ) -> MemberState | None:
        """
        Return a member of the balancer for one request, counted busy; or C{None}.

        The member must be handed back to L{release} when the exchange is over.
        """

    def release(member: MemberState, ok: bool, **outcome: Unpack[Outcome]) -> None:
        """
        Report an exchange's outcome; C{ok=False} puts the member in error.
        The rest of it (L{Outcome}) is given by keyword.
        """

    def maxAttempts(balancerName: str) -> int:
        """Other members a failed request may be re-sent to."""

    def failsOnStatus(balancerName: str, status: int) -> bool:
        """Whether a member answering C{status} is put in error."""

    def readsRequests(balancerName: str) -> bool:
        """
        Whether a pick looks at the request (sticky sessions, the hash
        method): if not, no L{RequestFacts} need be gathered for it.
        """

    def stickyCookie(
        balancerName: str, facts: RequestFacts, member: MemberState
    ) -> bytes | None:
        """The C{Set-Cookie} value binding the client to C{member}, if one is due."""

    def environment(
        balancerName: str, facts: RequestFacts | None, member: MemberState
    ) -> dict[str, str]:
        """
        The variables Apache's mod_proxy_balancer sets for a request sent to
        C{member} (C{BALANCER_NAME}, C{BALANCER_WORKER_NAME}...), for the
        access log's C{%{NAME}e}.
        """

    def atCapacity(balancerName: str) -> bool:
        """Whether every member that could serve is at its max_connections."""

    def whenCapacity(balancerName: str, timeout: float) -> Deferred[bool]:
        """Fire True when a member is released, False after C{timeout}."""

    def memberWait(balancerName: str) -> float:
        """
        Seconds a request that finds no usable member waits for one (the
        balancer's C{wait}); 0: none.
        """


__all__ = ["IBalancer", "Outcome"]

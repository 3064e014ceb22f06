"""
The shared load balancer: every front end asks it for a member and reports back.

L{BalancerService} holds every balancer's members (L{MemberState}) and their
policies; L{IBalancer} is what a front end needs of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted_proxy.balancer.state import MemberState


class IBalancer(Interface):
    """Chooses balancer members for requests and hears how each exchange went."""

    def pick(balancerName: str) -> MemberState | None:
        """
        Return a member of the balancer for one request, counted busy; or C{None}.

        The member must be handed back to L{release} when the exchange is over.
        """

    def release(
        member: MemberState,
        ok: bool,
        bytesIn: int = 0,
        bytesOut: int = 0,
        failure: str | None = None,
    ) -> None:
        """Report an exchange's outcome; C{ok=False} puts the member in error."""


# The implementation needs IBalancer, so it is imported after it is declared.
from twisted_proxy.balancer.service import BalancerService  # noqa: E402
from twisted_proxy.balancer.state import MemberState  # noqa: E402

__all__ = ["BalancerService", "IBalancer", "MemberState"]

"""
The shared load balancer: every front end asks it for a member and reports back.

L{BalancerService} (L{twisted_proxy.balancer.service}) holds every balancer's
members (L{MemberState}, L{twisted_proxy.balancer.state}) and their policies;
L{IBalancer} (L{twisted_proxy.balancer.interfaces}) is what a front end needs
of it. A front end holds a member through a L{twisted_proxy.balancer.lease}.
"""

from __future__ import annotations

from twisted_proxy.balancer.interfaces import IBalancer
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import MemberState

__all__ = ["BalancerService", "IBalancer", "MemberState"]

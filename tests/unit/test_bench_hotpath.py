"""
The in-process hot path of the benchmark (bench.hotpath): it really relays
(the client gets the backend's answer to each request, on one backend
connection), and the Python calls the proxy makes per request stay within
a budget: counted, not timed, so the same on every machine.
"""

from __future__ import annotations

from bench.hotpath import (
    REQUEST,
    RESPONSE,
    BalancedHotPath,
    HotPath,
    callsPerRequest,
)

# Python and C function calls per plain GET relayed on a kept-alive client
# connection and a pooled backend connection, to one backend and through a
# byrequests balancer of three. Raise them only with a reason.
CALLS_BUDGET = 300
BALANCED_CALLS_BUDGET = 345


def test_eachRequestIsRelayedOnOneBackendConnection() -> None:
    """Every request reaches the backend and its answer reaches the client."""
    path = HotPath()
    for _ in range(20):
        path.one()
        assert path.wire.value().startswith(REQUEST.split(b"\r\n")[0])
        assert path.client.value().endswith(RESPONSE.split(b"\r\n\r\n")[1])
    assert not path.client.disconnecting
    assert not path.wire.disconnecting


def test_theCallsPerRequestStayWithinTheBudget() -> None:
    """The proxy's own work per request, in calls, is no more than budgeted."""
    path = HotPath()
    path.run(50)
    calls = callsPerRequest(path, 200)
    assert calls <= CALLS_BUDGET, f"{calls:.1f} calls per request"


def test_theBalancerStaysWithinItsBudget() -> None:
    """Through a balancer of three: every request answered, calls budgeted."""
    path = BalancedHotPath()
    path.run(50)
    calls = callsPerRequest(path, 200)
    assert calls <= BALANCED_CALLS_BUDGET, f"{calls:.1f} calls per request"

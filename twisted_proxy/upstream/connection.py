"""
Where the backend connection and its pool were imported from before they were
split (L{twisted_proxy.upstream.client} and L{twisted_proxy.upstream.pool}):
the names are re-exported here until every importer takes them from there.
"""

from __future__ import annotations

from twisted_proxy.upstream.client import (
    FAIL_CONNECT,
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
    IResponseSink,
    UpstreamConnection,
)
from twisted_proxy.upstream.pool import UpstreamPool

__all__ = [
    "FAIL_CONNECT",
    "FAIL_PROTOCOL",
    "FAIL_RESET",
    "FAIL_TIMEOUT",
    "Address",
    "IResponseSink",
    "UpstreamConnection",
    "UpstreamPool",
]

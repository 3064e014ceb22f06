"""Twisted's own reverse proxy, the baseline twisted-proxy is measured against.

Serves ``Site(ReverseProxyResource("127.0.0.1", backendPort, b""))`` on
127.0.0.1:``--port`` with the default (epoll) reactor, as a user of
``twisted.web.proxy`` would. Two things differ from a default ``Site``, to match
how twisted-proxy is run in the benchmark (``access_log = false``): the access log
is off, and log events below ``warn`` (such as the per-request "Starting factory"
lines of ``ProxyClientFactory``) are dropped instead of being written out. The
process stops by itself after ``--lifetime`` seconds.

Run as ``python -m bench.twisted_builtin --port PORT --backend-port PORT``.
"""

from __future__ import annotations

import argparse
import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.http import Request
from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site


class QuietSite(Site):
    """A L{Site} without an access log."""

    def log(self, request: Request) -> None:
        """Log nothing, as twisted-proxy does with C{access_log = false}."""


def main(argv: list[str] | None = None) -> int:
    """Serve the built-in reverse proxy until the lifetime is over or terminated."""
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=600.0)
    args = parser.parse_args(argv)

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False,
    )

    # twisted.web.proxy has already imported the default reactor: epoll on Linux.
    from twisted.internet import reactor  # noqa: TID251 (entry point)

    site = QuietSite(ReverseProxyResource("127.0.0.1", args.backend_port, b""))
    # Site's generic parameter does not satisfy listenTCP's annotation.
    reactor.listenTCP(args.port, site, interface="127.0.0.1")  # type: ignore[arg-type]
    reactor.callLater(args.lifetime, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
Demo backends for ``make run``: small HTTP servers that answer with their name.

``python -m twisted_proxy.demo 9001 9002`` serves "backend 1" on port 9001 and
"backend 2" on 9002 (127.0.0.1), until interrupted.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site


class NamedBackend(Resource):
    """Answer every request with this backend's name and what it was asked."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-backend", self.name.encode())
        return f"{self.name}\n".encode()


def main(argv: list[str] | None = None) -> int:
    """Serve one named backend per port given on the command line."""
    from twisted.internet import reactor  # noqa: TID251 - an entry point

    ports = [int(p) for p in (argv if argv is not None else sys.argv[1:])] or [
        9001,
        9002,
    ]
    for number, port in enumerate(ports, start=1):
        site = Site(NamedBackend(f"backend {number}"))
        site.noisy = False
        TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
        print(f"demo backend {number} on http://127.0.0.1:{port}/", flush=True)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""
``twistd proxy``: options in, a L{ProxyService} out.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import IService, Service
from twisted.python import usage

from twisted_proxy.config import ConfigError, load


class Options(usage.Options):
    """Options for ``twistd proxy``."""

    synopsis = "--config FILE"
    longdesc = (
        "Run twisted-proxy, a reverse proxy and load balancer, from a TOML "
        "configuration file."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file."],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")


def makeService(options: Options) -> IService:
    """Build the proxy service from the configuration file named in C{options}."""
    from twisted_proxy.service import ProxyService

    try:
        config = load(options["config"])
    except ConfigError as e:
        raise SystemExit(f"twisted-proxy: configuration not valid\n{e}") from None
    except OSError as e:
        raise SystemExit(
            f"twisted-proxy: cannot read {options['config']}: {e}"
        ) from None
    from twisted_proxy.tls import TLSFilesError

    try:
        service = ProxyService(config)
    except TLSFilesError as e:
        raise SystemExit(f"twisted-proxy: certificate files not usable\n{e}") from None
    SighupReload(service.reloadCertificates).setServiceParent(service)
    return service


class SighupReload(Service):
    """
    SIGHUP reloads the certificates (as C{nginx -s reload} re-reads them),
    while the service runs; the previous handler is put back on stop.
    """

    def __init__(self, reload: Callable[[], object], reactor: Any = None) -> None:
        self._reload = reload
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        if self._reactor is None:
            from twisted.internet import reactor  # noqa: TID251

            self._reactor = reactor
        self._previous = signal.signal(signal.SIGHUP, self._onSignal)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _onSignal(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reload)

"""
``twistd proxy``: options in, a L{ProxyService} out.

Whatever would stop start-up is found here or while the ports are bound, and
said in one line per problem (``FILE: key: what is wrong``) with exit status
1; ``--log-level debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from twisted_proxy._twisted_internals import forgetExitSignal
from twisted_proxy.apache.importer import configFromText
from twisted_proxy.config.loader import ConfigError, readConfig
from twisted_proxy.config.model import Config, LogLevel
from twisted_proxy.preflight import startupProblems

LOG_LEVELS: tuple[LogLevel, ...] = ("info", "debug")


class Options(usage.Options):
    """Options for ``twistd proxy``."""

    synopsis = "--config FILE [--log-level debug]"
    longdesc = (
        "Run twisted-proxy, a reverse proxy and load balancer, from a TOML "
        "configuration file."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file."],
        [
            "log-level",
            None,
            None,
            "info or debug: overrides [proxy] log_level; debug logs every "
            "upstream exchange and shows tracebacks of start-up failures.",
        ],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        level = self["log-level"]
        if level is not None and level not in LOG_LEVELS:
            raise usage.UsageError(
                f"--log-level: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
            )


def loadForStart(
    path: str,
    logLevel: LogLevel | None = None,
    text: str | None = None,
    notices: bool = True,
) -> Config:
    """
    Load C{path} (C{text}: its text, already read) and run every start-up
    check on it (L{startupProblems}); C{logLevel} overrides the file's
    ``[proxy] log_level``. An Apache file's importer notices go to standard
    error unless C{notices} is false (a check before the real start).

    :raise ConfigError: one message per problem, each naming C{path}.
    """
    if text is None:
        text = readConfig(path)
    config, said = configFromText(text, path)
    for notice in said if notices else ():
        print(f"notice: {notice}", file=sys.stderr)
    errors = startupProblems(config).errors
    if errors:
        raise ConfigError([f"{path}: {error}" for error in errors])
    if logLevel is not None:
        proxy = dataclasses.replace(config.proxy, log_level=logLevel)
        config = dataclasses.replace(config, proxy=proxy)
    return config


def makeService(options: Options) -> IService:
    """Build the proxy service from the configuration file named in C{options}."""
    from twisted_proxy.preflight import StartupError
    from twisted_proxy.service import ProxyService
    from twisted_proxy.signals import OperatorSignals
    from twisted_proxy.tls.server import TLSFilesError

    twistd: Any = getattr(options, "parent", None) or {}
    path = options["config"]
    daemon = not twistd.get("nodaemon", True)
    owner = None
    try:
        text = readConfig(path)
        config = loadForStart(path, options["log-level"], text)
        if config.proxy.workers > 1:
            from twisted.internet import reactor  # noqa: TID251

            from twisted_proxy.workers.owner import Owner

            owner = Owner(
                config.proxy.workers, text, reactor, options["log-level"], daemon
            )
        service = ProxyService(config, daemon=daemon, role=owner)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    except (StartupError, TLSFilesError) as e:
        raise SystemExit(f"{path}: {e}") from None
    top = TwistdProxy(service, twistd, options["log-level"])
    service.setServiceParent(top)
    reopen = service.reopenLogs
    if owner is not None:
        owner.attach(service)
        owner.setServiceParent(top)

        def reopen() -> bool:
            owner.reopenLogs()
            return service.reopenLogs()

    OperatorSignals(service.reload, reopen).setServiceParent(top)
    return top


class TwistdProxy(MultiService):
    """
    The proxy as twistd runs it: a port that cannot be bound is one line on
    standard error and exit status 1 (a traceback only with ``--log-level
    debug``; a daemon's twistd prints it after "An error has occurred"), and
    a stop that SIGTERM or SIGINT asked for exits 0 once done.
    """

    _log = Logger()

    def __init__(
        self, proxy: Any, twistd: Any = None, logLevel: str | None = None
    ) -> None:
        """
        C{twistd}: twistd's own options (a daemon's status pipe and the pid
        file are found there once it has daemonised).
        """
        super().__init__()
        self.proxy = proxy
        self._twistd = twistd if twistd is not None else {}
        self._debug = logLevel == "debug"

    def privilegedStartService(self) -> None:
        from twisted_proxy.preflight import StartupError

        try:
            super().privilegedStartService()
        except StartupError as e:
            source = self.proxy.config.source
            message = f"{source}: {e}" if source else str(e)
            if self._debug:
                raise
            pipe = self._twistd.get("statusPipe")
            if pipe is not None:
                # A daemon: its parent waits on this pipe, prints the first
                # 100 bytes and points to the log file, where the whole line is.
                self._log.critical("{message}", message=message)
                status = f"1 {e}".encode("ascii", "backslashreplace")[:100]
                os.write(pipe, status)
                os.close(pipe)
            else:
                # twistd's standard error is its log by now, the real one is
                # the operator's terminal.
                stream = sys.__stderr__ or sys.stderr
                print(message, file=stream, flush=True)
            pidfile = self._twistd.get("pidfile")
            if pidfile:
                with contextlib.suppress(OSError):
                    os.remove(pidfile)
            raise SystemExit(1) from None

    def stopService(self) -> Deferred[None]:
        from twisted.internet import reactor  # noqa: TID251

        d: Deferred[Any] = maybeDeferred(super().stopService)

        def stopped(result: object) -> None:
            forgetExitSignal(reactor)

        return d.addCallback(stopped)

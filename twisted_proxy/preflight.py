"""
Everything start-up would trip over, found before it starts.

C{twisted-proxy check}, C{twisted-proxy run} and C{twistd proxy} all run
L{startupProblems} on a loaded configuration: the same checks start-up makes,
short of binding ports. Endpoint strings are parsed, the access log's place is
checked for writing, the log format is compiled, every certificate, key and CA
file is read and built into a context. Each problem is one line: the dotted
key, then what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IStreamServerEndpoint

from twisted_proxy.config.model import Config
from twisted_proxy.core.logformat import compileFormat

__all__ = [
    "NO_LISTENER",
    "Problems",
    "StartupError",
    "accessLogProblem",
    "endpointProblem",
    "parseEndpoint",
    "sharingProblem",
    "startupProblems",
    "stateFileProblem",
    "usersProblem",
]

NO_LISTENER = (
    "listen: no [[listen]] table, so nothing would be served"
    ' (add one: [[listen]] endpoint = "tcp:8080")'
)


class StartupError(Exception):
    """
    The proxy cannot start as configured: a port it cannot listen on, an
    endpoint string it cannot parse, an access log it cannot open. The
    message is one line naming the key and the reason.
    """


@dataclass
class Problems:
    """What would stop start-up (C{errors}) and what would only trouble it."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _NoReactor:
    """A stand-in reactor for parsing: an endpoint only keeps it until listen."""


def parseEndpoint(description: str, reactor: Any = None) -> IStreamServerEndpoint:
    """
    Parse a server endpoint string as twistd would, without listening.

    :raise ValueError: saying what is wrong with C{description}.
    """
    try:
        endpoint: IStreamServerEndpoint = serverFromString(
            reactor or _NoReactor(), description
        )
    except OSError as e:  # ssl: endpoints read their files while parsed
        reason = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
    except Exception as e:  # plugins raise what they like
        reason = str(e).strip() or type(e).__name__
        if isinstance(e, KeyError):
            reason = f"unknown argument {reason}"
    else:
        problem = _addressProblem(endpoint)
        if problem is None:
            return endpoint
        raise ValueError(f"cannot listen on {description!r}: {problem}")
    raise ValueError(
        f"{description!r} is not an endpoint string Twisted can listen on"
        f' ({reason}); expected one like "tcp:8080:interface=127.0.0.1"'
    )


def _addressProblem(endpoint: object) -> str | None:
    """A TCP port or interface that binding would refuse, found beforehand."""
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        return f"port {port} is not between 0 and 65535"
    interface = getattr(endpoint, "_interface", None)
    if isinstance(interface, str) and interface:
        try:
            ipaddress.ip_address(interface.split("%")[0])
        except ValueError:
            return f"interface {interface!r} is not an IP address"
    if isinstance(endpoint, UNIXServerEndpoint):
        folder = os.path.dirname(os.path.abspath(endpoint._address))
        if not os.path.isdir(folder):
            return f"the folder {folder} does not exist"
    return None


def endpointProblem(description: str) -> str | None:
    """What is wrong with a listener's endpoint string, or C{None}."""
    try:
        parseEndpoint(description)
    except ValueError as e:
        return str(e)
    return None


def sharingProblem(description: str) -> str | None:
    """
    Why worker processes could not share the port of C{description}, or
    C{None}: they are handed the listening socket itself, so only plain
    TCP endpoints can be (TLS is C{[listen.tls]}'s, which can).
    """
    endpoint = parseEndpoint(description)
    if isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        return None
    return (
        f"{description!r}: with [proxy] workers above 1 a listener must be a"
        " tcp: or tcp6: endpoint (for TLS, add a [listen.tls] table)"
    )


def accessLogProblem(path: str | None) -> str | None:
    """
    Why the access log at C{path} could not be opened for appending, or
    C{None}. C{"-"} (standard output) and C{None} (no log) always can.
    """
    if path is None or path == "-":
        return None
    if os.path.isdir(path):
        return f"{path} is a directory; name a file in it"
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            return f"{path} is not writable by this user (uid {os.getuid()})"
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist; create it or log elsewhere"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"cannot create {path}: the folder {folder} is not writable by this"
            f" user (uid {os.getuid()})"
        )
    return None


def startupProblems(config: Config, requireListeners: bool = True) -> Problems:
    """
    Run every check start-up makes on C{config}, short of binding its ports.

    C{requireListeners}: a configuration with no C{[[listen]]} is an error
    (for the command and twistd; a program embedding the proxy may mount its
    site on listeners of its own).
    """
    problems = Problems()
    errors = problems.errors
    if requireListeners and not config.listen:
        errors.append(NO_LISTENER)
    for index, listener in enumerate(config.listen):
        problem = endpointProblem(listener.endpoint)
        if problem is None and config.proxy.workers > 1:
            problem = sharingProblem(listener.endpoint)
        if problem is not None:
            errors.append(f"listen[{index}].endpoint: {problem}")
    proxy = config.proxy
    problem = accessLogProblem(proxy.access_log)
    if problem is not None:
        errors.append(f"proxy.access_log: {problem}")
    try:
        compileFormat(proxy.access_log_format)
    except ValueError as e:
        errors.append(f"proxy.access_log_format: {e}")
    if proxy.state_file is not None:
        problem = stateFileProblem(proxy.state_file)
        if problem is not None:
            errors.append(f"proxy.state_file: {problem}")
    _tlsProblems(config, problems)
    for index, listener in enumerate(config.listen):
        users = listener.connect.users if listener.connect is not None else None
        if users is not None:
            problem = usersProblem(users)
            if problem is not None:
                errors.append(f"listen[{index}].connect.users: {problem}")
    return problems


def usersProblem(path: str) -> str | None:
    """Why the htpasswd file at C{path} cannot be used (each bad line), or None."""
    from twisted_proxy.frontends.proxyauth import HtpasswdError, readUsers

    try:
        readUsers(path)
    except HtpasswdError as e:
        return str(e)
    return None


def stateFileProblem(path: str) -> str | None:
    """
    Why the state file at C{path} could not be read back or written (a new
    file is renamed over it, so its folder must be writable), or C{None}.
    """
    from twisted_proxy.admin.statefile import StateFileError, readState

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a directory; name a file in it"
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist; create it or name another"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the folder {folder} is not writable by this user (uid"
            f" {os.getuid()}); the state file is replaced there at each change"
        )
    try:
        readState(path)
    except StateFileError as e:
        return f"{e} (delete it to start from the configuration file alone)"
    return None


def _tlsProblems(config: Config, problems: Problems) -> None:
    """
    Listeners' certificates, keys and handshake settings weaker than the
    defaults, backends' CA files, unchecked backends.
    """
    from twisted_proxy.tls.backend import (
        BackendCAError,
        BackendTLS,
        tlsBackends,
        unverifiedWarnings,
    )
    from twisted_proxy.tls.profile import weakTLSWarnings
    from twisted_proxy.tls.server import ServerTLS, TLSFilesError, inspectFiles

    for listener in config.listen:
        if listener.tls is None:
            continue
        found = inspectFiles(listener.tls)
        problems.warnings.extend(str(p) for p in found if p.severity == "warning")
        errors = [str(p) for p in found if p.severity == "error"]
        if not errors:
            # What start-up builds: a context OpenSSL accepts, SNI included.
            try:
                ServerTLS(listener.tls)
            except TLSFilesError as e:
                errors = [str(p) for p in e.problems]
        problems.errors.extend(errors)
    problems.warnings.extend(weakTLSWarnings(config))
    backends = tlsBackends(config.routes, [b for _, b in config.balancers])
    contexts = BackendTLS()
    for backend in backends:
        if backend.policy.verify and backend.policy.ca is not None:
            try:
                contexts.context(backend.policy)
            except BackendCAError as e:
                problems.errors.append(f"{backend.where}.tls_ca: {e}")
    problems.warnings.extend(warning for _, warning in unverifiedWarnings(backends))

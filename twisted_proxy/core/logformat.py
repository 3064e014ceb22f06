"""
Access logging: Apache ``LogFormat`` strings compiled once, and a buffered writer.

Formatting is pure (a L{LogRecord} in, one line out) and cheap: the format is
parsed once into a template and a list of small functions, and ``%t`` is cached
per second (L{twisted_proxy.core.logtime}). Writing is buffered so a busy proxy
does not make a system call per request; the periodic flush belongs to whoever
owns the writer.

Every request gets its line, including one whose response was cut short: its
status is the one sent (``-`` in ``%s``, null in JSON, when no response head
went out) and its byte counts are what left for the client. How it ended:

 - ``%X`` is Apache's connection status: ``X`` the response did not complete,
   ``+`` the connection is kept alive after it, ``-`` it is closed after it;
 - ``%{PROXY_END_REASON}e`` is twisted-proxy's own (a variable no Apache
   module sets, so the format stays valid Apache syntax): ``complete``, or
   why the response was cut short: ``client-closed`` (the client closed or
   reset its connection or stream), ``backend-closed`` (the backend closed
   or reset mid-response), ``backend-timeout`` (the backend moved no byte for
   ``timeout``), ``backend-error`` (the backend broke HTTP mid-response),
   ``send-timeout`` (the client took none of the response for
   ``send_timeout``), ``shutdown-grace`` (the proxy stopped and
   ``shutdown_grace`` ran out), ``upload-refused`` (the request body was
   refused as too large, malformed or stalled after the response had begun),
   ``proxy-error`` (the proxy could no longer send an error page);
 - the ``json`` format has both, as ``connection_status`` and ``end_reason``.

``common`` and ``combined`` are exactly Apache's and show neither.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted_proxy.core.logtime import (
    PerSecond,
    apacheTime,
    isoTimeParts,
    strftimeRenderer,
)

__all__ = [
    "END_BACKEND_CLOSED",
    "END_BACKEND_ERROR",
    "END_BACKEND_TIMEOUT",
    "END_CLIENT_CLOSED",
    "END_COMPLETE",
    "END_IDLE",
    "END_PROXY_ERROR",
    "END_REASON_VARIABLE",
    "END_SEND_TIMEOUT",
    "END_SHUTDOWN_GRACE",
    "END_UPLOAD_REFUSED",
    "BufferedLogWriter",
    "HeaderLookup",
    "LogRecord",
    "compileFormat",
    "escapeLogItem",
]

# How a response ended, as %{PROXY_END_REASON}e and the JSON end_reason say.
END_COMPLETE = "complete"
END_CLIENT_CLOSED = "client-closed"
END_BACKEND_CLOSED = "backend-closed"
END_BACKEND_TIMEOUT = "backend-timeout"
END_BACKEND_ERROR = "backend-error"
END_SEND_TIMEOUT = "send-timeout"
END_SHUTDOWN_GRACE = "shutdown-grace"
END_UPLOAD_REFUSED = "upload-refused"
END_PROXY_ERROR = "proxy-error"
END_IDLE = "idle-timeout"

END_REASON_VARIABLE = "PROXY_END_REASON"
"""The C{%{NAME}e} name under which a log format shows how the response ended."""

HeaderLookup = Callable[[bytes], "bytes | None"]
"""
Returns the first value of a header, given its lowercase name, or C{None}.

A plain C{dict} of lowercase names works through its C{get} method.
"""


def _noHeaders(name: bytes) -> bytes | None:
    """Find no header at all: the default lookup."""
    return None


@dataclass(slots=True)
class LogRecord:
    """Everything an access-log line can show about one finished request."""

    remoteHost: str
    remoteUser: str | None
    requestTime: float
    """Epoch seconds when the request started."""
    method: bytes
    target: bytes
    """The request-target as forwarded: normalised path and optional ``?query``."""
    protocol: bytes
    status: int
    """The status sent; 0 when no response head went out."""
    bodyBytes: int
    """Response body bytes sent."""
    bytesOut: int
    """Everything sent, headers included."""
    bytesIn: int
    """Everything received, headers included."""
    duration: float
    """Seconds from the start of the request to the end of the response."""
    requestHeaders: HeaderLookup = _noHeaders
    responseHeaders: HeaderLookup = _noHeaders
    env: dict[str, str] = field(default_factory=dict)
    """Variables for ``%{NAME}e``: ``BALANCER_NAME``, ``BALANCER_WORKER_NAME``..."""
    serverName: str = "-"
    """The canonical server name, for ``%v``."""
    requestLine: bytes | None = None
    """The request line as received, for ``%r`` (the evidence); C{None}:
    method, target and protocol."""
    connectionStatus: str = "+"
    """Apache's ``%X``: ``X`` cut short, ``+`` kept alive, ``-`` closed after."""
    endReason: str = END_COMPLETE
    """How the response ended: ``complete`` or an ``END_*`` reason."""


NAMED_FORMATS = {
    "common": '%h %l %u %t "%r" %>s %b',
    "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
}

# Apache's ap_escape_logitem: quotes and backslashes get a backslash, a few
# controls their C escape, anything else outside printable ASCII becomes \xhh.
_ESCAPES = {c: f"\\x{c:02x}" for c in range(256)}
_ESCAPES.update({c: chr(c) for c in range(0x20, 0x7F)})
_ESCAPES.update({0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v"})
_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\"})
_UNSAFE = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _escapeMatch(match: re.Match[bytes]) -> bytes:
    """Return the escape for one unsafe byte, for L{re.sub}."""
    return _ESCAPES[match.group()[0]].encode("ascii")


def escapeLogItem(value: bytes | str) -> str:
    """Escape a value for a log line as Apache does: ``\\"``, ``\\\\``, ``\\xhh``."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if _UNSAFE.search(raw) is None:
        return raw.decode("ascii")
    return _UNSAFE.sub(_escapeMatch, raw).decode("ascii")


Part = Callable[[LogRecord], str]


def _dash(value: int) -> str:
    """Render a byte count (or status) as Apache does: ``-`` for none."""
    return str(value) if value > 0 else "-"


def _headerPart(lookup: Callable[[LogRecord], HeaderLookup], name: str) -> Part:
    """Return a part rendering one header, or ``-`` when it is absent."""
    key = name.lower().encode("ascii")

    def part(record: LogRecord) -> str:
        value = lookup(record)(key)
        return "-" if value is None else escapeLogItem(value)

    return part


def _envPart(name: str) -> Part:
    """Return a part rendering one environment variable, or ``-``."""

    def part(record: LogRecord) -> str:
        value = record.env.get(name)
        return "-" if value is None else escapeLogItem(value)

    return part


def _timePart(arg: str | None) -> Part:
    """Return a part for ``%t`` or ``%{format}t``."""
    if arg is None:
        return lambda r: apacheTime(r.requestTime)
    useEnd = False
    if arg.startswith("begin:"):
        arg = arg[6:]
    elif arg.startswith("end:"):
        arg, useEnd = arg[4:], True

    def when(r: LogRecord) -> float:
        return r.requestTime + r.duration if useEnd else r.requestTime

    if arg == "sec":
        return lambda r: str(int(when(r)))
    if arg == "msec":
        return lambda r: str(int(when(r) * 1000))
    if arg == "usec":
        return lambda r: str(int(when(r) * 1000000))
    if arg == "msec_frac":
        return lambda r: f"{int(when(r) * 1000) % 1000:03d}"
    if arg == "usec_frac":
        return lambda r: f"{int(when(r) * 1000000) % 1000000:06d}"
    cache = PerSecond(strftimeRenderer(arg))
    return lambda r: cache(when(r))


def _durationPart(arg: str | None) -> Part:
    """Return a part for ``%T`` or ``%{UNIT}T``."""
    if arg in (None, "s"):
        return lambda r: str(int(r.duration))
    if arg == "ms":
        return lambda r: str(int(r.duration * 1000))
    if arg == "us":
        return lambda r: str(int(r.duration * 1000000))
    raise ValueError(f"unknown unit {arg!r} in log format directive %{{{arg}}}T")


def _path(record: LogRecord) -> str:
    """Render ``%U``: the request path without its query."""
    return escapeLogItem(record.target.split(b"?", 1)[0])


def _query(record: LogRecord) -> str:
    """Render ``%q``: ``?query``, or nothing."""
    index = record.target.find(b"?")
    return "" if index < 0 else escapeLogItem(record.target[index:])


def _rawLine(record: LogRecord) -> bytes:
    """The first line of the request, as received."""
    line = record.requestLine
    if line is None:
        line = b"%s %s %s" % (record.method, record.target, record.protocol)
    return line


def _requestLine(record: LogRecord) -> str:
    """Render ``%r``: the first line of the request, as received."""
    return escapeLogItem(_rawLine(record))


def _user(record: LogRecord) -> str:
    """Render ``%u``: the authenticated user, or ``-``."""
    user = record.remoteUser
    if user is None:
        return "-"
    return escapeLogItem(user) if user else '""'


_SIMPLE: dict[str, Part] = {
    "h": lambda r: r.remoteHost,
    "a": lambda r: r.remoteHost,
    "l": lambda r: "-",
    "u": _user,
    "r": _requestLine,
    "s": lambda r: _dash(r.status),
    "b": lambda r: _dash(r.bodyBytes),
    "B": lambda r: str(r.bodyBytes),
    "O": lambda r: str(r.bytesOut),
    "I": lambda r: str(r.bytesIn),
    "S": lambda r: str(r.bytesIn + r.bytesOut),
    "D": lambda r: str(int(r.duration * 1000000)),
    "m": lambda r: escapeLogItem(r.method),
    "U": _path,
    "q": _query,
    "H": lambda r: escapeLogItem(r.protocol),
    "v": lambda r: escapeLogItem(r.serverName),
    "V": lambda r: escapeLogItem(r.serverName),
    "X": lambda r: r.connectionStatus,
    # The worker process that served it (C{[proxy] workers}), as Apache's child.
    "P": lambda r: str(os.getpid()),
}

# %{c}a (the peer rather than the client), %{...}h and friends take an argument
# that changes nothing here: no DNS lookups, no PROXY-protocol peer split.
_ARGUMENT_IGNORED = frozenset("ah")


def _directivePart(letter: str, arg: str | None) -> Part:
    """Return the part for one directive letter and its optional ``{argument}``."""
    if letter == "i":
        if not arg:
            raise ValueError("log format directive %i needs a header name: %{Name}i")
        return _headerPart(lambda r: r.requestHeaders, arg)
    if letter == "o":
        if not arg:
            raise ValueError("log format directive %o needs a header name: %{Name}o")
        return _headerPart(lambda r: r.responseHeaders, arg)
    if letter == "e":
        if not arg:
            raise ValueError("log format directive %e needs a variable: %{NAME}e")
        if arg == END_REASON_VARIABLE:
            return lambda r: r.endReason
        return _envPart(arg)
    if letter == "t":
        return _timePart(arg)
    if letter == "T":
        return _durationPart(arg)
    if letter in _SIMPLE and (arg is None or letter in _ARGUMENT_IGNORED):
        return _SIMPLE[letter]
    shown = f"%{{{arg}}}{letter}" if arg is not None else f"%{letter}"
    raise ValueError(f"unknown log format directive {shown}")


def _conditional(part: Part, statuses: frozenset[int], negate: bool) -> Part:
    """Show a part only for some statuses, else ``-`` (Apache's ``%400,501{..}i``)."""

    def conditional(record: LogRecord) -> str:
        if (record.status in statuses) != negate:
            return part(record)
        return "-"

    return conditional


_DIRECTIVE = re.compile(
    r"%([<>]?)(!?)([0-9,]*)([<>]?)(?:\{([^}]*)\})?([<>]?)(.?)", re.S
)


def _compileApache(fmt: str) -> Part:
    """Compile an Apache ``LogFormat`` string into one formatting function."""
    template: list[str] = []
    parts: list[Part] = []
    position = 0
    for match in _DIRECTIVE.finditer(fmt):
        template.append(
            fmt[position : match.start()].replace("{", "{{").replace("}", "}}")
        )
        position = match.end()
        _, negate, codes, _, arg, _, letter = match.groups()
        if match.group(0) == "%%":
            template.append("%")
            continue
        if not letter:
            raise ValueError(
                f"log format ends in an incomplete directive {match.group(0)!r}"
            )
        part = _directivePart(letter, arg)
        if codes:
            try:
                statuses = frozenset(int(code) for code in codes.split(",") if code)
            except ValueError:
                raise ValueError(
                    f"bad status list in log format {match.group(0)!r}"
                ) from None
            part = _conditional(part, statuses, bool(negate))
        elif negate:
            raise ValueError(
                f"'!' without status codes in log format {match.group(0)!r}"
            )
        template.append("{}")
        parts.append(part)
    template.append(fmt[position:].replace("{", "{{").replace("}", "}}"))
    render = "".join(template).format
    frozen = tuple(parts)
    if not frozen:
        constant = render()
        return lambda record: constant

    def formatLine(record: LogRecord) -> str:
        return render(*[part(record) for part in frozen])

    return formatLine


def _text(value: bytes | None) -> str | None:
    """Decode header bytes for JSON, keeping undecodable bytes visible."""
    return None if value is None else value.decode("utf-8", "backslashreplace")


def _formatJSON(record: LogRecord) -> str:
    """Render one request as a JSON object on one line."""
    when = record.requestTime
    millis = int(when * 1000) % 1000
    return json.dumps(
        {
            "time": isoTimeParts(when).format(millis),
            "remote": record.remoteHost,
            "user": record.remoteUser,
            "request": _text(_rawLine(record)),
            "method": _text(record.method),
            "uri": _text(record.target),
            "protocol": _text(record.protocol),
            "status": record.status or None,
            "bytes": record.bodyBytes,
            "bytes_in": record.bytesIn,
            "bytes_out": record.bytesOut,
            "duration_ms": round(record.duration * 1000, 3),
            "referer": _text(record.requestHeaders(b"referer")),
            "user_agent": _text(record.requestHeaders(b"user-agent")),
            "worker": record.env.get("BALANCER_WORKER_NAME"),
            "connection_status": record.connectionStatus,
            "end_reason": record.endReason,
        },
        separators=(",", ":"),
    )


def compileFormat(fmt: str) -> Callable[[LogRecord], str]:
    """
    Compile an access-log format once; return the per-request line formatter.

    C{fmt} is ``"common"``, ``"combined"``, ``"json"`` or an Apache ``LogFormat``
    string. The line has no trailing newline.

    :raise ValueError: naming the directive, for a format that cannot be used.
    """
    if fmt == "json":
        return _formatJSON
    return _compileApache(NAMED_FORMATS.get(fmt, fmt))


class BufferedLogWriter:
    """
    Collect log lines and hand them to C{write} in large chunks.

    A chunk is written when the buffer exceeds C{maxBytes} characters, and on
    L{flush}, which the owner calls periodically. After L{close} every line is
    written through at once.
    """

    def __init__(
        self,
        write: Callable[[str], object],
        flush: Callable[[], object] | None = None,
        maxBytes: int = 65536,
    ) -> None:
        self._write = write
        self._flush = flush
        self._maxBytes = maxBytes
        self._buffer: list[str] = []
        self._size = 0

    def log(self, line: str) -> None:
        """Add one line (a newline is appended)."""
        self._buffer.append(line)
        self._buffer.append("\n")
        self._size += len(line) + 1
        if self._size > self._maxBytes:
            self._drain()

    def _drain(self) -> None:
        """Write out everything buffered, in one call."""
        if not self._buffer:
            return
        chunk = "".join(self._buffer)
        # Forget the lines first: a failing write must not make the buffer grow forever.
        self._buffer = []
        self._size = 0
        self._write(chunk)

    def flush(self) -> None:
        """Write out everything buffered and flush the target."""
        self._drain()
        if self._flush is not None:
            self._flush()

    def close(self) -> None:
        """Flush, and write every later line through at once."""
        self._maxBytes = -1
        self.flush()

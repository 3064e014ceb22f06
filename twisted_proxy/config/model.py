"""
The validated configuration: plain frozen values, built by the loader.

Every other part of twisted-proxy reads these and nothing else; the names follow
the TOML vocabulary (one to one with Apache mod_proxy's directives).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]  # noqa: UP007 - a runtime alias

ServerTokens = Literal["prod", "full", "none"]
ViaMode = Literal["off", "on", "full", "block"]
BalancerMethod = Literal[
    "byrequests", "bytraffic", "bybusyness", "roundrobin", "random2", "hash"
]
HealthMethod = Literal["TCP", "CPING", "OPTIONS", "HEAD", "GET"]
ListenerProtocol = Literal["http", "tcp"]
ProxyProtocolVersion = Literal["v1", "v2"]
TLSVersion = Literal["1.0", "1.1", "1.2", "1.3"]
LogLevel = Literal["info", "debug"]


@dataclass(frozen=True)
class HeaderDirectives:
    """
    ``Header`` (or ``RequestHeader``) directives. One list per kind, applied
    in this order whatever the file's: edit, edit_all, unset, set, append, add.
    """

    # (name, value): replaces every field of that name.
    set: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()
    # (name, value): one more field, whatever is there (a second Set-Cookie).
    add: tuple[tuple[str, str], ...] = ()
    # (name, value): the fields of that name merged into one, ", value" after
    # them; added when there is none.
    append: tuple[tuple[str, str], ...] = ()
    # (name, regex, replacement): in each field of that name the first match
    # replaced (edit_all: every match); the replacement in Apache's syntax.
    edit: tuple[tuple[str, str, str], ...] = ()
    edit_all: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class WebSocketSettings:
    """``[proxy.websocket]``: how bridged WebSockets are kept and limited."""

    # Seconds between the proxy's pings to each side (0: none); a side that
    # does not answer within the same time is dropped.
    ping_interval: float = 0.0
    # A message larger than this (either way) closes both sides with 1009.
    max_message_bytes: int = 64 * 1024 * 1024
    # No message either way for this long: both sides closed with 1001
    # (0: never).
    idle_timeout: float = 0.0


@dataclass(frozen=True)
class ProxySettings:
    """The ``[proxy]`` table: defaults for the whole server."""

    server_name: str = "localhost"
    server_tokens: ServerTokens = "prod"
    preserve_host: bool = False
    forwarded_headers: bool = True
    trusted_proxies: tuple[Network, ...] = ()
    via: ViaMode = "off"
    # No byte moved to or from the backend for this long: 504 (or the
    # client's connection cut once the response has begun).
    timeout: float = 60.0
    connect_timeout: float = 5.0
    # The client accepted no byte of the response for this long: both legs
    # closed (nginx's send_timeout).
    send_timeout: float = 60.0
    # A request with a body goes on a pooled connection only if that
    # connection's last response ended less than this long ago.
    safe_reuse: float = 1.0
    # Expect: 100-continue goes to the backend; its body is sent anyway if
    # the backend says nothing for this long.
    continue_timeout: float = 1.0
    header_timeout: float = 20.0
    idle_timeout: float = 75.0
    max_header_bytes: int = 65536
    # Header fields a request may carry (more: 400).
    max_headers: int = 100
    # "//" in a request path is "/" (nginx's merge_slashes), before routing.
    merge_slashes: bool = True
    max_body_bytes: int = 0
    access_log: str | None = "-"
    access_log_format: str = "combined"
    compress: tuple[str, ...] = ()
    # gzip level (1: fastest, 9: smallest).
    compress_level: int = 6
    response_headers: HeaderDirectives = field(default_factory=HeaderDirectives)
    # Upstream keep-alive pool (Apache's keepalive / max / ttl worker options).
    keepalive: bool = True
    pool_size: int = 64
    pool_ttl: float = 60.0
    # SIGTERM: how long requests in flight may take to finish before being cut.
    shutdown_grace: float = 30.0
    # "debug": every upstream exchange is logged too (Apache's LogLevel
    # proxy:trace2); "info": errors and state changes only.
    log_level: LogLevel = "info"
    # Where the balancer-manager's run-time changes are kept across
    # restarts (None: they last until the process ends).
    state_file: str | None = None
    # Processes serving the listeners (``twistd proxy`` and ``twisted-proxy
    # run``; an embedded ProxyService is always one). "auto" in the file is
    # the number of cores this process may run on.
    workers: int = 1
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)


@dataclass(frozen=True)
class SNICertificate:
    """One ``[[listen.tls.sni]]``: a certificate for the names in ``hosts``."""

    hosts: tuple[str, ...]
    certificate: str
    key: str
    # PEM intermediates sent after the certificate (SSLCertificateChainFile).
    chain: str | None = None


@dataclass(frozen=True)
class ListenerTLS:
    """
    ``[listen.tls]``: TLS termination (Apache's SSLEngine, nginx's ``ssl``).

    File paths are resolved against the config file's folder. ``where`` is
    the table's key path (``listen[0].tls``) for messages about its files.
    """

    certificate: str
    key: str
    # PEM intermediates sent after the certificate (SSLCertificateChainFile).
    chain: str | None = None
    # Below "1.2": honoured with a warning (tls/profile.py).
    min_version: TLSVersion = "1.2"
    # ALPN protocols offered, in preference order; "h2" turns HTTP/2 on.
    alpn: tuple[str, ...] = ("http/1.1",)
    # Strict-Transport-Security max-age; 0: no header.
    hsts: int = 0
    # Require client certificates signed by this CA (mTLS).
    client_ca: str | None = None
    # Pass the verified client subject to the backend in this header; a
    # client-supplied header of that name is always removed first.
    client_cert_header: str | None = None
    # OpenSSL cipher string for TLS 1.2 and older; None: Mozilla's
    # intermediate list (its "old" one below min_version "1.2").
    ciphers: str | None = None
    sni: tuple[SNICertificate, ...] = ()
    where: str = "tls"


def _loopback() -> tuple[Network, ...]:
    return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class ListenerConnect:
    """
    ``[listen.connect]``: CONNECT tunnels (Apache's mod_proxy_connect and
    AllowCONNECT). Without it a listener answers CONNECT with 405.

    ``allow_destinations`` holds host names (lower case) and networks, as
    L{twisted_proxy.core.connectrules.DestinationRules} judges them; nothing
    is reachable until it lists something.
    """

    allow_ports: tuple[int, ...] = (443, 563)
    allow_clients: tuple[Network, ...] = field(default_factory=_loopback)
    allow_destinations: tuple[str | Network, ...] = ()
    # An htpasswd file: Basic proxy authentication for every tunnel.
    users: str | None = None
    # None: [proxy] connect_timeout.
    connect_timeout: float | None = None
    # An open tunnel that moves no byte either way for this long is closed.
    idle_timeout: float = 300.0
    where: str = "connect"


@dataclass(frozen=True)
class Listener:
    """One ``[[listen]]`` entry: a Twisted server endpoint string."""

    endpoint: str
    # "tcp": a stream listener relaying bytes to ``to`` (no HTTP at all).
    protocol: ListenerProtocol = "http"
    # A tcp listener's destination: tcp://host:port or balancer://NAME.
    to: Target | None = None
    # A tcp listener: a connection in which nothing moved either way for
    # this long is closed (None: 300 s).
    idle_timeout: float | None = None
    # A tcp listener: the PROXY protocol header sent to members first.
    proxy_protocol: ProxyProtocolVersion | None = None
    # A tcp listener: the sources whose connections start with a PROXY
    # protocol header (v1 or v2), read for the client's address.
    accept_proxy_protocol: tuple[Network, ...] = ()
    tls: ListenerTLS | None = None
    connect: ListenerConnect | None = None
    # "https://host[:port]": answer every request with a 301 there.
    redirect_https: str | None = None
    # Where in the file this listener was defined, for messages.
    index: int = 0


@dataclass(frozen=True)
class Target:
    """
    A parsed ``to =`` URL.

    ``scheme`` is ``http``/``https``/``ws``/``wss`` for a direct backend, or
    ``balancer`` (then ``host`` is the balancer's name). ``path`` is the raw
    path prefix, always ending in ``/`` when the URL did.
    """

    url: str
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Route:
    """One ``[[route]]``: a host/path match and what answers it."""

    path: str
    host: str | None = None
    to: Target | None = None
    handler: str | None = None
    reverse: tuple[str, ...] = ()
    cookie_domain: tuple[tuple[str, str], ...] = ()
    cookie_path: tuple[tuple[str, str], ...] = ()
    preserve_host: bool | None = None
    timeout: float | None = None
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    request_headers: HeaderDirectives = field(default_factory=HeaderDirectives)
    # Where in the file this route was defined, for error and log messages.
    index: int = 0
    # ``websocket = false`` stops an http(s) route from carrying WebSocket
    # upgrades; a ws:// or wss:// route always carries them.
    websocket: bool = True
    # An https:// or wss:// target: the CA file its certificate must chain to
    # (None: the system trust store), and whether it is verified at all.
    tls_ca: str | None = None
    tls_verify: bool = True
    # TRACE requests are passed to the backend (else refused with 405).
    trace: bool = False
    # A handler route: a file whose first line is the bearer token its
    # JSON API asks for (besides allow/deny).
    token_file: str | None = None
    # An ajp:// target: the AJP connector's secret (Tomcat's ``secret``).
    secret: str | None = field(default=None, repr=False)
    # Other names matched as ``host`` is (Apache's ServerAlias); only with
    # ``host``.
    aliases: tuple[str, ...] = ()
    # A regular expression searched for in the request's normalised path
    # instead of the ``path`` prefix (ProxyPassMatch); ``path`` is then "".
    match: str | None = None
    # Matching requests are not proxied: 404 (``ProxyPass PATH !``).
    exclude: bool = False
    # None: [proxy] connect_timeout.
    connect_timeout: float | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        """The names this route answers: its C{host}, then its C{aliases}."""
        return () if self.host is None else (self.host, *self.aliases)

    @property
    def location(self) -> str:
        """Its C{path}, or C{~PATTERN} for a C{match} route, for labels and logs."""
        return self.path if self.match is None else "~" + self.match


@dataclass(frozen=True)
class Member:
    """One ``[[balancer.NAME.member]]``."""

    url: str
    scheme: str
    host: str
    port: int
    route: str | None = None
    weight: int = 1
    standby: bool = False
    disabled: bool = False
    # In-flight requests at most (0: no cap); beyond it the member is busy.
    max_connections: int = 0
    # +N: no new sessions, existing sticky sessions still served.
    drain: bool = False
    # lbset: the lowest tier with a usable member serves.
    tier: int = 0
    # +I: failures never put this member in error.
    ignore_errors: bool = False
    # An https:// member: the CA file its certificate must chain to (None:
    # the system trust store), and whether it is verified at all.
    tls_ca: str | None = None
    tls_verify: bool = True
    # A tcp:// member reached over TLS (verified as https:// members are).
    tls: bool = False
    # An ajp:// member: its AJP connector's secret (Tomcat's ``secret``).
    secret: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The worker name Apache logs as ``BALANCER_WORKER_NAME``."""
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Sticky:
    """``[balancer.NAME.sticky]``: Apache's stickysession."""

    name: str = "ROUTEID"
    insert: bool = False
    failover: bool = True


@dataclass(frozen=True)
class HealthCheck:
    """``[balancer.NAME.health]``: mod_proxy_hcheck / HAProxy's check."""

    method: HealthMethod = "GET"
    uri: str = "/"
    interval: float = 30.0
    # After a failed check, the next ones come this often until the member is
    # confirmed down or back (None: the smaller of 2 s and interval).
    fast_interval: float | None = None
    timeout: float = 5.0
    passes: int = 2
    fails: int = 3
    # "2xx", "3xx", or single codes like "204".
    expect_status: tuple[str, ...] = ("2xx", "3xx")
    expect_body: str | None = None


@dataclass(frozen=True)
class Balancer:
    """One ``[balancer.NAME]`` table."""

    name: str
    method: BalancerMethod = "byrequests"
    members: tuple[Member, ...] = ()
    # For method = "hash": "ip" | "uri" | "header:NAME" | "cookie:NAME".
    hash_key: str = "ip"
    # Other members tried when one fails before any byte was sent;
    # None: every other member once (Apache's default).
    max_attempts: int | None = None
    fail_on_status: tuple[int, ...] = ()
    # A member in error is tried again after this many seconds.
    retry: float = 60.0
    # Seconds a request with no usable member waits for one (Apache's
    # ProxySet timeout=); 0: it is answered 503 at once.
    wait: float = 0.0
    sticky: Sticky | None = None
    health: HealthCheck | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated file."""

    proxy: ProxySettings = field(default_factory=ProxySettings)
    listen: tuple[Listener, ...] = ()
    routes: tuple[Route, ...] = ()
    balancers: tuple[tuple[str, Balancer], ...] = ()
    # The file it came from (None when built in code).
    source: str | None = None

    def balancer(self, name: str) -> Balancer:
        """Return the balancer called C{name}; the loader ensured it exists."""
        return dict(self.balancers)[name]

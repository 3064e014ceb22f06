"""
Apache directives (a L{twisted_proxy.apache.parse} tree) turned into this
proxy's configuration, as a TOML document's tables, each remembering the
Apache line it came from; with a notice for each line that has no meaning
here and an error for each that cannot be expressed, naming file, line and
directive. Nothing that changes behaviour is dropped in silence.

Apache's defaults are written out where ours differ, so an imported file
behaves as Apache would: C{retry} 60, health checks passing or failing on
one check (mod_proxy_hcheck's C{hcpasses}/C{hcfails} of 1), the connect
timeout equal to the timeout, Via off, the Host of the backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from twisted_proxy.apache.parse import Directive, Section

__all__ = ["Imported", "Message", "convert"]

# Lines about how httpd itself runs: nothing to do with proxying here.
_PROCESS_MODEL = frozenset(
    {
        "loadmodule",
        "serverlimit",
        "maxrequestworkers",
        "maxclients",
        "threadsperchild",
        "startservers",
        "minsparethreads",
        "maxsparethreads",
        "minspareservers",
        "maxspareservers",
        "maxconnectionsperchild",
        "maxrequestsperchild",
        "threadlimit",
        "user",
        "group",
        "pidfile",
        "mutex",
        "serveradmin",
        "errorlog",
        "servername_is_global_placeholder",
    }
)

# What a DocumentRoot-like line asks of a web server this is not.
_FILE_SERVING = frozenset(
    {"documentroot", "alias", "scriptalias", "directory", "directorymatch", "files"}
)

_LBMETHODS = {
    "byrequests": "byrequests",
    "bytraffic": "bytraffic",
    "bybusyness": "bybusyness",
    "heartbeat": None,
}

_HEALTH_METHODS = {"GET", "HEAD", "OPTIONS", "TCP", "CPING"}


@dataclass(frozen=True)
class Message:
    """A notice or an error about one line of the Apache file."""

    file: str
    line: int
    directive: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.directive}: {self.text}"


@dataclass
class Imported:
    """
    The converted document: its tables (TOML-ready values), the Apache
    line each table came from (by table, for the comment above it), and
    what was said about the file.
    """

    proxy: dict[str, Any] = field(default_factory=dict)
    listen: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    balancers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    """Each table's Apache origin ("file:line Directive args"), by id()."""
    notices: list[Message] = field(default_factory=list)
    errors: list[Message] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The configuration as a TOML document (a dict)."""
        doc: dict[str, Any] = {}
        if self.proxy:
            doc["proxy"] = self.proxy
        if self.listen:
            doc["listen"] = self.listen
        if self.routes:
            doc["route"] = self.routes
        if self.balancers:
            doc["balancer"] = self.balancers
        return doc


def _origin(d: Directive) -> str:
    words = " ".join([d.name, *d.args])
    return f"{d.where} {words}"


@dataclass
class _Host:
    """What one <VirtualHost> (or the main server) says so far."""

    names: list[str] = field(default_factory=list)
    preserveHost: bool | None = None
    routes: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, Directive] = field(default_factory=dict)
    seen: dict[str, Directive] = field(default_factory=dict)
    # The listener tables this host is served on, and its TLS and request
    # header directives.
    listeners: list[dict[str, Any]] = field(default_factory=list)
    tls: dict[str, Any] = field(default_factory=dict)
    tlsOn: Directive | None = None
    requestHeaders: dict[str, Any] = field(default_factory=dict)


class _Converter:
    def __init__(self, listen: str | None) -> None:
        self.out = Imported()
        self.defaultListen = listen
        self.ports: list[tuple[str, Directive]] = []
        self.declared: dict[str, Directive] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        # Server-wide: <Proxy *> access rules, a route cookie set by Header,
        # LogFormat nicknames.
        self.access: dict[str, list[str]] = {}
        self.accessAt: Directive | None = None
        self.insertCookie: tuple[str, Directive] | None = None
        self.formats: dict[str, str] = {
            "common": "common",
            "combined": "combined",
        }

    # -- messages --

    def notice(self, d: Directive, text: str) -> None:
        self.out.notices.append(Message(d.file, d.line, d.name, text))

    def error(self, d: Directive, text: str) -> None:
        self.out.errors.append(Message(d.file, d.line, d.name, text))

    def mark(self, table: dict[str, Any], d: Directive) -> dict[str, Any]:
        self.out.sources[id(table)] = _origin(d)
        return table

    # -- the walk --

    def server(self, directives: tuple[Directive, ...]) -> None:
        main = _Host()
        for d in directives:
            self.directive(d, main, inVirtualHost=False)
        self.finishHost(main)
        if not self.ports:
            self.addDefaultListen(directives)

    def directive(self, d: Directive, host: _Host, inVirtualHost: bool) -> None:
        key = d.key
        handler = getattr(self, "d_" + key.replace("-", "_"), None)
        if isinstance(d, Section):
            section = getattr(self, "s_" + key, None)
            if section is not None:
                section(d, host)
                return
            if key in _FILE_SERVING:
                self.error(d, "this is a proxy, not a web server: nothing serves files")
                return
            self.error(d, f"<{d.name}> sections cannot be expressed here")
            return
        if handler is not None:
            handler(d, host)
            return
        if key in _PROCESS_MODEL:
            self.notice(d, "how httpd runs its processes: no meaning here, skipped")
            return
        if key in _FILE_SERVING:
            self.error(d, "this is a proxy, not a web server: nothing serves files")
            return
        self.error(d, "cannot be expressed in twisted-proxy's configuration")

    def finishHost(self, host: _Host) -> None:
        handlers = {r["path"] for r in host.routes if "handler" in r}
        for path, d in host.excluded.items():
            if path in handlers:
                self.notice(d, f"{path} is not proxied: its handler route serves it")
            else:
                self.error(
                    d, "a path left unproxied with no handler: not supported yet"
                )
        if host.tlsOn is not None:
            self.terminateTLS(host)
        for route in host.routes:
            if host.names:
                route["host"] = host.names[0]
            if "to" in route:
                if host.preserveHost is not None:
                    route.setdefault("preserve_host", host.preserveHost)
                if host.requestHeaders:
                    route["request_headers"] = host.requestHeaders
            self.out.routes.append(route)

    def terminateTLS(self, host: _Host) -> None:
        d = host.tlsOn
        assert d is not None
        tls = host.tls
        missing = [k for k in ("certificate", "key") if k not in tls]
        if missing:
            self.error(
                d, "SSLEngine on needs SSLCertificateFile and SSLCertificateKeyFile"
            )
            return
        if not host.listeners:
            self.error(
                d, "SSLEngine on outside a <VirtualHost>: no listener to put it on"
            )
            return
        for listener in host.listeners:
            listener["tls"] = tls

    def addDefaultListen(self, directives: tuple[Directive, ...]) -> None:
        endpoint = self.defaultListen or "tcp:80"
        table = {"endpoint": endpoint}
        self.out.listen.append(table)
        first = directives[0] if directives else Directive("-", (), "-", 0)
        self.out.sources[id(table)] = (
            "no Listen or VirtualHost: Apache's default Listen 80"
            if self.defaultListen is None
            else "--listen"
        )
        if self.defaultListen is None:
            self.out.notices.append(
                Message(
                    first.file,
                    first.line,
                    "Listen",
                    "no Listen or VirtualHost: listening on port 80, Apache's "
                    "default (import --listen ENDPOINT chooses another)",
                )
            )

    # -- sections --

    def s_virtualhost(self, d: Section, outer: _Host) -> None:
        for address in d.args:
            hostPart, _, port = address.rpartition(":")
            if not port.isdigit():
                self.error(d, f"expected ADDRESS:PORT, got {address!r}")
                continue
            self.listenOn(hostPart, port, d)
        host = _Host(preserveHost=outer.preserveHost)
        for address in d.args:
            hostPart, _, port = address.rpartition(":")
            table = self.tables.get(_endpoint(hostPart, port))
            if table is not None:
                host.listeners.append(table)
        for child in d.children:
            self.directive(child, host, inVirtualHost=True)
        self.finishHost(host)

    def listenOn(self, address: str, port: str, d: Directive) -> None:
        endpoint = _endpoint(address, port)
        if endpoint in self.tables:
            return
        self.ports.append((endpoint, d))
        table = self.mark({"endpoint": endpoint}, d)
        self.tables[endpoint] = table
        self.out.listen.append(table)

    def s_proxy(self, d: Section, host: _Host) -> None:
        if d.args == ("*",):
            self.proxyAccess(d)
            return
        if len(d.args) != 1 or not d.args[0].lower().startswith("balancer://"):
            self.error(d, "only <Proxy *> and <Proxy balancer://NAME> can be expressed")
            return
        name = d.args[0][len("balancer://") :].strip("/")
        balancer = self.balancer(name, d)
        self.declared.setdefault(name, d)
        for child in d.children:
            if child.key == "balancermember":
                self.member(child, balancer, name)
            elif child.key == "proxyset":
                self.proxySet(child, balancer)
            else:
                self.error(child, "not expressible inside <Proxy balancer://>")

    def s_location(self, d: Section, host: _Host) -> None:
        if len(d.args) != 1:
            self.error(d, "<Location> takes one path")
            return
        path = d.args[0]
        handler: str | None = None
        allow: list[str] | None = None
        for child in d.children:
            if child.key == "sethandler" and len(child.args) == 1:
                handler = {
                    "balancer-manager": "balancer-manager",
                    "server-status": "status",
                    "server-info": "info",
                }.get(child.args[0].lower())
                if handler is None:
                    self.error(child, f"no handler {child.args[0]!r} here")
            elif child.key == "require":
                allow = self.require(child)
            elif child.key == "setoutputfilter" and [a.upper() for a in child.args] == [
                "DEFLATE"
            ]:
                if path != "/":
                    self.error(child, "compression is for the whole server here")
                else:
                    self.compress(child)
            else:
                self.error(child, "not expressible inside <Location>")
        if handler is not None:
            route: dict[str, Any] = {"path": path, "handler": handler}
            if allow is not None:
                route["allow"] = allow
            host.routes.append(self.mark(route, d))

    def proxyAccess(self, d: Section) -> None:
        """
        <Proxy *>: who may use any proxied route. Apache 2.2's Order, Deny
        and Allow are read as the guide means them.
        """
        self.accessAt = d
        order: str | None = None
        allows: list[str] = []
        denies: list[str] = []
        for child in d.children:
            args = [a.lower() for a in child.args]
            if child.key == "order" and len(args) == 1:
                order = args[0].replace(" ", "")
            elif child.key in ("allow", "deny") and args[:1] == ["from"]:
                (allows if child.key == "allow" else denies).extend(child.args[1:])
            elif child.key == "require":
                allowed = self.require(child)
                if allowed is not None:
                    self.access["allow"] = allowed
            else:
                self.error(child, "not expressible inside <Proxy *>")
        if order is None and not allows and not denies:
            return
        if order == "deny,allow" and [x.lower() for x in denies] == ["all"]:
            self.access["allow"] = allows
            self.notice(
                d, "Order deny,allow with Deny from all: only Allow from is let in"
            )
        elif order == "allow,deny" and [x.lower() for x in allows] == ["all"]:
            self.access["deny"] = denies
            self.notice(
                d, "Order allow,deny with Allow from all: Deny from is kept out"
            )
        else:
            self.error(d, "only Deny from all with Allow from, or the reverse")

    def require(self, d: Directive) -> list[str] | None:
        args = [a.lower() for a in d.args]
        if args == ["local"]:
            return ["127.0.0.0/8", "::1/128"]
        if args == ["all", "granted"]:
            return ["0.0.0.0/0", "::/0"]
        if args == ["all", "denied"]:
            return []
        if args and args[0] == "ip":
            return list(d.args[1:])
        self.error(d, "only Require local, ip, all granted or all denied")
        return None

    def compress(self, d: Directive) -> None:
        self.out.proxy["compress"] = [
            "text/html",
            "text/plain",
            "text/css",
            "text/xml",
            "application/javascript",
            "application/json",
            "application/xml",
        ]
        self.notice(d, "DEFLATE: the common text types are compressed")

    # -- balancers --

    def balancer(self, name: str, d: Directive) -> dict[str, Any]:
        table = self.out.balancers.get(name)
        if table is None:
            # Apache's: a member in error is tried again after 60 s.
            table = self.mark({"retry": 60.0, "member": []}, d)
            self.out.balancers[name] = table
        return table

    def member(self, d: Directive, balancer: dict[str, Any], name: str) -> None:
        if not d.args:
            self.error(d, "BalancerMember needs a URL")
            return
        url = d.args[0]
        if url.lower().startswith("balancer://"):
            # BalancerMember balancer://NAME URL, outside <Proxy>.
            self.error(d, "give members inside <Proxy balancer://NAME>")
            return
        member: dict[str, Any] = {"url": url.rstrip("/")}
        for param in d.args[1:]:
            key, eq, value = param.partition("=")
            key = key.lower()
            if not eq:
                self.error(d, f"expected key=value, got {param!r}")
            elif key == "route":
                member["route"] = value
            elif key in ("loadfactor", "lbfactor"):
                member["weight"] = int(value) if value.isdigit() else 1
            elif key == "lbset":
                member["tier"] = int(value) if value.isdigit() else 0
            elif key == "status":
                self.status(d, value, member)
            elif key == "retry":
                balancer["retry"] = _seconds(value)
            elif key == "secret" and url.lower().startswith("ajp://"):
                member["secret"] = value
            elif key in ("hcmethod", "hcuri", "hcinterval", "hcpasses", "hcfails"):
                self.health(d, key, value, balancer)
            else:
                self.error(d, f"{key}= cannot be expressed on a member here")
        balancer["member"].append(self.mark(member, d))

    def status(self, d: Directive, value: str, member: dict[str, Any]) -> None:
        flags = {"H": "standby", "D": "disabled", "N": "drain", "I": "ignore_errors"}
        sign = "+"
        for char in value:
            if char in "+-":
                sign = char
            elif char.upper() in flags:
                member[flags[char.upper()]] = sign == "+"
            elif char.upper() == "E":
                self.notice(d, "status=+E (in error at start): starts in service here")
            else:
                self.error(d, f"status flag {char!r} cannot be expressed")

    def proxySet(self, d: Directive, balancer: dict[str, Any]) -> None:
        for param in d.args:
            key, eq, value = param.partition("=")
            key = key.lower()
            if not eq:
                self.error(d, f"expected key=value, got {param!r}")
            elif key == "lbmethod":
                method = _LBMETHODS.get(value.lower())
                if method is None:
                    self.error(d, f"lbmethod={value} cannot be expressed")
                else:
                    balancer["method"] = method
            elif key == "stickysession":
                balancer["sticky"] = {"name": value.split("|")[0]}
            elif key == "nofailover":
                sticky = balancer.setdefault("sticky", {})
                sticky["failover"] = value.lower() != "on"
            elif key == "maxattempts":
                balancer["max_attempts"] = int(value) if value.isdigit() else 1
            elif key == "failonstatus":
                balancer["fail_on_status"] = [
                    int(v) for v in value.split(",") if v.strip().isdigit()
                ]
            elif key in ("hcmethod", "hcuri", "hcinterval", "hcpasses", "hcfails"):
                self.notice(
                    d,
                    f"{key} belongs on BalancerMember (Apache refuses it on "
                    "ProxySet): taken as the balancer's health check",
                )
                self.health(d, key, value, balancer)
            elif key == "timeout":
                self.error(d, "a balancer's own timeout cannot be expressed yet")
            else:
                self.error(d, f"{key}= cannot be expressed on a balancer here")

    def health(
        self, d: Directive, key: str, value: str, balancer: dict[str, Any]
    ) -> None:
        # mod_proxy_hcheck's defaults: one pass or one failure decides.
        health = balancer.setdefault("health", {"passes": 1, "fails": 1})
        if key == "hcmethod":
            if value.upper() not in _HEALTH_METHODS:
                self.error(d, f"hcmethod={value} cannot be expressed")
            else:
                health["method"] = value.upper()
        elif key == "hcuri":
            health["uri"] = value
        elif key == "hcinterval":
            health["interval"] = _seconds(value)
        elif key == "hcpasses":
            health["passes"] = int(value) if value.isdigit() else 1
        elif key == "hcfails":
            health["fails"] = int(value) if value.isdigit() else 1

    # -- directives --

    def d_listen(self, d: Directive, host: _Host) -> None:
        if not d.args:
            self.error(d, "Listen needs a port")
            return
        address, _, port = d.args[0].rpartition(":")
        if not port.isdigit():
            self.error(d, f"expected [ADDRESS:]PORT, got {d.args[0]!r}")
            return
        self.listenOn(address, port, d)
        if len(d.args) > 1:
            self.notice(d, f"protocol {d.args[1]}: the listener's TLS table says it")

    def d_servername(self, d: Directive, host: _Host) -> None:
        if len(d.args) != 1:
            self.error(d, "ServerName takes one name")
            return
        host.names.insert(0, d.args[0].split(":")[0])

    def d_serveralias(self, d: Directive, host: _Host) -> None:
        self.error(d, "a route serves one host name here: not supported yet")

    def d_proxypreservehost(self, d: Directive, host: _Host) -> None:
        host.preserveHost = _onOff(self, d)

    def d_proxyrequests(self, d: Directive, host: _Host) -> None:
        if _onOff(self, d):
            self.error(d, "a forward proxy is [listen.connect] here, not this")
        else:
            self.notice(d, "Off: this proxy is never a forward proxy for HTTP")

    def d_proxyvia(self, d: Directive, host: _Host) -> None:
        value = (d.args or ("",))[0].lower()
        if value not in ("on", "off", "full", "block"):
            self.error(d, "ProxyVia takes On, Off, Full or Block")
            return
        self.out.proxy["via"] = value

    def d_proxytimeout(self, d: Directive, host: _Host) -> None:
        if len(d.args) != 1:
            self.error(d, "ProxyTimeout takes seconds")
            return
        self.out.proxy["timeout"] = _seconds(d.args[0])
        # Apache's connect timeout is the timeout unless set.
        self.out.proxy.setdefault("connect_timeout", _seconds(d.args[0]))

    def d_servertokens(self, d: Directive, host: _Host) -> None:
        value = (d.args or ("",))[0].lower()
        tokens = {"prod": "prod", "productonly": "prod", "full": "full"}.get(value)
        if tokens is None:
            self.notice(d, f"ServerTokens {d.args[0]}: sent as Prod")
            tokens = "prod"
        self.out.proxy["server_tokens"] = tokens

    def d_serversignature(self, d: Directive, host: _Host) -> None:
        self.notice(d, "the proxy's own pages never carry a signature")

    def d_proxypass(self, d: Directive, host: _Host) -> None:
        if len(d.args) < 2:
            self.error(d, "ProxyPass takes a path and a URL (or !)")
            return
        path, url, *params = d.args
        earlier = host.seen.get(path)
        if earlier is not None:
            self.error(
                d,
                f"a second ProxyPass for {path} ({earlier.where} has it; Apache "
                "ignores this one silently)",
            )
            return
        host.seen[path] = d
        if url == "!":
            host.excluded[path] = d
            return
        route: dict[str, Any] = {"path": path, "to": url}
        for param in params:
            key, eq, value = param.partition("=")
            key = key.lower()
            if not eq:
                self.error(d, f"expected key=value, got {param!r}")
            elif key == "timeout":
                route["timeout"] = _seconds(value)
            elif key in ("connectiontimeout",):
                self.out.proxy["connect_timeout"] = _seconds(value)
                self.notice(d, "connectiontimeout applies to every backend here")
            elif key == "ttl":
                self.out.proxy["pool_ttl"] = _seconds(value)
            elif key == "keepalive":
                self.notice(d, "keepalive: TCP keep-alive probes are the system's")
            elif key == "max":
                self.out.proxy["pool_size"] = int(value) if value.isdigit() else 64
            elif key == "retry":
                self.notice(d, "retry on a single backend: it is always tried")
            elif key == "flushpackets":
                self.notice(d, "flushpackets: every backend read is sent on at once")
            elif key == "secret" and url.lower().startswith("ajp://"):
                route["secret"] = value
            else:
                self.error(d, f"{key}= cannot be expressed on a route here")
        host.routes.append(self.mark(route, d))

    def d_proxypassreverse(self, d: Directive, host: _Host) -> None:
        if len(d.args) != 2:
            self.error(d, "ProxyPassReverse takes a path and a URL")
            return
        path, url = d.args
        for route in host.routes:
            if route.get("path") == path and "to" in route:
                if route["to"].rstrip("/") == url.rstrip("/"):
                    return
                if url.lower().startswith(("http://", "https://")):
                    route.setdefault("reverse", []).append(url)
                    return
        self.notice(d, "no ProxyPass for this path: nothing to rewrite")

    def d_proxypassreversecookiedomain(self, d: Directive, host: _Host) -> None:
        self.cookieRewrite(d, host, "cookie_domain")

    def d_proxypassreversecookiepath(self, d: Directive, host: _Host) -> None:
        self.cookieRewrite(d, host, "cookie_path")

    def cookieRewrite(self, d: Directive, host: _Host, key: str) -> None:
        if len(d.args) != 2:
            self.error(d, "takes the backend's value and the public one")
            return
        proxied = [route for route in host.routes if "to" in route]
        if not proxied:
            self.error(d, "no ProxyPass before it in this host to rewrite for")
            return
        for route in proxied:
            route.setdefault(key, {})[d.args[0]] = d.args[1]

    def d_proxyaddheaders(self, d: Directive, host: _Host) -> None:
        self.out.proxy["forwarded_headers"] = _onOff(self, d)

    def d_addoutputfilterbytype(self, d: Directive, host: _Host) -> None:
        if len(d.args) < 2 or d.args[0].upper() != "DEFLATE":
            self.error(d, "only AddOutputFilterByType DEFLATE TYPE...")
            return
        types = self.out.proxy.setdefault("compress", [])
        types.extend(t for t in d.args[1:] if t not in types)

    def d_header(self, d: Directive, host: _Host) -> None:
        args = [a.lower() for a in d.args]
        if args[:2] in (["add", "set-cookie"], ["always", "add"]) and len(d.args) >= 3:
            value = d.args[-1]
            cookie = re.match(
                r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)=\.%\{BALANCER_WORKER_ROUTE\}e", value
            )
            if cookie is not None:
                self.insertCookie = (cookie.group(1), d)
                return
        self.headers(d, self.out.proxy.setdefault("response_headers", {}))

    def d_requestheader(self, d: Directive, host: _Host) -> None:
        self.headers(d, host.requestHeaders)

    def d_sslengine(self, d: Directive, host: _Host) -> None:
        if _onOff(self, d):
            host.tlsOn = d

    def d_sslcertificatefile(self, d: Directive, host: _Host) -> None:
        if len(d.args) == 1:
            host.tls["certificate"] = d.args[0]
        else:
            self.error(d, "takes one file")

    def d_sslcertificatekeyfile(self, d: Directive, host: _Host) -> None:
        if len(d.args) == 1:
            host.tls["key"] = d.args[0]
        else:
            self.error(d, "takes one file")

    def d_sslprotocol(self, d: Directive, host: _Host) -> None:
        enabled = _protocols(d.args)
        if enabled is None:
            self.error(d, "only +/- and all, TLSv1.2 and TLSv1.3 are read here")
        elif min(enabled, default="1.3") < "1.2":
            self.error(d, "TLS older than 1.2 cannot be offered here")
        elif enabled:
            host.tls["min_version"] = min(enabled)

    def d_sslciphersuite(self, d: Directive, host: _Host) -> None:
        if len(d.args) == 1:
            host.tls["ciphers"] = d.args[0]
        else:
            self.error(d, "takes one cipher string (TLS 1.2)")

    def d_logformat(self, d: Directive, host: _Host) -> None:
        if len(d.args) == 2:
            self.formats[d.args[1]] = d.args[0]
        elif len(d.args) == 1:
            self.out.proxy["access_log_format"] = d.args[0]
        else:
            self.error(d, "LogFormat takes a format and a nickname")

    def d_customlog(self, d: Directive, host: _Host) -> None:
        if len(d.args) != 2:
            self.error(d, "CustomLog takes a file and a format or nickname")
            return
        where, form = d.args
        if where.startswith("|"):
            self.error(d, "piped logs cannot be expressed: log to a file or to -")
            return
        if "access_log" in self.out.proxy:
            self.error(d, "one access log here: a second CustomLog cannot be kept")
            return
        self.out.proxy["access_log"] = where
        self.out.proxy["access_log_format"] = self.formats.get(form, form)

    def headers(self, d: Directive, directives: dict[str, Any]) -> None:
        """Header or RequestHeader set/unset, into a header-directive table."""
        args = list(d.args)
        if args and args[0].lower() == "always":
            args = args[1:]
        if len(args) == 2 and args[0].lower() == "unset":
            directives.setdefault("unset", []).append(args[1])
        elif len(args) == 3 and args[0].lower() == "set" and "%{" not in args[2]:
            directives.setdefault("set", {})[args[1]] = args[2]
        else:
            self.error(d, "only set and unset of plain values so far")

    def finish(self) -> None:
        """What applies across the file: <Proxy *> rules, the route cookie."""
        proxied = [route for route in self.out.routes if "to" in route]
        for route in proxied:
            for key, nets in self.access.items():
                route.setdefault(key, nets)
        if self.access and not proxied and self.accessAt is not None:
            self.notice(self.accessAt, "no ProxyPass here for these rules to guard")
        if self.insertCookie is not None:
            name, d = self.insertCookie
            matched = [
                b
                for b in self.out.balancers.values()
                if b.get("sticky", {}).get("name") == name
            ]
            if not matched:
                self.error(d, f"no balancer has stickysession={name} for this cookie")
            for balancer in matched:
                balancer["sticky"]["insert"] = True
            if matched:
                self.notice(d, f"the balancer hands out {name}=.ROUTE itself (insert)")

    def d_loglevel(self, d: Directive, host: _Host) -> None:
        if any(re.fullmatch(r"proxy[a-z_]*:trace[1-8]", a) for a in d.args):
            self.out.proxy["log_level"] = "debug"
        else:
            self.notice(d, "only proxy:traceN changes the proxy's logging")


def _protocols(args: tuple[str, ...]) -> set[str] | None:
    """SSLProtocol's words: the TLS versions left on ("1.2", "1.3")."""
    versions = {"tlsv1": "1.0", "tlsv1.1": "1.1", "tlsv1.2": "1.2", "tlsv1.3": "1.3"}
    on: set[str] = set()
    for word in args:
        sign, name = (word[0], word[1:]) if word[:1] in "+-" else ("+", word)
        name = name.lower()
        if name == "all":
            chosen = {"1.2", "1.3"}
        elif name == "sslv3":
            chosen = set() if sign == "-" else {"0.3"}
        elif name in versions:
            chosen = {versions[name]}
        else:
            return None
        on = on | chosen if sign == "+" else on - chosen
    return on


def _endpoint(address: str, port: str) -> str:
    """A Twisted endpoint for an Apache ADDRESS:PORT."""
    if address in ("", "*", "_default_", "0.0.0.0"):
        return f"tcp:{port}"
    if ":" in address.strip("[]"):
        return f"tcp6:{port}:interface={address.strip('[]')}"
    return f"tcp:{port}:interface={address}"


def _onOff(converter: _Converter, d: Directive) -> bool:
    value = (d.args or ("",))[0].lower()
    if value not in ("on", "off"):
        converter.error(d, "expected On or Off")
    return value == "on"


def _seconds(value: str) -> float:
    number = re.fullmatch(r"(\d+(?:\.\d+)?)(ms)?", value.strip())
    if number is None:
        return 0.0
    seconds = float(number.group(1))
    return seconds / 1000 if number.group(2) else seconds


def convert(directives: tuple[Directive, ...], listen: str | None = None) -> Imported:
    """
    The configuration C{directives} say, with notices and errors.
    C{listen}: the endpoint when the file has no Listen or VirtualHost
    (None: Apache's port 80, with a notice).
    """
    converter = _Converter(listen)
    converter.server(directives)
    out = converter.out
    used = {
        route["to"][len("balancer://") :].strip("/")
        for route in out.routes
        if str(route.get("to", "")).lower().startswith("balancer://")
    }
    for name, d in converter.declared.items():
        if name not in used:
            converter.notice(d, f"balancer://{name} is used by no ProxyPass")
    converter.finish()
    return out

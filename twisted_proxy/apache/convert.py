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

from typing import Any

from twisted_proxy.apache.balancers import BalancerLines
from twisted_proxy.apache.lines import Host, Imported, Message, onOff, seconds
from twisted_proxy.apache.parse import Directive, Section
from twisted_proxy.apache.serverlines import ServerLines

__all__ = ["convert"]

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
    }
)

# What a DocumentRoot-like line asks of a web server this is not.
_FILE_SERVING = frozenset(
    {"documentroot", "alias", "scriptalias", "directory", "directorymatch", "files"}
)


class _Converter(BalancerLines, ServerLines):
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

    # -- the walk --

    def server(self, directives: tuple[Directive, ...]) -> None:
        main = Host()
        for d in directives:
            self.directive(d, main)
        self.finishHost(main)
        if not self.ports:
            self.addDefaultListen(directives)

    def directive(self, d: Directive, host: Host) -> None:
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

    def finishHost(self, host: Host) -> None:
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

    def s_virtualhost(self, d: Section, outer: Host) -> None:
        for address in d.args:
            hostPart, _, port = address.rpartition(":")
            if not port.isdigit():
                self.error(d, f"expected ADDRESS:PORT, got {address!r}")
                continue
            self.listenOn(hostPart, port, d)
        host = Host(preserveHost=outer.preserveHost)
        for address in d.args:
            hostPart, _, port = address.rpartition(":")
            table = self.tables.get(_endpoint(hostPart, port))
            if table is not None:
                host.listeners.append(table)
        for child in d.children:
            self.directive(child, host)
        self.finishHost(host)

    def listenOn(self, address: str, port: str, d: Directive) -> None:
        endpoint = _endpoint(address, port)
        if endpoint in self.tables:
            return
        self.ports.append((endpoint, d))
        table = self.mark({"endpoint": endpoint}, d)
        self.tables[endpoint] = table
        self.out.listen.append(table)

    def s_proxy(self, d: Section, host: Host) -> None:
        if d.args == ("*",):
            self.proxyAccess(d)
            return
        if len(d.args) != 1 or not d.args[0].lower().startswith("balancer://"):
            self.error(d, "only <Proxy *> and <Proxy balancer://NAME> can be expressed")
            return
        self.balancerSection(d)

    def s_location(self, d: Section, host: Host) -> None:
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

    def d_listen(self, d: Directive, host: Host) -> None:
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

    def d_servername(self, d: Directive, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "ServerName takes one name")
            return
        host.names.insert(0, d.args[0].split(":")[0])

    def d_serveralias(self, d: Directive, host: Host) -> None:
        self.error(d, "a route serves one host name here: not supported yet")

    def d_proxypreservehost(self, d: Directive, host: Host) -> None:
        host.preserveHost = onOff(self, d)

    def d_proxyrequests(self, d: Directive, host: Host) -> None:
        if onOff(self, d):
            self.error(d, "a forward proxy is [listen.connect] here, not this")
        else:
            self.notice(d, "Off: this proxy is never a forward proxy for HTTP")

    def d_proxyvia(self, d: Directive, host: Host) -> None:
        value = (d.args or ("",))[0].lower()
        if value not in ("on", "off", "full", "block"):
            self.error(d, "ProxyVia takes On, Off, Full or Block")
            return
        self.out.proxy["via"] = value

    def d_proxytimeout(self, d: Directive, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "ProxyTimeout takes seconds")
            return
        self.out.proxy["timeout"] = seconds(d.args[0])
        # Apache's connect timeout is the timeout unless set.
        self.out.proxy.setdefault("connect_timeout", seconds(d.args[0]))

    def d_proxypass(self, d: Directive, host: Host) -> None:
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
                route["timeout"] = seconds(value)
            elif key in ("connectiontimeout",):
                self.out.proxy["connect_timeout"] = seconds(value)
                self.notice(d, "connectiontimeout applies to every backend here")
            elif key == "ttl":
                self.out.proxy["pool_ttl"] = seconds(value)
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

    def d_proxypassreverse(self, d: Directive, host: Host) -> None:
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

    def d_proxypassreversecookiedomain(self, d: Directive, host: Host) -> None:
        self.cookieRewrite(d, host, "cookie_domain")

    def d_proxypassreversecookiepath(self, d: Directive, host: Host) -> None:
        self.cookieRewrite(d, host, "cookie_path")

    def cookieRewrite(self, d: Directive, host: Host, key: str) -> None:
        if len(d.args) != 2:
            self.error(d, "takes the backend's value and the public one")
            return
        proxied = [route for route in host.routes if "to" in route]
        if not proxied:
            self.error(d, "no ProxyPass before it in this host to rewrite for")
            return
        for route in proxied:
            route.setdefault(key, {})[d.args[0]] = d.args[1]

    def d_proxyaddheaders(self, d: Directive, host: Host) -> None:
        self.out.proxy["forwarded_headers"] = onOff(self, d)

    def d_addoutputfilterbytype(self, d: Directive, host: Host) -> None:
        if len(d.args) < 2 or d.args[0].upper() != "DEFLATE":
            self.error(d, "only AddOutputFilterByType DEFLATE TYPE...")
            return
        types = self.out.proxy.setdefault("compress", [])
        types.extend(t for t in d.args[1:] if t not in types)


def _endpoint(address: str, port: str) -> str:
    """A Twisted endpoint for an Apache ADDRESS:PORT."""
    if address in ("", "*", "_default_", "0.0.0.0"):
        return f"tcp:{port}"
    if ":" in address.strip("[]"):
        return f"tcp6:{port}:interface={address.strip('[]')}"
    return f"tcp:{port}:interface={address}"


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

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
from twisted_proxy.apache.lines import Host, Imported, Message, mergedHeaders, onOff
from twisted_proxy.apache.parse import Directive, Section
from twisted_proxy.apache.proxylines import ProxyLines
from twisted_proxy.apache.skipped import FILE_SERVING, NO_MEANING

__all__ = ["convert"]


class _Converter(ProxyLines, BalancerLines):
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
        self.serverTimeout: float | None = None
        self.formatLines: list[tuple[str, Directive]] = []
        self.usedFormats: set[str] = set()
        self.inlineLog: Directive | None = None
        self.healthExpressions: dict[str, tuple[str, Directive]] = {}
        self.memberTimeouts: dict[tuple[str, str], list[tuple[float, Directive]]] = {}
        self.traceOn: Directive | None = None
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
        if key in NO_MEANING:
            self.notice(d, NO_MEANING[key])
            return
        undefined = [arg for arg in d.args if "${" in arg]
        if undefined:
            self.error(
                d,
                f"{undefined[0]} holds a variable that is not defined: Define it,"
                " or export it as httpd's envvars file does",
            )
            return
        if isinstance(d, Section):
            section = getattr(self, "s_" + key, None)
            if section is not None:
                section(d, host)
                return
            if key in ("ifmodule", "ifdefine"):
                # Only the conditions that do not hold are left in the tree.
                self.notice(d, _skippedBlock(d))
                return
            if key in FILE_SERVING:
                self.error(d, "this is a proxy, not a web server: nothing serves files")
                return
            self.error(d, f"<{d.name}> sections cannot be expressed here")
            return
        if handler is not None:
            self.reading(d, lambda: handler(d, host))
            return
        if key in FILE_SERVING:
            self.error(d, "this is a proxy, not a web server: nothing serves files")
            return
        if key.startswith("jk"):
            self.error(d, "mod_jk: write ProxyPass PATH ajp://HOST:8009/PATH instead")
            return
        self.error(d, "cannot be expressed in twisted-proxy's configuration")

    def finishHost(self, host: Host) -> None:
        handlers = {r["path"] for r in host.routes if "handler" in r}
        for path, d in host.excluded.items():
            if path in handlers:
                self.notice(d, f"{path} is not proxied: its handler route serves it")
            else:
                host.routes.append(self.mark({"path": path, "exclude": True}, d))
        if host.tlsOn is not None:
            self.terminateTLS(host)
        self.locationRequestHeaders(host)
        for route in host.routes:
            if host.names:
                route["host"] = host.names[0]
                if host.names[1:]:
                    route["aliases"] = host.names[1:]
            if "to" in route:
                if host.preserveHost is not None:
                    route.setdefault("preserve_host", host.preserveHost)
                if host.requestHeaders:
                    route["request_headers"] = mergedHeaders(
                        host.requestHeaders, route.get("request_headers", {})
                    )
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
        # What the main server says of TLS and request headers holds in
        # each virtual host, as in httpd.
        host = Host(
            preserveHost=outer.preserveHost,
            tls=dict(outer.tls),
            requestHeaders=mergedHeaders(outer.requestHeaders),
        )
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
        if not d.args:
            self.error(d, "ServerAlias takes host names")
        if not host.names:
            self.notice(d, "no ServerName before it: the first alias names the host")
        host.names.extend(name.split(":")[0] for name in d.args)

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

    def d_proxyaddheaders(self, d: Directive, host: Host) -> None:
        self.out.proxy["forwarded_headers"] = onOff(self, d)

    def d_addoutputfilterbytype(self, d: Directive, host: Host) -> None:
        if len(d.args) < 2 or d.args[0].upper() != "DEFLATE":
            self.error(d, "only AddOutputFilterByType DEFLATE TYPE...")
            return
        types = self.out.proxy.setdefault("compress", [])
        types.extend(t for t in d.args[1:] if t not in types)


def _skippedBlock(d: Directive) -> str:
    """Why the lines of an <IfModule> or <IfDefine> were skipped."""
    name = d.args[0] if d.args else ""
    if d.key == "ifdefine":
        if name.startswith("!"):
            return f"{name[1:]} is defined: the lines inside are skipped"
        return f"{name} is not defined: the lines inside are skipped"
    if name.startswith("!"):
        return f"{name[1:]} is a module understood here: the lines inside are skipped"
    return (
        f"{name} is not a module understood here: the lines inside are skipped,"
        " as in an httpd without it"
    )


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
        route["to"][len("balancer://") :].split("/")[0]
        for route in out.routes
        if str(route.get("to", "")).lower().startswith("balancer://")
    }
    for name, d in converter.declared.items():
        if name not in used:
            converter.notice(d, f"balancer://{name} is used by no ProxyPass")
    converter.finish()
    converter.memberTimeoutsOntoRoutes()
    converter.timeouts()
    return out

"""
Apache's server-wide lines: TLS (C{SSL*}) onto a virtual host's
listeners, header directives, access rules (C{<Proxy *>}, C{Require},
Apache 2.2's C{Order}/C{Deny}/C{Allow}), logging, compression and the
server's tokens.
"""

from __future__ import annotations

import re
from typing import Any

from twisted_proxy.apache.lines import Host, Lines, onOff
from twisted_proxy.apache.parse import Directive, Section

__all__ = ["ServerLines"]


class ServerLines(Lines):
    """The server-wide directives."""

    def terminateTLS(self, host: Host) -> None:
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

    def d_servertokens(self, d: Directive, host: Host) -> None:
        value = (d.args or ("",))[0].lower()
        tokens = {"prod": "prod", "productonly": "prod", "full": "full"}.get(value)
        if tokens is None:
            self.notice(d, f"ServerTokens {d.args[0]}: sent as Prod")
            tokens = "prod"
        self.out.proxy["server_tokens"] = tokens

    def d_serversignature(self, d: Directive, host: Host) -> None:
        self.notice(d, "the proxy's own pages never carry a signature")

    def d_header(self, d: Directive, host: Host) -> None:
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

    def d_requestheader(self, d: Directive, host: Host) -> None:
        self.headers(d, host.requestHeaders)

    def d_sslengine(self, d: Directive, host: Host) -> None:
        if onOff(self, d):
            host.tlsOn = d

    def d_sslcertificatefile(self, d: Directive, host: Host) -> None:
        if len(d.args) == 1:
            host.tls["certificate"] = d.args[0]
        else:
            self.error(d, "takes one file")

    def d_sslcertificatekeyfile(self, d: Directive, host: Host) -> None:
        if len(d.args) == 1:
            host.tls["key"] = d.args[0]
        else:
            self.error(d, "takes one file")

    def d_sslprotocol(self, d: Directive, host: Host) -> None:
        enabled = _protocols(d.args)
        if enabled is None:
            self.error(d, "only +/- and all, TLSv1.2 and TLSv1.3 are read here")
        elif min(enabled, default="1.3") < "1.2":
            self.error(d, "TLS older than 1.2 cannot be offered here")
        elif enabled:
            host.tls["min_version"] = min(enabled)

    def d_sslciphersuite(self, d: Directive, host: Host) -> None:
        if len(d.args) == 1:
            host.tls["ciphers"] = d.args[0]
        else:
            self.error(d, "takes one cipher string (TLS 1.2)")

    def d_logformat(self, d: Directive, host: Host) -> None:
        if len(d.args) == 2:
            self.formats[d.args[1]] = d.args[0]
        elif len(d.args) == 1:
            self.out.proxy["access_log_format"] = d.args[0]
        else:
            self.error(d, "LogFormat takes a format and a nickname")

    def d_customlog(self, d: Directive, host: Host) -> None:
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

    def d_loglevel(self, d: Directive, host: Host) -> None:
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

"""
Apache's server-wide lines: TLS (C{SSL*}) onto a virtual host's
listeners, header directives, access rules (C{<Proxy *>}, C{Require},
Apache 2.2's C{Order}/C{Deny}/C{Allow}), logging, compression and the
server's tokens.
"""

from __future__ import annotations

import re
from typing import Any

from twisted_proxy.apache.lines import Host, Lines, onOff, seconds
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

    def d_sslcertificatechainfile(self, d: Directive, host: Host) -> None:
        if len(d.args) == 1:
            host.tls["chain"] = d.args[0]
        else:
            self.error(d, "takes one file")

    def d_sslprotocol(self, d: Directive, host: Host) -> None:
        enabled = _protocols(d.args)
        if enabled is None:
            self.error(d, "only +/- with all, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 here")
            return
        if "0.3" in enabled:
            self.error(d, "SSLv3 cannot be offered here")
            return
        if not enabled:
            self.error(d, "leaves no TLS version on")
            return
        lowest = min(enabled)
        if set(enabled) != {v for v in ("1.0", "1.1", "1.2", "1.3") if v >= lowest}:
            self.error(d, "only a lowest version and everything above it here")
            return
        host.tls["min_version"] = lowest
        if lowest < "1.2":
            self.notice(
                d,
                f"TLS {lowest} is weaker than the default 1.2: offered as asked,"
                " with a warning when the proxy starts",
            )
        elif any(w.lower().lstrip("+-") == "all" for w in d.args):
            self.notice(
                d,
                "all: TLS 1.2 and 1.3 here, as OpenSSL builds offer today (name"
                " +TLSv1 or +TLSv1.1 to offer those too)",
            )

    def d_sslciphersuite(self, d: Directive, host: Host) -> None:
        if len(d.args) == 1:
            host.tls["ciphers"] = d.args[0]
        else:
            self.error(d, "takes one cipher string (TLS 1.2)")

    def d_logformat(self, d: Directive, host: Host) -> None:
        if len(d.args) == 2:
            self.formats[d.args[1]] = d.args[0]
            self.formatLines.append((d.args[1], d))
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
        form = self.formats.get(form, form)
        self.usedFormats.add(d.args[1])
        kept = (
            self.out.proxy.get("access_log"),
            self.out.proxy.get("access_log_format"),
        )
        if kept == (where, form):
            self.notice(d, "the same log as an earlier CustomLog: one log here")
            return
        if "access_log" in self.out.proxy:
            self.error(d, "one access log here: a second CustomLog cannot be kept")
            return
        self.out.proxy["access_log"] = where
        self.out.proxy["access_log_format"] = form
        if d.args[1] not in self.formats:
            self.inlineLog = d

    def headers(self, d: Directive, directives: dict[str, Any]) -> None:
        """Header or RequestHeader lines, into a header-directive table."""
        args = list(d.args)
        if args and args[0].lower() in ("always", "onsuccess"):
            args = args[1:]
        action = args[0].lower() if args else ""
        values = args[2:]
        if any("%{" in v for v in values):
            self.error(d, "values made of %{...} variables cannot be expressed")
        elif action == "unset" and len(args) == 2:
            directives.setdefault("unset", []).append(args[1])
        elif action == "set" and len(args) == 3:
            directives.setdefault("set", {})[args[1]] = args[2]
        elif action in ("add", "append") and len(args) == 3:
            directives.setdefault(action, []).append([args[1], args[2]])
        elif action in ("edit", "edit*") and len(args) == 4:
            kind = "edit" if action == "edit" else "edit_all"
            directives.setdefault(kind, []).append(args[1:])
        elif len(args) > 3 and action in ("set", "add", "append", "unset"):
            self.error(d, f"a condition ({args[-1]}) cannot be expressed")
        else:
            self.error(d, "only set, add, append, unset, edit and edit* here")

    def unusedFormat(self, name: str, d: Directive) -> None:
        """
        A LogFormat nickname no CustomLog names. When it logs every field of
        the one CustomLog's own format and more, the file means it for that
        log (the guide defines one to log the backend, then never names it).
        """
        inline = self.out.proxy.get("access_log_format")
        nicknamed = self.formats[name]
        if (
            self.inlineLog is not None
            and isinstance(inline, str)
            and _fields(inline) < _fields(nicknamed)
        ):
            self.out.proxy["access_log_format"] = nicknamed
            extra = " ".join(sorted(_fields(nicknamed) - _fields(inline)))
            self.notice(
                d,
                f"no CustomLog names {name}, yet it logs all of the fields of"
                f" {self.inlineLog.where}'s format and more ({extra}): taken as"
                " that log's format, as the file means",
            )
            return
        self.notice(d, f"no CustomLog uses the nickname {name}")

    def finish(self) -> None:
        """What applies across the file: <Proxy *> rules, the route cookie."""
        for name, d in self.formatLines:
            if name not in self.usedFormats:
                self.unusedFormat(name, d)
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

    def d_timeout(self, d: Directive, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "Timeout takes seconds")
            return
        self.serverTimeout = seconds(d.args[0])
        self.out.proxy["send_timeout"] = self.serverTimeout

    def d_proxytimeout(self, d: Directive, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "ProxyTimeout takes seconds")
            return
        self.out.proxy["timeout"] = seconds(d.args[0])

    def d_keepalivetimeout(self, d: Directive, host: Host) -> None:
        if len(d.args) != 1:
            self.error(d, "KeepAliveTimeout takes seconds")
            return
        self.out.proxy["idle_timeout"] = seconds(d.args[0])

    def d_requestreadtimeout(self, d: Directive, host: Host) -> None:
        for arg in d.args:
            key, _, value = arg.partition("=")
            if key.lower() == "header":
                limit = value.split(",")[0].split("-")[-1]
                self.out.proxy["header_timeout"] = seconds(limit)
                self.notice(d, f"header: the whole head must come within {limit} s")
            elif key.lower() == "body":
                self.notice(d, "body: uploads are timed by the timeout while moving")
            elif key.lower() != "handshake":
                self.error(d, f"{arg} cannot be expressed")

    def d_traceenable(self, d: Directive, host: Host) -> None:
        value = (d.args or ("",))[0].lower()
        if value == "off":
            self.notice(d, "TRACE is refused (405) unless a route has trace = true")
        elif value == "on":
            self.traceOn = d
        else:
            self.error(d, "TraceEnable extended cannot be expressed")

    def timeouts(self) -> None:
        """Apache's: ProxyTimeout, else Timeout; connecting, the same."""
        proxy = self.out.proxy
        if "timeout" not in proxy and self.serverTimeout is not None:
            proxy["timeout"] = self.serverTimeout
        proxy.setdefault("connect_timeout", proxy.get("timeout", 60.0))
        if self.traceOn is not None:
            for route in self.out.routes:
                if "to" in route:
                    route["trace"] = True
            self.notice(self.traceOn, "TRACE is passed to the backends")

    def d_loglevel(self, d: Directive, host: Host) -> None:
        if any(re.fullmatch(r"proxy[a-z_]*:trace[1-8]", a) for a in d.args):
            self.out.proxy["log_level"] = "debug"
        else:
            self.notice(d, "only proxy:traceN changes the proxy's logging")


def _fields(form: str) -> frozenset[str]:
    """The %-fields of an Apache log format."""
    return frozenset(re.findall(r"%[<>]?(?:\{[^}]*\})?[a-zA-Z]", form))


def _protocols(args: tuple[str, ...]) -> set[str] | None:
    """SSLProtocol's words: the TLS versions left on ("1.2", "1.3")."""
    versions = {"tlsv1": "1.0", "tlsv1.1": "1.1", "tlsv1.2": "1.2", "tlsv1.3": "1.3"}
    # "all" is what an httpd on today's OpenSSL offers: 1.2 and 1.3.
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

"""
Apache's balancers: C{<Proxy balancer://NAME>} with its C{BalancerMember}
and C{ProxySet} lines, into C{[balancer.NAME]} tables (members, method,
stickiness, health check), Apache's defaults written out.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted_proxy.apache.healthexpr import HealthExpressionError, healthExpectation
from twisted_proxy.apache.lines import Host, Lines, count, seconds
from twisted_proxy.apache.parse import Directive, Section

__all__ = ["BalancerLines"]

_LBMETHODS = {
    "byrequests": "byrequests",
    "bytraffic": "bytraffic",
    "bybusyness": "bybusyness",
    "heartbeat": None,
}

_HEALTH_METHODS = {"GET", "HEAD", "OPTIONS", "TCP", "CPING"}
_HEALTH_KEYS = ("hcmethod", "hcuri", "hcinterval", "hcpasses", "hcfails", "hcexpr")


_MEMBER_NOTICES = {
    "keepalive": "TCP keep-alive probes are the system's",
    "flushpackets": "every backend read is sent on at once",
    "flushwait": "every backend read is sent on at once",
    "ping": "an idle connection is checked before reuse (safe_reuse)",
}


class BalancerLines(Lines):
    """The balancer directives."""

    def balancerSection(self, d: Section) -> None:
        """C{<Proxy balancer://NAME>}: its members and settings."""
        name = d.args[0][len("balancer://") :].strip("/")
        balancer = self.balancer(name, d)
        self.declared.setdefault(name, d)
        for child in d.children:
            if child.key == "balancermember":
                self.reading(child, partial(self.member, child, balancer, name))
            elif child.key == "proxyset":
                self.reading(child, partial(self.proxySet, child, balancer))
            else:
                self.error(child, "not expressible inside <Proxy balancer://>")

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
                member["weight"] = count(value)
            elif key == "lbset":
                member["tier"] = count(value)
            elif key == "status":
                self.status(d, value, member)
            elif key == "retry":
                balancer["retry"] = seconds(value)
            elif key == "secret" and url.lower().startswith("ajp://"):
                member["secret"] = value
            elif key in _HEALTH_KEYS:
                self.health(d, key, value, balancer)
            elif key in ("timeout", "connectiontimeout"):
                self.memberTimeouts.setdefault((name, key), []).append(
                    (seconds(value), d)
                )
            elif key in ("ttl", "max"):
                self.poolSetting(d, key, value)
            elif key in ("keepalive", "flushpackets", "flushwait", "ping"):
                self.notice(d, f"{key}: {_MEMBER_NOTICES[key]}")
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
                cookie, _, inURL = value.partition("|")
                balancer["sticky"] = {"name": cookie}
                if inURL:
                    self.notice(
                        d,
                        f"the route is read from the {cookie} cookie; the URL's"
                        f" ;{inURL}= is not read here",
                    )
            elif key == "nofailover":
                sticky = balancer.setdefault("sticky", {})
                sticky["failover"] = value.lower() != "on"
            elif key == "maxattempts":
                balancer["max_attempts"] = count(value)
            elif key == "failonstatus":
                balancer["fail_on_status"] = [count(v) for v in value.split(",")]
            elif key in _HEALTH_KEYS:
                self.notice(
                    d,
                    f"{key} belongs on BalancerMember (Apache refuses it on "
                    "ProxySet): taken as the balancer's health check",
                )
                self.health(d, key, value, balancer)
            elif key == "timeout":
                # Apache's balancer timeout: how long a request waits for a
                # usable member (not the backend's timeout).
                balancer["wait"] = seconds(value)
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
            health["interval"] = seconds(value)
            if health["interval"] <= 5:
                # A check must end before the next: httpd's waits on the
                # worker's timeouts, ours on its own (5 s unless shorter).
                health["timeout"] = health["interval"] / 2
        elif key == "hcpasses":
            health["passes"] = count(value)
        elif key == "hcfails":
            health["fails"] = count(value)
        elif key == "hcexpr":
            found = self.healthExpressions.get(value)
            if found is None:
                self.error(d, f"no ProxyHCExpr {value} before it")
                return
            expression, defined = found
            try:
                health.update(healthExpectation(expression))
            except HealthExpressionError as e:
                self.error(d, f"ProxyHCExpr {value} ({defined.where}): {e}")

    def poolSetting(self, d: Directive, key: str, value: str) -> None:
        if key == "ttl":
            self.out.proxy["pool_ttl"] = seconds(value)
        else:
            self.out.proxy["pool_size"] = count(value)
        self.notice(d, f"{key}: the pools of every backend keep it here")

    def d_proxyhcexpr(self, d: Directive, host: Host) -> None:
        if len(d.args) < 2:
            self.error(d, "ProxyHCExpr takes a name and an {expression}")
            return
        expression = " ".join(d.args[1:]).strip()
        if expression.startswith("{") and expression.endswith("}"):
            expression = expression[1:-1]
        self.healthExpressions[d.args[0]] = (expression, d)

    def memberTimeoutsOntoRoutes(self) -> None:
        """A balancer's members' timeout=: the timeout of the routes to it."""
        for (name, key), found in self.memberTimeouts.items():
            values = {value for value, _ in found}
            d = found[0][1]
            if len(values) > 1:
                self.error(d, f"{key}= differs between members: one per balancer here")
                continue
            routeKey = "timeout" if key == "timeout" else "connect_timeout"
            value = next(iter(values))
            target = f"balancer://{name}".lower()
            for route in self.out.routes:
                to = str(route.get("to", "")).lower()
                if to.rstrip("/") == target or to.startswith(target + "/"):
                    route.setdefault(routeKey, value)
            self.notice(d, f"{key}: taken as the {routeKey} of the routes to {name}")

    # -- directives --

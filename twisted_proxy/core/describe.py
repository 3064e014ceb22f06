"""
The effective configuration in words: the route table as C{twisted-proxy
routes} prints it (in the order matching tries the routes, each with its
effective options), and, for the server-info page, the listeners and
balancers. Secrets are never shown: no key file, token file or certificate
path, only whether there is one.
"""

from __future__ import annotations

from twisted_proxy.config.model import Balancer, Config, Listener, Route
from twisted_proxy.core.routing import RouteTable

__all__ = ["describeConfig", "routeRow", "routeTable"]


def routeTable(config: Config) -> str:
    """The route table: HOST, PATH, TARGET and OPTIONS, aligned."""
    rows = [("HOST", "PATH", "TARGET", "OPTIONS")]
    # In the order matching tries them: the host first, then the match routes,
    # then the longest prefix; a route with aliases once for each name.
    rows += [
        routeRow(config, route, name) for name, route in RouteTable(config.routes).names
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    return "\n".join(lines)


def routeRow(
    config: Config, route: Route, alias: str | None = None
) -> tuple[str, str, str, str]:
    """
    One line of the route table, with the route's effective options; C{alias}
    is the name the line is for (C{None}: the route's C{host}).
    """
    host = alias or route.host or "*"
    if route.exclude:
        return (host, route.location, "exclude", _aliasOption(route, alias))
    target = route.to.url if route.to is not None else f"handler:{route.handler}"
    preserveHost = route.preserve_host
    if preserveHost is None:
        preserveHost = config.proxy.preserve_host
    timeout = config.proxy.timeout if route.timeout is None else route.timeout
    options = [
        f"preserve_host={'true' if preserveHost else 'false'}",
        f"timeout={timeout:g}",
    ]
    if route.connect_timeout is not None:
        options.append(f"connect_timeout={route.connect_timeout:g}")
    if not route.websocket:
        options.append("websocket=false")
    if route.trace:
        options.append("trace=true")
    if route.allow:
        options.append("allow=" + ",".join(str(n) for n in route.allow))
    if route.deny:
        options.append("deny=" + ",".join(str(n) for n in route.deny))
    if route.reverse:
        options.append("reverse=" + ",".join(route.reverse))
    for name, pairs in (
        ("cookie_domain", route.cookie_domain),
        ("cookie_path", route.cookie_path),
    ):
        if pairs:
            options.append(f"{name}=" + ",".join(f"{a}->{b}" for a, b in pairs))
    if route.request_headers.set:
        names = ",".join(name for name, _ in route.request_headers.set)
        options.append(f"set={names}")
    if route.request_headers.unset:
        options.append("unset=" + ",".join(route.request_headers.unset))
    headers = route.request_headers
    for kind, named in (
        ("add", headers.add),
        ("append", headers.append),
        ("edit", headers.edit),
        ("edit_all", headers.edit_all),
    ):
        if named:
            names = ",".join(dict.fromkeys(entry[0] for entry in named))
            options.append(f"{kind}={names}")
    aliases = _aliasOption(route, alias)
    if aliases:
        options.append(aliases)
    return (host, route.location, target, " ".join(options))


def _aliasOption(route: Route, alias: str | None) -> str:
    """On the host's line its aliases; on an alias's line the host."""
    if alias is not None and alias != route.host:
        return f"alias_of={route.host}"
    return "aliases=" + ",".join(route.aliases) if route.aliases else ""


def _listener(listener: Listener) -> str:
    words = [listener.endpoint]
    tls = listener.tls
    if tls is not None:
        words.append(f"tls (min {tls.min_version}, alpn {','.join(tls.alpn)})")
        if tls.sni:
            words.append(f"sni {len(tls.sni)} certificate(s)")
        if tls.hsts:
            words.append(f"hsts max-age={tls.hsts}")
        if tls.client_ca is not None:
            words.append("client certificates asked")
    if listener.redirect_https is not None:
        words.append(f"redirect to {listener.redirect_https}")
    return " ".join(words)


def _balancer(balancer: Balancer) -> list[str]:
    head = f"balancer://{balancer.name}  method={balancer.method}"
    if balancer.method == "hash":
        head += f" hash_key={balancer.hash_key}"
    if balancer.sticky is not None:
        head += f" sticky={balancer.sticky.name}"
    health = balancer.health
    if health is not None:
        check = "TCP" if health.method == "TCP" else f"{health.method} {health.uri}"
        head += f" health={check} every {health.interval:g}s"
    lines = [head]
    for m in balancer.members:
        flags = [f"weight={m.weight}"]
        if m.route:
            flags.append(f"route={m.route}")
        for name in ("standby", "disabled", "drain", "ignore_errors"):
            if getattr(m, name):
                flags.append(name)
        if m.tier:
            flags.append(f"tier={m.tier}")
        if m.max_connections:
            flags.append(f"max_connections={m.max_connections}")
        lines.append(f"  {m.name}  {' '.join(flags)}")
    return lines


def describeConfig(config: Config) -> str:
    """Listeners, routes and balancers, as the server-info page shows them."""
    lines = ["Listeners:"]
    lines += [f"  {_listener(listener)}" for listener in config.listen] or ["  none"]
    lines += ["", "Routes:"]
    lines += ["  " + line for line in routeTable(config).splitlines()]
    lines += ["", "Balancers:"]
    balancers = [b for _, b in config.balancers]
    for balancer in balancers:
        lines += ["  " + line for line in _balancer(balancer)]
    if not balancers:
        lines.append("  none")
    return "\n".join(lines)

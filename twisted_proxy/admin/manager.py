"""
The balancer-manager (C{handler = "balancer-manager"}): Apache's page for
watching and steering the balancers of a running proxy, and its JSON API
(L{twisted_proxy.admin.api}) under C{PATH/api}.

The page shows, per balancer, its method and sticky cookie, and per member
its URL, route, status (ok, error, health-down, drain, disabled, standby),
weight, tier, requests, failures, bytes each way, requests in flight, the
smoothed response time and the last health check. Plain HTML forms (no
script) change a member's weight, route, tier and flags, add a member and
remove one. Each form carries the page's nonce, good once; a change is
answered with a redirect back to the page (so a reload does not repeat it).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from twisted_proxy.admin.api import answerAPI, balancersView, segments
from twisted_proxy.admin.changes import EDITABLE, ChangeError, addMember, change, remove
from twisted_proxy.admin.guard import Nonces, crossSiteProblem
from twisted_proxy.admin.view import ReloadResult
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.balancer.state import DOWN
from twisted_proxy.core.localpage import LocalRequest, LocalResponse, textResponse

__all__ = ["BalancerManager", "memberStatus"]

_FLAGS = ("disabled", "drain", "standby", "ignore_errors")
_FORM = b"application/x-www-form-urlencoded"
_MAX_FIELDS = 40


def memberStatus(member: dict[str, Any]) -> list[str]:
    """The words of a member's status, as the page shows them (C{["ok"]} when fine)."""
    words = [flag for flag in ("disabled", "drain", "standby") if member[flag]]
    if member["health"] == DOWN:
        words.append("health-down")
    if member["in_error"]:
        words.append("error")
    return words or ["ok"]


class BalancerManager:
    """
    The handler of a C{balancer-manager} route: a L{LocalRequest} in, a
    L{LocalResponse} out.

    :param mount: the route's path, for the links and the redirect.
    :param token: the route's bearer token (C{token_file}), for the API.
    :param seconds: the clock, for the nonces' lifetime and the page's times.
    :param reload: what C{POST api/reload} calls (the service's reload).
    """

    def __init__(
        self,
        service: BalancerService,
        mount: str,
        seconds: Callable[[], float],
        token: bytes | None = None,
        reload: Callable[[], ReloadResult] | None = None,
    ) -> None:
        self._service = service
        self._reload = reload
        self._mount = mount.rstrip("/")
        self._seconds = seconds
        self._token = token
        self.nonces = Nonces(seconds)

    def __call__(self, request: LocalRequest) -> LocalResponse:
        path = segments(request.path)
        if path[:1] == ["api"]:
            return answerAPI(
                self._service, request, path[1:], self._token, self._reload
            )
        if path:
            return textResponse(404, "no such page")
        if request.method in (b"GET", b"HEAD"):
            return self._page()
        if request.method == b"POST":
            return self._post(request)
        return LocalResponse(
            405,
            b"method not allowed here\n",
            ((b"Allow", b"GET, HEAD, POST"), (b"Content-Type", b"text/plain")),
        )

    # -- the forms --

    def _post(self, request: LocalRequest) -> LocalResponse:
        problem = crossSiteProblem(request)
        if problem is not None:
            return textResponse(403, f"refused: {problem}")
        kind = (request.header(b"content-type") or b"").split(b";", 1)[0].strip()
        if kind.lower() != _FORM:
            return textResponse(415, "send the page's form")
        try:
            pairs = parse_qsl(
                request.body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=_MAX_FIELDS,
            )
        except (UnicodeDecodeError, ValueError):
            return textResponse(400, "the form could not be read")
        form = dict(pairs)
        if not self.nonces.redeem(form.pop("nonce", "")):
            return textResponse(
                403, "refused: the page's nonce is missing, used or stale (reload it)"
            )
        try:
            self._apply(form, request.client)
        except ChangeError as e:
            return textResponse(e.status, e.message)
        return LocalResponse(
            303,
            b"",
            (
                (b"Location", (self._mount or "/").encode()),
                (b"Cache-Control", b"no-store"),
            ),
        )

    def _apply(self, form: dict[str, str], client: str) -> None:
        action = form.pop("action", "")
        balancer = form.pop("balancer", "")
        if action == "add":
            values: dict[str, Any] = {"url": form.pop("url", "")}
            values.update(_formValues(form, flags=False))
            addMember(self._service, balancer, values, client)
        elif action == "remove":
            remove(self._service, balancer, form.pop("member", ""), client)
        elif action == "update":
            member = form.pop("member", "")
            change(
                self._service, balancer, member, _formValues(form, flags=True), client
            )
        else:
            raise ChangeError(400, f"unknown action {action!r}")

    # -- the page --

    def _page(self) -> LocalResponse:
        nonce = self.nonces.issue()
        now = self._seconds()
        parts = [_HEAD]
        balancers = balancersView(self._service)
        if not balancers:
            parts.append("<p>No balancers are configured.</p>")
        for balancer in balancers:
            parts.append(self._balancer(balancer, nonce, now))
        parts.append(
            f'<p class="api">JSON: <a href="{escape(self._mount)}/api">'
            f"{escape(self._mount)}/api</a></p></body></html>\n"
        )
        return LocalResponse(
            200,
            "".join(parts).encode("utf-8"),
            (
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Cache-Control", b"no-store"),
                (b"X-Frame-Options", b"DENY"),
                (
                    b"Content-Security-Policy",
                    b"default-src 'none'; style-src 'unsafe-inline';"
                    b" form-action 'self'; frame-ancestors 'none'",
                ),
                (b"Referrer-Policy", b"same-origin"),
            ),
        )

    def _balancer(self, balancer: dict[str, Any], nonce: str, now: float) -> str:
        name = escape(balancer["name"])
        sticky = escape(balancer["sticky"] or "none")
        rows = "".join(self._member(name, m, nonce, now) for m in balancer["members"])
        hidden = _hidden(nonce, balancer["name"])
        return (
            f'<section id="balancer-{name}"><h2>balancer://{name}</h2>'
            f"<p>method <b>{escape(balancer['method'])}</b>, sticky cookie "
            f"<b>{sticky}</b></p>"
            "<table><thead><tr><th>Member</th><th>Route</th><th>Status</th>"
            "<th>Weight</th><th>Tier</th><th>Requests</th><th>Failures</th>"
            "<th>In</th><th>Out</th><th>In flight</th><th>Response time</th>"
            "<th>Last check</th><th>Change</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f'<form method="post" class="add">{hidden}'
            '<input type="hidden" name="action" value="add">'
            '<label>Add member <input name="url" required'
            ' placeholder="http://127.0.0.1:9001"></label> '
            '<label>route <input name="route" size="8"></label> '
            '<label>weight <input name="weight" value="1" size="3"></label> '
            '<button type="submit">Add</button></form></section>'
        )

    def _member(self, balancer: str, m: dict[str, Any], nonce: str, now: float) -> str:
        status = " ".join(memberStatus(m))
        check = "never"
        if m["last_check"] is not None:
            ago = now - m["last_check"]
            check = f"{escape(str(m['last_check_result']))} ({ago:.0f} s ago)"
        hidden = _hidden(nonce, balancer) + (
            f'<input type="hidden" name="member" value="{escape(m["name"])}">'
        )
        flags = "".join(
            f'<label><input type="checkbox" name="{flag}" value="on"'
            f"{' checked' if m[flag] else ''}> {flag.replace('_', ' ')}</label> "
            for flag in _FLAGS
        )
        return (
            f'<tr data-member="{escape(m["name"])}"><td>{escape(m["name"])}</td>'
            f'<td>{escape(m["route"] or "")}</td><td class="status">{status}</td>'
            f"<td>{m['weight']}</td><td>{m['tier']}</td>"
            f'<td class="requests">{m["requests"]}</td>'
            f"<td>{m['failures']}</td><td>{_bytes(m['bytes_in'])}</td>"
            f"<td>{_bytes(m['bytes_out'])}</td><td>{m['in_flight']}</td>"
            f"<td>{m['response_time'] * 1000:.1f} ms</td><td>{check}</td><td>"
            f'<form method="post" class="update">{hidden}'
            '<input type="hidden" name="action" value="update">'
            f'<label>weight <input name="weight" value="{m["weight"]}" size="3">'
            "</label> "
            f'<label>tier <input name="tier" value="{m["tier"]}" size="2"></label> '
            '<label>route <input name="route" size="8"'
            f' value="{escape(m["route"] or "")}"></label> '
            f'{flags}<button type="submit">Set</button></form>'
            f'<form method="post" class="remove">{hidden}'
            '<input type="hidden" name="action" value="remove">'
            '<button type="submit">Remove</button></form></td></tr>'
        )


def _formValues(form: dict[str, str], flags: bool) -> dict[str, Any]:
    """A form's fields as config values: numbers as numbers, checkboxes as booleans."""
    values: dict[str, Any] = {}
    for key, value in form.items():
        if key in _FLAGS:
            continue
        if key not in EDITABLE:
            raise ChangeError(400, f"{key}: not a member setting")
        if key == "route":
            values[key] = value.strip()
        elif value.strip():
            try:
                values[key] = int(value)
            except ValueError:
                raise ChangeError(
                    400, f"{key}: expected a whole number, got {value!r}"
                ) from None
    if flags:
        # An unticked box is not sent: every flag the form shows is set.
        for flag in _FLAGS:
            values[flag] = form.get(flag) == "on"
    return values


def _hidden(nonce: str, balancer: str) -> str:
    return (
        f'<input type="hidden" name="nonce" value="{escape(nonce)}">'
        f'<input type="hidden" name="balancer" value="{escape(balancer)}">'
    )


def _bytes(count: int) -> str:
    """C{count} bytes in the largest unit that keeps it at 1 or more."""
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


_HEAD = (
    '<!DOCTYPE html><html><head><meta charset="utf-8">'
    "<title>Balancer manager - twisted-proxy</title><style>"
    "body{font-family:sans-serif;margin:1em}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}form{display:inline}.status{font-weight:bold}"
    "</style></head><body><h1>Balancer manager</h1>"
)

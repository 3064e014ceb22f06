"""
The changes the balancer-manager's forms and its JSON API make to a running
balancer, in the configuration's own words (C{weight}, C{drain},
C{ignore_errors}...): each value checked as the config file's would be, the
change made through L{BalancerService}, and logged with who asked and what
moved from what to what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.config.convert import (
    InvalidValueError,
    boolean,
    intAtLeast,
    memberURL,
    positiveInt,
    routeId,
)
from twisted_proxy.config.model import Member

__all__ = ["EDITABLE", "ChangeError", "addMember", "change", "memberView", "remove"]

_log = Logger(namespace="twisted_proxy.admin")


def _route(path: str, value: Any) -> str:
    """A route id, or C{""} to take the route away."""
    return "" if value == "" else routeId(path, value)


EDITABLE: Mapping[str, Callable[[str, Any], Any]] = {
    "weight": positiveInt,
    "tier": intAtLeast(0),
    "max_connections": intAtLeast(0),
    "route": _route,
    "disabled": boolean,
    "drain": boolean,
    "standby": boolean,
    "ignore_errors": boolean,
}
"""What may change on a running member, and how each value is checked."""

# The config's names as BalancerService.setFlags spells them.
_KEYWORDS = {"max_connections": "maxConnections", "ignore_errors": "ignoreErrors"}


class ChangeError(Exception):
    """A change that cannot be made: the HTTP status and why, in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _balancerOf(service: BalancerService, name: str) -> None:
    if name not in service.balancerNames():
        raise ChangeError(404, f"no balancer {name!r}")


def memberView(service: BalancerService, balancer: str, member: str) -> dict[str, Any]:
    """One member as the manager shows it (its snapshot); 404 if there is none."""
    _balancerOf(service, balancer)
    try:
        name = service.member(balancer, member).name
    except KeyError:
        raise ChangeError(
            404, f"balancer {balancer!r} has no member {member!r}"
        ) from None
    [view] = [m for m in service.snapshot()[balancer] if m["name"] == name]
    return view


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    checked = {}
    for key, value in values.items():
        convert = EDITABLE.get(key)
        if convert is None:
            known = ", ".join(EDITABLE)
            raise ChangeError(400, f"{key}: not a member setting (one of {known})")
        try:
            checked[key] = convert(key, value)
        except InvalidValueError as e:
            raise ChangeError(400, f"{key}: {e}") from None
    return checked


def change(
    service: BalancerService,
    balancer: str,
    member: str,
    values: Mapping[str, Any],
    client: str,
) -> dict[str, Any]:
    """
    Set C{values} (config names) on a member, all or none; log what moved.
    Returns the member as it is now.
    """
    before = memberView(service, balancer, member)
    checked = _checked(values)
    try:
        service.setFlags(
            balancer,
            member,
            **{_KEYWORDS.get(key, key): value for key, value in checked.items()},
        )
    except ValueError as e:
        raise ChangeError(409, str(e)) from None
    after = memberView(service, balancer, member)
    moved = [
        f"{key} {_word(before[key])} -> {_word(after[key])}"
        for key in checked
        if before[key] != after[key]
    ]
    if moved:
        _log.info(
            "balancer-manager: {client} changed balancer://{balancer} member "
            "{member}: {changes}",
            client=client,
            balancer=balancer,
            member=after["name"],
            changes=", ".join(moved),
        )
    return after


def _kind(scheme: str) -> str:
    """What a member speaks, as far as sharing a balancer goes."""
    return {"tcp": "tcp://", "ajp": "ajp://"}.get(scheme, "HTTP")


def addMember(
    service: BalancerService, balancer: str, values: Mapping[str, Any], client: str
) -> dict[str, Any]:
    """Add a member (C{url} and any of L{EDITABLE}) at run time; log it."""
    _balancerOf(service, balancer)
    rest = dict(values)
    if "url" not in rest:
        raise ChangeError(400, 'url: required (a URL like "http://127.0.0.1:9001")')
    try:
        url, scheme, host, port = memberURL("url", rest.pop("url"))
    except InvalidValueError as e:
        raise ChangeError(400, f"url: {e}") from None
    checked = _checked(rest)
    members = [m.member for m in service.members(balancer)]
    members += service.config(balancer).members
    kinds = {_kind(m.scheme) for m in members}
    if kinds and kinds != {_kind(scheme)}:
        held = " and ".join(sorted(kinds))
        why = f"balancer://{balancer} has {held} members; {scheme}:// cannot join"
        raise ChangeError(409, f"url: {why}")
    route = checked.pop("route", "") or None
    # A new AJP member speaks to a container of the same cluster: it takes
    # the secret its fellow members were given (never one sent over HTTP).
    secrets = {m.secret for m in members} if scheme == "ajp" else {None}
    secret = secrets.pop() if len(secrets) == 1 else None
    new = Member(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        route=route,
        secret=secret,
        **checked,
    )
    for existing in service.members(balancer):
        if route is not None and existing.member.route == route:
            raise ChangeError(409, f"route {route} is {existing.name}'s already")
    try:
        state = service.addMember(balancer, new)
    except ValueError as e:
        raise ChangeError(409, str(e)) from None
    _log.info(
        "balancer-manager: {client} added member {member} to balancer://{balancer}",
        client=client,
        member=state.name,
        balancer=balancer,
    )
    return memberView(service, balancer, state.name)


def remove(service: BalancerService, balancer: str, member: str, client: str) -> str:
    """Remove a member at run time (requests in flight finish); log it."""
    name = str(memberView(service, balancer, member)["name"])
    service.removeMember(balancer, name)
    _log.info(
        "balancer-manager: {client} removed member {member} from balancer://{balancer}",
        client=client,
        member=name,
        balancer=balancer,
    )
    return name


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)

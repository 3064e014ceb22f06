"""
The balancer-manager's JSON API, under the manager's path:

  - C{GET api}: every balancer, with its members;
  - C{GET|PATCH|DELETE api/balancers/NAME/members/MEMBER}: one member, as
    it is; changed (a JSON object of the config's key names, such as
    C{{"weight": 2, "drain": true}}); removed;
  - C{POST api/balancers/NAME/members}: a new member (C{url} and settings);
  - C{POST api/reload}: the configuration file read again and applied.

A member is named by its route when it has one, otherwise by its URL,
percent-encoded (C{http%3A%2F%2F127.0.0.1%3A9001}). Changes are refused
from another site's page, and ask for the route's token when it has one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted_proxy.admin.changes import ChangeError, addMember, change, memberView
from twisted_proxy.admin.changes import remove as removeMember
from twisted_proxy.admin.guard import bearerProblem, crossSiteProblem
from twisted_proxy.admin.view import ReloadResult
from twisted_proxy.balancer.service import BalancerService
from twisted_proxy.core.localpage import LocalRequest, LocalResponse

__all__ = ["answerAPI", "balancersView", "segments"]

_JSON = ((b"Content-Type", b"application/json"), (b"Cache-Control", b"no-store"))


def _json(
    status: int, value: Any, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> LocalResponse:
    body = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
    return LocalResponse(status, body, _JSON + extra)


def _error(status: int, message: str) -> LocalResponse:
    extra = ((b"WWW-Authenticate", b"Bearer"),) if status == 401 else ()
    return _json(status, {"error": message}, extra)


def balancersView(service: BalancerService) -> list[dict[str, Any]]:
    """Every balancer: its name, method, sticky cookie and members."""
    snapshot = service.snapshot()
    result = []
    for name in service.balancerNames():
        config = service.config(name)
        result.append(
            {
                "name": name,
                "method": config.method,
                "sticky": config.sticky.name if config.sticky else None,
                "members": [_withId(m) for m in snapshot[name]],
            }
        )
    return result


def _withId(member: dict[str, Any]) -> dict[str, Any]:
    return {**member, "id": member["route"] or member["name"]}


def _body(request: LocalRequest) -> dict[str, Any]:
    kind = (request.header(b"content-type") or b"").split(b";", 1)[0].strip().lower()
    if kind != b"application/json":
        raise ChangeError(415, "send a JSON object (Content-Type: application/json)")
    try:
        value = json.loads(request.body or b"null")
    except ValueError as e:
        raise ChangeError(400, f"not JSON: {e}") from None
    except RecursionError:
        raise ChangeError(400, "not JSON this proxy reads: nested too deeply") from None
    if not isinstance(value, dict):
        raise ChangeError(400, "send a JSON object")
    return value


def answerAPI(
    service: BalancerService,
    request: LocalRequest,
    path: list[str],
    token: bytes | None,
    reload: Callable[[], ReloadResult] | None = None,
) -> LocalResponse:
    """
    Answer a request for C{path} (the segments after C{api}, decoded).
    """
    problem = bearerProblem(request, token)
    if problem is not None:
        return _error(401, problem)
    method = request.method
    if method not in (b"GET", b"HEAD"):
        problem = crossSiteProblem(request)
        if problem is not None:
            return _error(403, f"refused: {problem}")
    if path == ["reload"]:
        if method != b"POST":
            return _notAllowed(b"POST")
        if reload is None:
            return _error(404, "this proxy cannot reload")
        result = reload()
        return _json(
            200 if result.ok else 422,
            {
                "reloaded": result.ok,
                "generation": result.generation,
                "errors": list(result.errors),
                "notes": list(result.notes),
            },
        )
    try:
        return _answer(service, request, method, path)
    except ChangeError as e:
        return _error(e.status, e.message)


def _answer(
    service: BalancerService, request: LocalRequest, method: bytes, path: list[str]
) -> LocalResponse:
    read = method in (b"GET", b"HEAD")
    if not path:
        if read:
            return _json(200, {"balancers": balancersView(service)})
        return _notAllowed(b"GET, HEAD")
    if len(path) == 3 and path[0] == "balancers" and path[2] == "members":
        if method == b"POST":
            added = addMember(service, path[1], _body(request), request.client)
            return _json(201, _withId(added))
        if read:
            return _json(200, [_withId(m) for m in _members(service, path[1])])
        return _notAllowed(b"GET, HEAD, POST")
    if len(path) == 4 and path[0] == "balancers" and path[2] == "members":
        balancer, member = path[1], path[3]
        if read:
            return _json(200, _withId(memberView(service, balancer, member)))
        if method == b"PATCH":
            changed = change(service, balancer, member, _body(request), request.client)
            return _json(200, _withId(changed))
        if method == b"DELETE":
            name = removeMember(service, balancer, member, request.client)
            return _json(200, {"removed": name})
        return _notAllowed(b"GET, HEAD, PATCH, DELETE")
    raise ChangeError(404, "no such API path")


def _members(service: BalancerService, balancer: str) -> list[dict[str, Any]]:
    if balancer not in service.balancerNames():
        raise ChangeError(404, f"no balancer {balancer!r}")
    return list(service.snapshot()[balancer])


def _notAllowed(allow: bytes) -> LocalResponse:
    return _json(405, {"error": "method not allowed here"}, ((b"Allow", allow),))


def segments(path: bytes) -> list[str]:
    """C{path}'s segments, each percent-decoded (a member URL keeps its slashes)."""
    return [unquote(part.decode("latin-1")) for part in path.split(b"/") if part]

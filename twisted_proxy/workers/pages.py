"""
Admin pages across worker processes: a follower's request for a handler
route, and the owner's answer, as JSON values for the control channel
(bytes as Latin-1 text, which maps every byte to one character).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted_proxy.core.localpage import LocalRequest, LocalResponse

__all__ = ["requestDocument", "requestFrom", "responseDocument", "responseFrom"]


def _text(data: bytes) -> str:
    return data.decode("latin-1")


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


def requestDocument(request: LocalRequest) -> dict[str, Any]:
    """C{request} as JSON values."""
    return {
        "method": _text(request.method),
        "path": _text(request.path),
        "query": _text(request.query),
        "headers": [[_text(name), _text(value)] for name, value in request.headers],
        "body": _text(request.body),
        "client": request.client,
        "origin": request.origin,
    }


def requestFrom(document: Mapping[str, Any]) -> LocalRequest:
    """The L{LocalRequest} of a L{requestDocument}."""
    return LocalRequest(
        method=_bytes(document["method"]),
        path=_bytes(document["path"]),
        query=_bytes(document["query"]),
        headers=tuple((_bytes(n), _bytes(v)) for n, v in document["headers"]),
        body=_bytes(document["body"]),
        client=document["client"],
        origin=document["origin"],
    )


def responseDocument(response: LocalResponse) -> dict[str, Any]:
    """C{response} as JSON values."""
    return {
        "status": response.status,
        "headers": [[_text(name), _text(value)] for name, value in response.headers],
        "body": _text(response.body),
    }


def responseFrom(document: Mapping[str, Any]) -> LocalResponse:
    """The L{LocalResponse} of a L{responseDocument}."""
    return LocalResponse(
        status=document["status"],
        body=_bytes(document["body"]),
        headers=tuple((_bytes(n), _bytes(v)) for n, v in document["headers"]),
    )

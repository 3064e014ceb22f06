"""
Admin pages across worker processes: a follower's request for a handler
route and the owner's answer, carried as JSON; every byte comes back as it was.
"""

from __future__ import annotations

import json
from typing import Any

from twisted_proxy.core.localpage import LocalRequest, LocalResponse
from twisted_proxy.workers.pages import (
    requestDocument,
    requestFrom,
    responseDocument,
    responseFrom,
)

EVERY_BYTE = bytes(range(256))


def carried(document: dict[str, Any]) -> dict[str, Any]:
    """C{document} as the control channel carries it (JSON, then UTF-8 bytes)."""
    result: dict[str, Any] = json.loads(json.dumps(document).encode("utf-8"))
    return result


def test_aRequestComesBackByteForByte() -> None:
    """Every byte 0..255 in the method, path, query, headers and body survives."""
    request = LocalRequest(
        method=b"PATCH",
        path=b"/balancers/" + EVERY_BYTE,
        query=b"q=" + EVERY_BYTE,
        headers=(
            (b"Content-Type", b"application/octet-stream"),
            (b"X-Every", EVERY_BYTE),
            (b"X-Every", EVERY_BYTE[::-1]),
            (b"X-\xe9", b""),
        ),
        body=EVERY_BYTE * 3,
        client="2001:db8::1",
        origin="https://proxy.example.test:8443",
    )
    again = requestFrom(carried(requestDocument(request)))
    assert again == request
    assert again.header(b"x-every") == EVERY_BYTE


def test_aResponseComesBackByteForByte() -> None:
    """Every byte 0..255 in the body and header values survives, status too."""
    response = LocalResponse(
        status=503,
        body=EVERY_BYTE[::-1] + EVERY_BYTE,
        headers=(
            (b"Content-Type", b"application/octet-stream"),
            (b"X-Every", EVERY_BYTE),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ),
    )
    assert responseFrom(carried(responseDocument(response))) == response


def test_anEmptyRequestAndResponse() -> None:
    """The least there is (no query, headers or body) comes back as it was."""
    request = LocalRequest(b"GET", b"/")
    response = LocalResponse(204)
    assert requestFrom(carried(requestDocument(request))) == request
    assert responseFrom(carried(responseDocument(response))) == response


def test_theDocumentsAreJSONText() -> None:
    """The documents are plain JSON values: text, numbers and lists."""
    request = LocalRequest(b"POST", b"/\x00\xff", body=b"\x80")
    document = requestDocument(request)
    assert document["path"] == "/\x00\xff"
    assert document["body"] == "\x80"
    assert json.loads(json.dumps(document, ensure_ascii=False)) == document

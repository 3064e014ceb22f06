"""
Seed inputs for fuzzing: realistic messages and the classic smuggling probes.

Hypothesis mutates them in the unit tests; the atheris harness starts from the
same seeds, and its libFuzzer dictionary is L{TOKENS}.
"""

from __future__ import annotations

REQUEST_HEADS: tuple[bytes, ...] = (
    b"GET / HTTP/1.1\r\nHost: example.test",
    b"GET /a%2Fb?q=1+2&r=%00 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2",
    b"GET http://example.test:8080/p?q HTTP/1.1\r\nHost: example.test:8080",
    b"OPTIONS * HTTP/1.1\r\nHost: h",
    b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443",
    b"HEAD /x HTTP/1.0\r\nConnection: keep-alive",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked",
    b"DELETE /r HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0",
    # CL.TE and TE.CL: the two orders of both framings in one head.
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4",
    # Codings a lenient front end may read as chunked while a backend does not.
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked",
    b"POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked",
    # Obsolete line folding, on any header and on Transfer-Encoding.
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked",
    # Duplicate Content-Lengths: equal, different, listed, signed, spaced.
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0005",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999",
    # NUL, CR and other control characters in values and in the target.
    b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\x7f",
    b"GET /a\x00b HTTP/1.1\r\nHost: h",
    b"GET /a\x01b HTTP/1.1\r\nHost: h",
    # Bare LF as a line end.
    b"GET / HTTP/1.1\nHost: h",
    b"GET / HTTP/1.1\r\nHost: h\nTransfer-Encoding: chunked",
    b"GET /\n HTTP/1.1\r\nHost: h",
    # Malformed request lines.
    b"GET  / HTTP/1.1\r\nHost: h",
    b"GET / HTTP/2.0\r\nHost: h",
    b"GET / http/1.1\r\nHost: h",
)
"""Request heads: everything before the blank line."""

CHUNKED_BODIES: tuple[bytes, ...] = (
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;name=value\r\nhello\r\n6 ; ext\r\n world\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n",
    b"0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"1\r\nx\r\n1\r\ny\r\n1\r\nz\r\n0\r\n\r\n",
    # Sizes that overflow or are not plain hex.
    b"10000000000000000\r\nx\r\n0\r\n\r\n",
    b"ffffffffffffffff\r\nx",
    b"0000000000000000005\r\nhello\r\n0\r\n\r\n",
    b"-1\r\nx\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    # Bare LF, missing CRLF after data, data longer than its size.
    b"5\nhello\n0\n\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",
    b"5\r\nhello0\r\n\r\n",
    b"5\r\nhel",
)
"""Chunked request bodies, with whatever follows them on the connection."""

RESPONSES: tuple[tuple[tuple[bytes, ...], bytes], ...] = (
    ((b"GET",), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    (
        (b"GET",),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    ),
    ((b"GET",), b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nread until close"),
    (
        (b"GET",),
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    ),
    ((b"HEAD",), b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ((b"GET+",), b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nraw"),
    ((b"GET",), b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
    (
        (b"POST",),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        (b"GET", b"GET"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
    ),
    (
        (b"HEAD", b"GET"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    # Both framings, in both orders; codings that are not chunked at the end.
    (
        (b"GET",),
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\n\r\n",
    ),
    (
        (b"GET",),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"1\r\na\r\n0\r\n\r\n",
    ),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nabc"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nab"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab"),
    # More digits than int() converts (it raised ValueError before f918a27).
    ((b"GET",), b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 4301 + b"\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 200 OK\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\x00c\r\nContent-Length: 0\r\n\r\n"),
    (
        (b"GET",),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000000\r\nx\r\n0\r\n\r\n",
    ),
    ((b"GET",), b"HTTP/1.1 200 OK\nContent-Length: 2\n\nab"),
    ((b"GET",), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\n0\n\n"),
    ((b"GET",), b"HTTP/1.1 2000 OK\r\n\r\n"),
    ((b"GET",), b"HTTP/2 200\r\n\r\n"),
)
"""
Backend responses, each with the request methods they answer in turn (a
method ending in C{+} is a request that asked for an upgrade).
"""

CONFIGS: tuple[str, ...] = (
    '[[listen]]\nendpoint = "tcp:8080"\n\n[[route]]\npath = "/"\n'
    'to = "http://127.0.0.1:9001"\n',
    """\
[proxy]
server_name = "proxy.example.test"
server_tokens = "prod"
preserve_host = true
trusted_proxies = ["198.51.100.0/24", "::1"]
via = "on"
timeout = 30
connect_timeout = 2.5
max_header_bytes = 16384
access_log = false
compress = ["text/html", "application/json"]
pool_size = 8

[proxy.response_headers]
set = { "X-Frame-Options" = "DENY" }
unset = ["Server"]

[proxy.websocket]
ping_interval = 20
max_message_bytes = 1048576

[[listen]]
endpoint = "tcp:8443:interface=127.0.0.1"
tls = { certificate = "cert.pem", key = "key.pem", alpn = ["h2", "http/1.1"] }

[[listen]]
endpoint = "tcp:8080"
redirect_https = "https://proxy.example.test:8443"

[[route]]
path = "/app/"
host = "*.example.test"
to = "balancer://cluster/app/"
reverse = ["http://127.0.0.1:9121/app/"]
cookie_domain = { "backend.internal" = "example.test" }
allow = ["127.0.0.1", "::1"]
request_headers = { set = { "X-Env" = "prod" }, unset = ["Cookie"] }

[[route]]
path = "/ws"
to = "wss://127.0.0.1:9200/ws"
tls_verify = false

[balancer.cluster]
method = "hash"
hash_key = "cookie:SESSION"
max_attempts = 2
fail_on_status = [502, 503]
sticky = { name = "ROUTEID", insert = true }

[balancer.cluster.health]
method = "GET"
uri = "/healthz?full=1"
interval = 10
timeout = 2
expect_status = ["2xx", 301]
expect_body = "^ok$"

[[balancer.cluster.member]]
url = "http://127.0.0.1:9121"
route = "a"
weight = 3

[[balancer.cluster.member]]
url = "https://[::1]:9122"
route = "b"
standby = true
tls_ca = "ca.pem"
""",
    '[[route]]\npath = "/"\nto = "balancer://missing/"\n',
    '[[route]]\npath = "/"\nhandler = "status"\n',
    '[balancer.b]\n[[balancer.b.member]]\nurl = "ajp://127.0.0.1:8009"\n',
    "[proxy]\ntimeout = -1\nvia = 3\n[[listen]]\nendpoint = 8080\n",
    'title = "x"\n[[listen]]\nconnect = "tcp:1"\n',
    "[proxy\n",
    'a = """\nmultiline\n"""\nb = 1979-05-27T07:32:00Z\nc = [1, 2.5, "x"]\n',
)
"""Config files: valid ones, and ones wrong in shape, type, value or syntax."""

TOKENS: dict[str, tuple[bytes, ...]] = {
    "request": (
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b":",
        b",",
        b"\x00",
        b"\x7f",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"Content-Length: ",
        b"Transfer-Encoding: ",
        b"chunked",
        b"identity",
        b"Connection: close",
        b"Expect: 100-continue",
        b"99999999999999999999",
    ),
    "chunked": (
        b"\r\n",
        b"\n",
        b";",
        b" ",
        b"0\r\n\r\n",
        b"ffffffffffffffff",
        b"10000000000000000",
        b"Trailer: x\r\n",
    ),
    "response": (
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b" ",
        b":",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"0\r\n\r\n",
        b"HEAD",
        b"HTTP/1.1 101 Switching Protocols\r\n",
        b"GET+",
    ),
    "config": (
        b"\n",
        b"[",
        b"]",
        b"[[",
        b"]]",
        b" = ",
        b'"',
        b"{",
        b"}",
        b"true",
        b"-1",
        b"1e309",
        b"nan",
        b"[proxy]",
        b"[[route]]",
        b"[[listen]]",
        b"[balancer.b]",
        b"[[balancer.b.member]]",
        b"balancer://",
        b"http://",
        b"wss://",
        b"[::1]",
        b"expect_body",
    ),
}
"""Fragments worth splicing in, per target (a libFuzzer dictionary's entries)."""


def encodeResponse(methods: tuple[bytes, ...], data: bytes) -> bytes:
    """
    One fuzz input for the response target: the request methods, comma
    separated, on a line of their own before the response bytes.
    """
    return b",".join(methods) + b"\n" + data


def decodeResponse(data: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """Split a response-target input back into its methods (at most 3) and bytes."""
    methods, _, rest = data.partition(b"\n")
    return tuple(methods.split(b",")[:3]), rest


TARGETS = ("request", "chunked", "response", "config")
"""The fuzz targets, as the atheris harness names them."""


def seeds(target: str) -> list[bytes]:
    """The seed inputs of C{target}, as the atheris harness reads them."""
    if target == "request":
        return list(REQUEST_HEADS)
    if target == "chunked":
        return list(CHUNKED_BODIES)
    if target == "response":
        return [encodeResponse(methods, data) for methods, data in RESPONSES]
    if target == "config":
        return [text.encode() for text in CONFIGS]
    raise ValueError(f"unknown fuzz target {target!r}")


def dictionary(target: str) -> str:
    """L{TOKENS} of C{target} as a libFuzzer dictionary file."""
    return "".join(
        '"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in TOKENS[target]
    )

"""
One home per protocol spoken to clients: HTTP/1.1 (C{http1}), HTTP/2
(C{http2}), the reverse-proxy relay (C{httprelay}), WebSocket (C{websocket}),
the HTTPS redirect (C{redirect}), the routes the proxy answers itself
(C{local}: the admin pages) and a TLS port's first bytes (C{tlssniff}).

A front end never imports another front end. What they share goes through a
few named modules: C{request} and C{clientinfo} (request facts, error pages),
C{context} (what the service hands every proxying front end, the WebSocket
upgrade handler among it), C{listener} (a listener's connections, drain and
abort) and C{pipe} (two transports paired as each other's producers); and
below them, the balancer's lease.
"""

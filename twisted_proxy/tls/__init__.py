"""
All of OpenSSL: listener contexts (SNI, ALPN, client certificates, reload)
and backend verification. What a TLS port does with plain HTTP is a listener
matter: L{twisted_proxy.frontends.tlssniff}.
"""

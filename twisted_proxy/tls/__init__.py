"""
All of OpenSSL: listener contexts (SNI, ALPN, client certificates, reload),
the first bytes on a TLS port, and backend verification.
"""

"""
The access log's I/O: a buffered logger per service and where its lines go.
Formatting is pure and lives in L{twisted_proxy.core.logformat}.
"""

"""
The pure core: the rules of HTTP and of mod_proxy as plain functions and values.

Nothing here imports Twisted's reactor, Deferreds or sockets; only the config
model is below it.
"""

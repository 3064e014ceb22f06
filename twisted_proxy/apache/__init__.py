"""
Apache httpd's configuration, read and turned into this proxy's: the
directives of mod_proxy and its family as operators and the guide write
them (L{twisted_proxy.apache.parse} reads the files).
"""

"""
C{[proxy] workers = N}: the owner process (the one twistd started) and the
follower processes it starts on the same listening sockets, with one view
of the balancers. See L{twisted_proxy.workers.owner}.
"""

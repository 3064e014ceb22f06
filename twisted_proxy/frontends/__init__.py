"""
One module per protocol spoken to clients, over the shared pieces:
``request`` (request facts, error pages), and the balancer's lease.

A front end never imports another front end.
"""

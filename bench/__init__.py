"""Benchmarks for twisted-proxy: throughput against Twisted's own proxy, and memory.

Run with ``python -m bench`` (or ``make bench``); ``python -m bench --help`` lists
the options. All traffic stays on 127.0.0.1.
"""

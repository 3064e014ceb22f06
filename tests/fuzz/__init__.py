"""
Fuzzing the parsers and the config loader: the seed corpus, the properties every
input must satisfy, and the atheris harness that runs them coverage-guided.
"""

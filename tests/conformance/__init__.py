"""The Autobahn|Testsuite conformance run: echo backend, runner, report."""

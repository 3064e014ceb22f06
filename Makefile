# Two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# sslyze checks the TLS defaults in the tests; it pins an older cryptography
# than pyOpenSSL needs, so it lives in a virtualenv of its own.
SSLYZE_VENV := .venv-sslyze
SSLYZE := $(SSLYZE_VENV)/bin/sslyze

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode: twistd finds the plugin in twisted/plugins/ only this way
	# with the flat layout.
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

$(SSLYZE):
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install -q --upgrade pip
	$(SSLYZE_VENV)/bin/pip install -q "sslyze==6.3.1"

# The demo: two backends on 127.0.0.1:9001/9002 and the proxy on :8080 in
# front of them. Ctrl-C stops all three.
run: $(STAMP)
	@$(PY) -m twisted_proxy.demo 9001 9002 & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	echo "try: curl -s http://127.0.0.1:8080/"; \
	$(VENV)/bin/twistd -n --pidfile= proxy --config etc/twisted-proxy.toml

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(SSLYZE)
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) build *.egg-info twisted/plugins/dropin.cache

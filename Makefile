# Two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make run` installs only what running needs (no test tools) into the same
# virtualenv; `make test` adds the test extra.
RUN_STAMP := $(VENV)/.installed-run
DEMO_PORTS ?= 9001 9002
# setuptools warns, in a box, that the compat editable mode is transitional.
QUIET_COMPAT := PYTHONWARNINGS="ignore:Compat editable installs"
# sslyze checks the TLS defaults in the tests; it pins an older cryptography
# than pyOpenSSL needs, so it lives in a virtualenv of its own.
SSLYZE_VENV := .venv-sslyze
SSLYZE := $(SSLYZE_VENV)/bin/sslyze
# The WebSocket conformance run needs wstest (autobahntestsuite), which runs
# only on Python 2.7, so it gets a virtualenv of its own, pinned whole.
# PYTHON27=/path/to/python2.7 picks the interpreter; otherwise the first
# working one of python2.7 on PATH and pyenv's.
AUTOBAHN_VENV := .venv-autobahn
AUTOBAHN_STAMP := $(AUTOBAHN_VENV)/.installed
AUTOBAHN_REQUIREMENTS := tests/conformance/requirements-autobahn.txt
PYENV_PYTHON27 := /root/.pyenv/versions/2.7.18/bin/python
PYTHON27_CANDIDATES = $(strip $(PYTHON27) python2.7 $(PYENV_PYTHON27) \
	$(filter-out $(PYENV_PYTHON27),$(wildcard $(HOME)/.pyenv/versions/2.7*/bin/python)))
# The oldest dependencies pyproject.toml allows (tests/oldest-constraints.txt)
# on the oldest Python it allows: PYTHON_OLDEST=/path/to/python picks the
# interpreter; otherwise the first working python3.10 on PATH or pyenv's, and
# $(PYTHON) when there is none.
OLDEST_VENV := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed
OLDEST_CONSTRAINTS := tests/oldest-constraints.txt
PYTHON_OLDEST_CANDIDATES = $(strip $(PYTHON_OLDEST) python3.10 \
	$(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python))

# Programs from Debian's packages that integration tests run for real: the
# balancer-manager page in headless Chromium (through chromedriver), a
# Prometheus server scraping the metrics page, Apache's htpasswd writing the
# proxy users' files, curl and openssl s_client going through CONNECT
# tunnels, a Redis server and redis-cli behind a tcp listener, and a Tomcat
# spoken to over AJP. Installed when missing (as root, or through sudo).
SYSTEM_TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/prometheus \
	/usr/bin/htpasswd /usr/bin/curl /usr/bin/openssl /usr/bin/redis-server \
	/usr/bin/redis-cli /usr/share/tomcat10/bin/catalina.sh
SYSTEM_PACKAGES := chromium chromium-driver prometheus apache2-utils curl openssl \
	redis-server redis-tools tomcat10
# Where systemd runs, the tomcat10 package starts a Tomcat on port 8080, the
# port make run's demo listens on: it is stopped and disabled right after
# this installs it (every test starts a Tomcat of its own).

.PHONY: run test lint typecheck pytest system-tools test-oldest bench conformance clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode: twistd finds the plugin in twisted/plugins/ only this way
	# with the flat layout.
	$(QUIET_COMPAT) $(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

$(RUN_STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(QUIET_COMPAT) $(PY) -m pip install -q --config-settings editable_mode=compat -e .
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(RUN_STAMP)

$(SSLYZE):
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install -q --upgrade pip
	$(SSLYZE_VENV)/bin/pip install -q "sslyze==6.3.1"

# Python 2.7 has no venv module: virtualenv 20.15.1 (the last that makes 2.7
# environments) is put in a throwaway directory by 2.7's own pip and run from
# there.
$(AUTOBAHN_STAMP): $(AUTOBAHN_REQUIREMENTS)
	rm -rf $(AUTOBAHN_VENV)
	@py=; for p in $(PYTHON27_CANDIDATES); do \
		if "$$p" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; \
		then py=$$p; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
		echo "make conformance: no working Python 2.7 (tried: $(PYTHON27_CANDIDATES))." >&2; \
		echo "wstest (autobahntestsuite) runs on nothing newer, and Debian no longer" >&2; \
		echo "packages 2.7: install one (pyenv install 2.7.18) and put it on PATH," >&2; \
		echo "or name it: make conformance PYTHON27=/path/to/python2.7" >&2; \
		exit 1; \
	fi; \
	echo "$(AUTOBAHN_VENV): $$py"; \
	boot=$$(mktemp -d) && trap 'rm -rf "$$boot"' EXIT && \
	"$$py" -m pip install -q --disable-pip-version-check --target "$$boot" \
		virtualenv==20.15.1 && \
	PYTHONPATH="$$boot" "$$py" -m virtualenv -q -p "$$py" $(AUTOBAHN_VENV)
	$(AUTOBAHN_VENV)/bin/pip install -q --disable-pip-version-check \
		-r $(AUTOBAHN_REQUIREMENTS)
	$(AUTOBAHN_VENV)/bin/wstest --autobahnversion 2>/dev/null
	touch $(AUTOBAHN_STAMP)

# The test tools come unpinned; everything the project needs is pinned at its
# floor, so pip fails loudly if a floor and its pin disagree.
$(OLDEST_STAMP): pyproject.toml setup.cfg $(OLDEST_CONSTRAINTS)
	rm -rf $(OLDEST_VENV)
	@py=; for p in $(PYTHON_OLDEST_CANDIDATES); do \
		if "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; \
		then py=$$p; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
		py=$(PYTHON); \
		echo "$(OLDEST_VENV): no Python 3.10 found (tried: $(PYTHON_OLDEST_CANDIDATES)); using $$py" >&2; \
	fi; \
	echo "$(OLDEST_VENV): $$py"; \
	"$$py" -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/pip install -q -c $(OLDEST_CONSTRAINTS) \
		. pytest pytest-twisted pytest-timeout hypothesis
	touch $(OLDEST_STAMP)

# A non-editable install, as a user gets it (reinstalled each run so it is the
# current source), on the floors; then the installed twistd starts a TLS
# listener and serves one HTTPS request (tests/integration/test_oldest_deps.py).
# --import-mode=append makes the tests import the installed package too.
test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/pip install -q --no-deps --force-reinstall .
	$(OLDEST_VENV)/bin/pip check
	@$(OLDEST_VENV)/bin/python -I -c 'import sys, twisted_proxy, importlib.metadata as m; \
		print("Python", sys.version.split()[0], *(n + "==" + m.version(n) for n in \
		("twisted", "treq", "autobahn", "pyOpenSSL", "service-identity", "cryptography", \
		"prometheus-client"))); \
		print("twisted_proxy from", twisted_proxy.__file__)'
	$(OLDEST_VENV)/bin/pytest -q --import-mode=append tests/integration/test_oldest_deps.py \
		tests/integration/test_metrics.py

# The demo (twisted_proxy/demo.py): a backend on 127.0.0.1 at each of
# DEMO_PORTS, then the proxy on :8080 in front of them, on
# etc/twisted-proxy.toml (for other ports, on a copy of it under build/demo/
# that names them). A port that is taken stops it, in one line, before the
# proxy starts; when the proxy exits the backends stop; Ctrl-C stops both.
run: $(RUN_STAMP)
	@$(PY) -m twisted_proxy.demo --proxy etc/twisted-proxy.toml $(DEMO_PORTS)

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(SSLYZE) system-tools
	$(VENV)/bin/pytest -q

system-tools:
	@missing=; for tool in $(SYSTEM_TOOLS); do \
		[ -x $$tool ] || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian's $(SYSTEM_PACKAGES) (missing:$$missing)"; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -q && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $(SYSTEM_PACKAGES) && \
		case "$$missing" in *tomcat10*) \
			if [ -d /run/systemd/system ]; then \
				echo "stopping the tomcat10 service just installed (it holds port 8080; tests run their own)"; \
				$$sudo systemctl disable --now tomcat10 || true; \
			fi;; \
		esac; \
	fi

bench: $(STAMP) system-tools
	$(PY) -m bench

# Autobahn|Testsuite's fuzzingclient against an echo backend, directly and
# through the proxy (tests/conformance/run.py): fails on any case that passes
# directly but not through the proxy. Reports in build/conformance/.
conformance: $(STAMP) $(AUTOBAHN_STAMP)
	$(PY) -m tests.conformance.run --wstest $(AUTOBAHN_VENV)/bin/wstest

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) $(AUTOBAHN_VENV) $(OLDEST_VENV) build *.egg-info twisted/plugins/dropin.cache

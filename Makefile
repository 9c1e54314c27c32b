# Everything runs from a local virtualenv that `make` creates on first use; only python3 is needed.

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install serve test test-all fuzz bench capacity soak lint format screenshots deploy-check clean distclean

# Re-install whenever pyproject.toml changes (new dependency, new entry point) or the compiled fan-out's
# sources do (setup.py builds sfu/_fanout.c, sfu/_delay.c and sfu/_srtp.c in place). An existing venv is reused rather than
# re-created, so a venv made by another interpreter is not rewritten underneath us.
$(STAMP): pyproject.toml setup.py sfu/_fanout.c sfu/_delay.c sfu/_srtp.c sfu/_history.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/kelian serve

# The suite without the slowest end-to-end tests (marked slow); test-all runs them too, as CI does.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	KELIAN_SLOW=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# The fuzz tests with a long random search instead of CI's fixed examples (FUZZ_EXAMPLES per test).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	KELIAN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

# kelian loadtest --find-capacity for the live and dual-teacher presets (about ten minutes)
capacity: $(STAMP)
	$(PY) -m benchmarks.capacity

# The pictures in the README, taken by the browser tests themselves (needs chromium, and a CJK font
# such as fonts-noto-cjk for the Chinese ones).
screenshots: $(STAMP)
	KELIAN_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/test_web_app.py tests/test_lesson_pages.py tests/test_console.py \
		tests/test_library_page.py

# Half an hour of a live lesson with participants coming and going; fails if memory grows (SOAK_ARGS).
SOAK_ARGS ?=
soak: $(STAMP)
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

# deploy/ (docs/deploy.md): the Prometheus config, the alert rules and their unit tests through promtool
# (Debian's prometheus package), then tests/test_deploy.py, which make test runs too: every query of the
# dashboard and the alerts against a real kelian's /metrics, the image's command and variables, the
# systemd unit, the kernel settings. Fails, rather than skips, when promtool is missing.
deploy-check: $(STAMP)
	@command -v promtool >/dev/null || { echo "deploy-check: promtool is missing (apt-get install prometheus)" >&2; exit 1; }
	cd deploy/prometheus && promtool check config --syntax-only prometheus.yml
	cd deploy/prometheus && promtool check rules alerts.yml
	cd deploy/prometheus && promtool test rules alerts.test.yml
	KELIAN_REQUIRE_SYSTEM=1 $(PY) -m pytest -q tests/test_deploy.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

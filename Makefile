# The README's two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Three pytest workers on a 2-core machine: most of the suite waits on servers, browsers
# and sockets, not the CPU. A file's tests stay on one worker (its module fixtures, and
# the order a module relies on). `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 3 --dist loadfile

.PHONY: run test lint format bench bench-quick clean

$(VENV)/.installed-run: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-run

## make run: set up and start the server on http://127.0.0.1:8000
run: $(VENV)/.installed-run
	$(PY) serve.py $(ARGS)

## make test: set up and run the whole test suite
test: $(VENV)/.installed-dev
	@sh scripts/install-chromium.sh
	@sh scripts/install-nginx.sh
	@sh scripts/install-irc-client.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)
	node --test tests/js/

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## make bench: the benchmark set side by side with Daphne + Channels, gunicorn and granian
## (~40 min: search over 1M messages, 100k idle WebSockets), writes bench/RESULTS.md, its
## charts and raw JSON in bench/results/; make bench-quick: the same phases, small (< 5 min)
bench:
	sh bench/setup_venvs.sh
	bench/.venv-bench/bin/python bench/run_all.py

bench-quick:
	sh bench/setup_venvs.sh
	bench/.venv-bench/bin/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 db.sqlite3-wal db.sqlite3-shm

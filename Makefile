# veobot: `make run` starts everything locally, `make test` runs the whole suite.
# Only Python 3.11+ is needed: dependencies go into .venv, and without DATABASE_URL an
# embedded PostgreSQL (from the pgserver wheel) is started with its data under .data/.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test lint chaos schema db-stop bench-admission bench-bot clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("veobot needs Python 3.11 or newer (found %s); set PYTHON=python3.11" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# First run: a local .env with a fresh SECRET_KEY, from the documented example.
.env:
	@$(PYTHON) -c 'import secrets, re, pathlib; text = pathlib.Path(".env.example").read_text(); pathlib.Path(".env").write_text(re.sub(r"(?m)^SECRET_KEY=.*$$", "SECRET_KEY=" + secrets.token_urlsafe(50), text))'
	@echo "created .env from .env.example with a new SECRET_KEY (edit it to configure veobot)"

run: $(STAMP) .env
	$(PY) manage.py migrate_sql
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	@echo "admin panel: http://127.0.0.1:8000/admin/   health: http://127.0.0.1:8000/healthz"
	@# The bot (with its worker) runs beside the admin; without DISCORD_TOKEN, or when Discord
	@# refuses it, the worker alone, and runbot says why. Stopping `make run` (Ctrl-C) stops both.
	@$(PY) manage.py runbot --or-worker & bot=$$!; \
	trap 'kill -TERM $$bot 2>/dev/null; wait $$bot' EXIT INT TERM; \
	$(PY) manage.py runserver --noreload --insecure 127.0.0.1:8000

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@test -x /usr/bin/chromium || echo "note: /usr/bin/chromium not found, so the browser tests will be SKIPPED (apt-get install chromium; .ci/run does)"
	$(PY) -m pytest $(PYTEST_ARGS)

# The lint and format checks `make test` starts with; `make lint` fixes what ruff can.
lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The fault-injection runs at full size (docs/RELIABILITY.md); `make test` runs them small.
# Each run prints what it injected and what it found, and fails on any loss.
chaos: $(STAMP)
	VEOBOT_CHAOS=full VEOBOT_HYPOTHESIS=full $(PY) -m pytest tests/reliability -m chaos -p no:cacheprovider

# migrations_sql/schema.sql, the whole schema to read: every SQL migration applied to a scratch
# database (created and dropped on the configured server), dumped. Run it after adding a migration
# and commit the file with it. dump_schema signs nothing, so a fresh checkout needs no .env.
schema: $(STAMP)
	SECRET_KEY=$${SECRET_KEY:-schema-dump-not-a-secret} $(PY) manage.py dump_schema

db-stop: $(STAMP)
	$(PY) -m veosite.embedded_db stop

bench-admission: $(STAMP)
	$(PY) bench/admission.py

bench-bot: $(STAMP)
	$(PY) bench/bot_latency.py

clean:
	rm -rf $(VENV) .pytest_cache

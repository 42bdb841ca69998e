# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Python 3.12: the one pyenv picks for .python-version, else any python3.12 on PATH.
PYTHON ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v "$$p"; break; }; done)

.PHONY: run test lint format venv serve-production clean messages

$(BIN)/.installed: requirements.txt
	@if [ ! -x $(BIN)/python ]; then \
	  if [ -z "$(PYTHON)" ]; then echo "Python 3.12 is required (pyenv install 3.12, or set PYTHON=/path/to/python3.12)"; exit 1; fi; \
	  echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $@

venv: $(BIN)/.installed

## run: the embedded mode (SQLite, in-process workers and scheduler) on http://127.0.0.1:$(PORT)
run: venv
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py bootstrap_demo --url http://127.0.0.1:$(PORT)/
	$(BIN)/python manage.py serve --port $(PORT)

## test: the whole suite; DATABASE_URL picks the database (SQLite by default)
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## messages: find every translatable string (locale/<lang>/LC_MESSAGES/*.po) and compile the catalogs
MESSAGES_IGNORE := -i .venv -i var -i tests -i bench -i static/vendor -i node_modules
messages: venv
	$(BIN)/python manage.py makemessages -a --add-location file --no-obsolete $(MESSAGES_IGNORE)
	$(BIN)/python manage.py makemessages -a -d djangojs --add-location file --no-obsolete $(MESSAGES_IGNORE)
	$(BIN)/python manage.py normalize_catalogs
	$(BIN)/python manage.py compilemessages $(MESSAGES_IGNORE)

lint: venv
	$(BIN)/ruff check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache

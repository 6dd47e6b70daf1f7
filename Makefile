# Everything the project needs is installed from here: a fresh machine only needs python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench serve clean settings-table

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crm-health demo

# The admin page's browser tests drive Debian's Chromium (Playwright never downloads browsers
# here). Installed only when missing; apt-get update only when the first try fails.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

# pytest exits 5 when it collected nothing: a suite that tests nothing is a failure, not a pass.
test: $(STAMP) $(CHROMIUM)
	@$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls --no-warn-return-any tests bench
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench

serve: $(STAMP)
	$(BIN)/crm-health serve

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info

settings-table: $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from webhooks.settings import write_settings_table; write_settings_table(Path('README.md'))"

# Zastava: the README's commands. Each target installs what it needs itself.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: demo test bench models lint venv system-deps clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev,postgres]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests need (chromium for browser tests, dcmtk as an independent DICOM
# peer, postgresql for the central store tests). Installed when run as root, listed otherwise.
system-deps:
	@sh scripts/system-deps.sh

demo: venv
	$(BIN)/zastava demo

test: venv system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

models: venv
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[train]'
	$(BIN)/python -m models.train_all

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

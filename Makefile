# Everything a newcomer needs: `make demo` runs the main job on a generated archive,
# `make test` runs the tests. Each sets up its own virtual environment from scratch.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# GDAL interoperability checks use a second, small environment: Python 3.12 with rasterio
# 1.5 (GDAL 3.12), because the rasterio wheels for Python 3.11 carry GDAL 3.10, which
# predates the Zarr v3 "bytes" codec name.
PYTHON312 ?= $(shell for p in $(HOME)/.pyenv/versions/3.12*/bin/python3.12 $$(command -v python3.12); do \
	  "$$p" -c pass 2>/dev/null && { echo "$$p"; break; }; done)
GDAL_VENV := .venv-gdal
DEMO   := demo

.PHONY: venv install test demo bench docs clean

$(BIN)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet hatchling ".[test,bench]"
	touch $@

venv: $(BIN)/.deps

# Non-editable install on purpose: tests run against what a user's `pip install` gets.
install: venv
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --force-reinstall .

$(GDAL_VENV)/.deps:
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: set PYTHON312=/path/to/python3.12"; exit 1; }
	$(PYTHON312) -m venv $(GDAL_VENV)
	$(GDAL_VENV)/bin/pip install --quiet "rasterio>=1.5,<1.6"
	touch $@

test: install $(GDAL_VENV)/.deps
	GEOTESSERA_GDAL_PYTHON=$(abspath $(GDAL_VENV))/bin/python $(BIN)/pytest -q; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

demo: install
	rm -rf $(DEMO)
	$(BIN)/geotessera-registry demo-data $(DEMO)/archive
	$(BIN)/geotessera-registry zarr-build $(DEMO)/archive --output-dir $(DEMO)/stores
	$(BIN)/geotessera-registry verify $(DEMO)/stores/utm31_2024.zarr --base-dir $(DEMO)/archive
	$(BIN)/geotessera-registry stac $(DEMO)/stores --validate
	$(BIN)/geotessera-registry quicklook $(DEMO)/stores/utm31_2024.zarr -o $(DEMO)/utm31_2024.png
	$(BIN)/geotessera-registry sample --lon 0.15 --lat 0.15 --year 2024 $(DEMO)/stores
	@echo "Stores: $(DEMO)/stores  catalog: $(DEMO)/stores/stac  preview: $(DEMO)/utm31_2024.png"

bench: install
	$(BIN)/python benchmarks/bench_build.py
	$(BIN)/python benchmarks/bench_preview.py
	$(BIN)/python benchmarks/bench_read.py

# docs/registry.md is generated from registry/schema.json (tests check it is up to date).
docs: install
	$(BIN)/geotessera-registry registry-schema > docs/registry.md

clean:
	rm -rf $(VENV) $(GDAL_VENV) $(DEMO) .pytest_cache .hypothesis build dist

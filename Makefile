# Everything a newcomer needs: `make demo` runs the main job on a generated archive,
# `make test` runs the tests. Each sets up its own virtual environment from scratch.

# Python 3.12: current zarr (3.4), rasterio 1.5 with GDAL 3.12 (which reads our stores) and
# icechunk need it. The machine's default python3 is 3.11, so look for 3.12 under pyenv too.
PYTHON ?= $(shell for p in $$(command -v python3.12) $(HOME)/.pyenv/versions/3.12*/bin/python3.12; do \
	  "$$p" -c pass 2>/dev/null && { echo "$$p"; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo

.PHONY: venv install test demo docs-images bench docs clean web web-deps deps-browser

# Every extra (`all`: build, read, viewer, distributed, h3, plot, parquet) plus the test and
# benchmark tools: `make test`, `make demo` and `make bench` use all of them.
$(BIN)/.deps: pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3.12 not found: set PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet hatchling ".[all,test,bench]"
	touch $@

venv: $(BIN)/.deps

# Non-editable install on purpose: tests run against what a user's `pip install` gets.
install: venv
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --force-reinstall .

# The viewer's test setup: Debian's Chromium for the browser tests (Playwright drives it by
# path; never `playwright install`) and the page's npm packages (zarrita for the node reader
# test, esbuild for the bundle check). Both steps do nothing when already done.
deps-browser:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web-deps: web/node_modules/.package-lock.json

# Rebuild the committed page bundle geotessera/viewer/static/ from web/src.
web: web-deps
	cd web && node build.mjs

# Two test processes, one per core of this machine kind: the suite is one core's work for
# 20 minutes serially and 13.5 in two (loadfile keeps each module's fixtures in one process).
TEST_WORKERS ?= 2

test: install deps-browser web-deps
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

demo: install
	rm -rf $(DEMO)
	$(BIN)/geotessera-registry demo-data $(DEMO)/archive
	$(BIN)/geotessera-registry zarr-build $(DEMO)/archive --output-dir $(DEMO)/stores
	$(BIN)/geotessera-registry verify $(DEMO)/stores/utm31_2024.zarr --base-dir $(DEMO)/archive
	$(BIN)/geotessera-registry stac $(DEMO)/stores --validate
	$(BIN)/geotessera-registry quicklook $(DEMO)/stores/utm31_2024.zarr -o $(DEMO)/utm31_2024.png
	$(BIN)/geotessera-registry mosaic $(DEMO)/stores --year 2024 -o $(DEMO)/mosaic_2024.png --width 600
	$(BIN)/geotessera-registry sample --lon 0.15 --lat 0.15 --year 2024 $(DEMO)/stores
	@echo "Stores: $(DEMO)/stores  catalog: $(DEMO)/stores/stac  preview: $(DEMO)/utm31_2024.png  map: $(DEMO)/mosaic_2024.png"

# The pictures in README.md and docs/ (docs/img/), from `make demo`'s output.
docs-images: demo
	cp $(DEMO)/utm31_2024.png $(DEMO)/mosaic_2024.png docs/img/

bench: install
	$(BIN)/python benchmarks/bench_build.py
	$(BIN)/python benchmarks/bench_preview.py
	$(BIN)/python benchmarks/bench_fused.py
	$(BIN)/python benchmarks/bench_reduce.py
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_h3.py
	$(BIN)/python benchmarks/bench_viewer.py
	$(BIN)/python benchmarks/bench_cluster.py
	$(BIN)/python benchmarks/bench_codecs.py
	$(BIN)/python benchmarks/bench_remote.py
	$(BIN)/python benchmarks/bench_remote_points.py
	$(BIN)/python benchmarks/bench_remote_regions.py
	$(BIN)/python benchmarks/bench_plan.py
	$(BIN)/python benchmarks/bench_s3.py
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_install_size.py read

# docs/registry.md is generated from registry/schema.json (tests check it is up to date).
docs: install
	$(BIN)/geotessera-registry registry-schema > docs/registry.md

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis build dist web/node_modules

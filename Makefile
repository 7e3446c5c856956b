# One command per job; each creates the environment first if it is missing.
#   make reports            run every notebook with PROFILE (default cpu) and render reports/
#   make reports PROFILE=smoke NOTEBOOKS="00 01"
#   make reports NOTEBOOKS="00 01 10 11 22" DATASET=folder:/path/to/images REPORTS=/path/to/my_reports
#   make test               lint (notebooks, lib, tests), unit tests, every notebook run once (smoke profile) and checked
#   make nbval              every notebook under nbval, as opened in JupyterLab (smoke values)
#   make rehearse           the paper profile's code paths on this CPU, work cut (reports/rehearsal/)
#   make rehearse EAGER=1   the same with eager training and inference steps (quicker here)
#   make rehearse QUICK=1   eager, and the first of each list of networks / variants / candidates (make test's)
#   make lab                JupyterLab with the suite's kernel
#   make bench              performance benchmark into reports/benchmarks/
#   make site               rebuild the report site (reports/index.html, docs/ pages, screenshot) from reports/cpu
#   make readme             docs/results.md's comparison and ladder tables from reports/cpu (90_comparison)
#   make schema             docs/results.schema.json, the JSON Schema of results.json, from hemasuite.record
#   make clean-cache        empty the user cache (validation, thumbnails, decoded images, features)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
NOTEBOOKS ?=
EAGER ?=
QUICK ?=
DATASET ?=
REPORTS ?=
ALLOW_DIRTY ?=
TEST_WORKERS ?= 2
export LEUKEMIA_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: env kernel reports rehearse site test unit nbval lab bench paper-check readme schema clean clean-cache

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name hemasuite --display-name "Python (hemasuite)"
	touch $@

reports: env
	$(BIN)/python -m hemasuite.tools.runner --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) \
		$(if $(DATASET),--dataset $(DATASET)) $(if $(REPORTS),--reports $(REPORTS)) $(if $(ALLOW_DIRTY),--allow-dirty)

rehearse: env
	$(BIN)/python -m hemasuite.tools.runner --profile paper --rehearse $(if $(EAGER),--eager) $(if $(QUICK),--quick) \
		$(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

site: env
	$(BIN)/python -m hemasuite.tools.site cpu

test: env
	$(BIN)/python -m ruff check notebooks lib tests
	out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	HEMASUITE_OUTPUT_DIR=$$out $(BIN)/python -m pytest tests -p no:cacheprovider --durations=25 \
		-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

nbval: env
	out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	HEMASUITE_OUTPUT_DIR=$$out $(BIN)/python -m pytest notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

unit: env
	$(BIN)/python -m pytest tests

lab: env
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: env
	$(BIN)/python -m hemasuite.tools.bench --output reports/benchmarks

paper-check: env
	$(BIN)/python -m hemasuite.tools.paper_check $(if $(LIMIT),--limit $(LIMIT))

readme: env
	$(BIN)/python -m hemasuite.tools.readme

schema: env
	$(BIN)/python -m hemasuite.record --schema > docs/results.schema.json.tmp
	mv docs/results.schema.json.tmp docs/results.schema.json

clean:
	rm -rf reports/smoke reports/rehearsal reports/.staging

clean-cache:
	rm -rf "$${HEMASUITE_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/hemasuite}"

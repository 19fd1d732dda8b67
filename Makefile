# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-deps lint bench clean

# The native adapter is a C extension built by the install: rebuild when its sources change.
$(STAMP): pyproject.toml $(wildcard src/flowpipe/native/*.c src/flowpipe/native/include/flowpipe/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

run: install ## create the environment, install, run the example flow
	$(BIN)/flowpipe run flows/hello.yaml

test-deps: ## system tools the tests need (installed with apt-get when missing)
	bash scripts/install-test-deps.sh

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

test: test-deps install lint ## every check and every test (tools first: the install compiles C)
	$(BIN)/pytest

bench: install ## the core throughput benchmark (figures go to benchmarks/README.md)
	$(BIN)/python benchmarks/core_bench.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache

# Container images from the root Dockerfile: flowpipe-runtime (flows mounted at /flows) and
# flowpipe-dev (what a plugin repository builds FROM). docker works too: make image CONTAINER=docker.
# Optional: BASE_IMAGE=..., DEV_BASE_IMAGE=..., FLOWPIPE_EXTRAS=... (see the Dockerfile), IMAGE_TAG.
CONTAINER ?= podman
IMAGE_TAG ?= latest
IMAGE_ARGS = $(foreach arg,BASE_IMAGE DEV_BASE_IMAGE FLOWPIPE_EXTRAS,$(if $(filter undefined,$(origin $(arg))),,--build-arg $(arg)=$($(arg))))

.PHONY: image
image: ## build the flowpipe-dev and flowpipe-runtime images
	$(CONTAINER) build $(IMAGE_ARGS) --target dev -t flowpipe-dev:$(IMAGE_TAG) .
	$(CONTAINER) build $(IMAGE_ARGS) -t flowpipe-runtime:$(IMAGE_TAG) .

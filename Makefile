# jaxcoder: `make test` and `make demo` set themselves up (a .venv with everything they need).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
DEMO := runs/demo
DEMO_CONFIG := configs/demo.py
PROMPT := def fibonacci(n):

.PHONY: setup test demo lint clean

setup: $(STAMP)

# torch is pinned to the CPU build that the package index here serves; CUDA wheels are never pulled.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[hf,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(BIN)/pytest -q tests

# Walking skeleton: tokenizer -> train -> Orbax checkpoint -> HF export -> transformers completion.
demo: $(STAMP)
	$(BIN)/jaxcoder data tokenizer --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(BIN)/jaxcoder train --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(BIN)/jaxcoder export --config=$(DEMO_CONFIG) --checkpoint=$(DEMO)/checkpoints --out=$(DEMO)/hf \
		--verify_prompt="$(PROMPT)"
	$(BIN)/jaxcoder generate --checkpoint=$(DEMO)/checkpoints --prompt="$(PROMPT)" --max_new_tokens=40

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

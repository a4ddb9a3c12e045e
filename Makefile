# jaxcoder: `make test` and `make demo` set themselves up (a .venv with everything they need).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
DEMO := runs/demo
DEMO_CONFIG := configs/demo.py
PROMPT := def fibonacci(n):

.PHONY: setup test demo bench lint clean

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

# This machine's own code -> shards -> training with FIM -> Orbax checkpoint -> HF export ->
# a completion by transformers -> evaluation. Every stage resumes or skips work already done.
demo: $(STAMP)
	$(BIN)/jaxcoder data prepare --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(BIN)/jaxcoder train --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(BIN)/jaxcoder export --config=$(DEMO_CONFIG) --checkpoint=$(DEMO)/checkpoints --out=$(DEMO)/hf \
		--verify_prompt="$(PROMPT)"
	$(BIN)/jaxcoder generate --checkpoint=$(DEMO)/checkpoints --prompt="$(PROMPT)" --max_new_tokens=40
	$(BIN)/jaxcoder eval --config=$(DEMO_CONFIG) --config.workdir=$(DEMO) --checkpoint=$(DEMO)/checkpoints

# CPU benchmarks, each printing a ratio against a reference measured in the same run.
bench: $(STAMP)
	cd bench && ../$(BIN)/python data_pipeline.py --data_dir ../runs/bench/data
	cd bench && ../$(BIN)/python dedup.py
	cd bench && ../$(BIN)/python tokenizer.py --data_dir ../runs/bench/data
	cd bench && ../$(BIN)/python train_step.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

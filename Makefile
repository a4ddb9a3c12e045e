# jaxcoder: `make test` and `make demo` set themselves up (a .venv with everything they need).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
DEMO := runs/demo
DEMO_CONFIG := configs/demo.py
PROMPT := def fibonacci(n):\n

.PHONY: setup test demo bench lint clean

# The tests and the demo run on CPU (the demo on 2 fake devices). The tpu extra's libtpu, there to
# compile TPU programs ahead of time, would otherwise probe for a TPU in every process and log
# that it found none; `make test JAX_PLATFORMS=` lifts this.
export JAX_PLATFORMS ?= cpu

setup: $(STAMP)

# torch is pinned to the CPU build that the package index here serves; CUDA wheels are never pulled.
# The seqio extra (TensorFlow) is in so that the seqio adapters are tested too (~1 min of set-up);
# the tpu extra (libtpu) so that the kernels and the train step are compiled for TPUs here.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[hf,dev,seqio,tpu,tracking,eval]"
	touch $(STAMP)

# Two pytest workers, a test file each at a time: much of the suite waits on compilation and
# subprocesses, so two share even a 2-core machine well (TEST_WORKERS=0 runs in one process).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check .
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# This machine's own code -> shards -> training with FIM on a mesh of fake CPU devices -> Orbax
# checkpoints -> HF export checked by transformers (a completion and an infill) -> evaluation of the
# trained model and of the untrained baseline -> runs/demo/report.md + loss.png. Every stage
# resumes or skips work already done, so an interrupted `make demo` continues where it stopped.
DEMO_DEVICES := XLA_FLAGS=--xla_force_host_platform_device_count=2
INFILL_PREFIX := def count_lines(path):\n    with open(path) as f:\n
INFILL_SUFFIX := \n\n\nif __name__ == \"__main__\":\n    print(count_lines(__file__))\n
demo: $(STAMP)
	$(BIN)/jaxcoder data prepare --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(DEMO_DEVICES) $(BIN)/jaxcoder train --config=$(DEMO_CONFIG) --config.workdir=$(DEMO)
	$(BIN)/jaxcoder export --config=$(DEMO_CONFIG) --checkpoint=$(DEMO)/checkpoints --out=$(DEMO)/hf \
		--verify_prompt="$(PROMPT)" --verify_infill_prefix="$(INFILL_PREFIX)" --verify_infill_suffix="$(INFILL_SUFFIX)"
	$(BIN)/jaxcoder generate --checkpoint=$(DEMO)/checkpoints --prompt="$(PROMPT)" --max_new_tokens=40
	$(BIN)/jaxcoder eval --config=$(DEMO_CONFIG) --config.workdir=$(DEMO) --checkpoint=$(DEMO)/checkpoints
	$(BIN)/jaxcoder eval --config=$(DEMO_CONFIG) --config.workdir=$(DEMO) --checkpoint=$(DEMO)/checkpoints --untrained
	$(BIN)/jaxcoder report --config=$(DEMO_CONFIG) --config.workdir=$(DEMO) --title="jaxcoder demo"
	@echo "report: $(DEMO)/report.md (loss curve: $(DEMO)/loss.png)"

# CPU benchmarks, each printing a ratio against a reference measured in the same run; the
# summary at the end gathers them into one table (device, versions and date in its header).
BENCH_RECORD := ../runs/bench/ratios.jsonl
bench: $(STAMP)
	mkdir -p runs/bench && rm -f runs/bench/ratios.jsonl
	cd bench && export JAXCODER_BENCH_RECORD=$(BENCH_RECORD) && \
		../$(BIN)/python data_pipeline.py --data_dir ../runs/bench/data && \
		../$(BIN)/python dedup.py && \
		../$(BIN)/python tokenizer.py --data_dir ../runs/bench/data && \
		../$(BIN)/python train_step.py && \
		../$(BIN)/python generation.py && \
		../$(BIN)/python summary.py $(BENCH_RECORD)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# Quick start: `make demo` (set up, then embed, index and search the bundled sample offline)
# and `make test` (set up, then run the test suite). Both create .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: venv browser demo test bench clean

venv: $(STAMP)

# Reinstall when pyproject.toml changes. torch and torchvision come from pyproject's pins.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	@echo "== 1. embed the bundled Omniglot sample (its train and test alphabets) with the pretrained default encoder"
	$(BIN)/vecmetric embed examples/data/omniglot/train --store $(DEMO)/store
	$(BIN)/vecmetric embed examples/data/omniglot/test --store $(DEMO)/store
	@echo "== 2. build the HNSW index"
	$(BIN)/vecmetric index --store $(DEMO)/store
	@echo "== 3. search with held-out query images"
	$(BIN)/vecmetric search examples/queries/*.png --store $(DEMO)/store --k 5
	@echo "== 4. the same, as JSON for pipelines"
	$(BIN)/vecmetric search examples/queries/Greek__character05_0398_20.png --store $(DEMO)/store --k 3 --json
	@echo "== 5. fine-tune on two alphabets (train/), then score retrieval on three alphabets it never saw (test/)"
	$(BIN)/vecmetric train examples/data/omniglot/train --out $(DEMO)/run --embedding-dim 128 --image-size 64 --epochs 3 --lr 3e-4 --no-flip
	$(BIN)/vecmetric eval examples/data/omniglot/test --model default --image-size 64
	$(BIN)/vecmetric eval examples/data/omniglot/test --model $(DEMO)/run
	@echo "== 6. embed and search the unseen alphabets with the fine-tuned model"
	$(BIN)/vecmetric embed examples/data/omniglot/test --model $(DEMO)/run --store $(DEMO)/store-finetuned
	$(BIN)/vecmetric search examples/queries/*.png --store $(DEMO)/store-finetuned --k 5
	@echo "== 7. near duplicates: generated pictures with planted copies, grouped, set aside and put back"
	$(BIN)/python examples/dedup_demo.py --out $(DEMO)/dedup
	$(BIN)/vecmetric embed $(DEMO)/dedup/photos --store $(DEMO)/dedup/store
	$(BIN)/vecmetric dedup --store $(DEMO)/dedup/store --html $(DEMO)/dedup/sheet.html
	$(BIN)/vecmetric dedup --store $(DEMO)/dedup/store --move-to $(DEMO)/dedup/set-aside > $(DEMO)/dedup/move-log
	$(BIN)/vecmetric dedup --undo "$$(cat $(DEMO)/dedup/move-log)"

# The browser test (tests/serve/test_browser.py) drives Debian's chromium through playwright (no browser download).
# Installed when missing and apt-get is usable as root; otherwise one line says the test will skip.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "no chromium (as root: apt-get install chromium): the browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/embed_throughput.py
	$(BIN)/python benchmarks/index_bench.py
	$(BIN)/python benchmarks/cli_latency.py
	$(BIN)/python benchmarks/embed_memory.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/ray_engine.py
	$(BIN)/python benchmarks/scale_out.py
	$(BIN)/python benchmarks/cold_search.py
	$(BIN)/python benchmarks/serve_load.py

clean:
	rm -rf $(DEMO) .pytest_cache

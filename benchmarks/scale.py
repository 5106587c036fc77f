"""Scale: embed 100k small images and index 1M vectors on this machine; time and peak memory.

Three measurements, each a fresh ``vecmetric`` subprocess whose whole process tree (the main
process and its DataLoader workers) is sampled every 100 ms from ``/proc/<pid>/status``:

1. ``vecmetric embed`` of 10k, 30k and 100k generated 32x32 PNGs (the smaller folders are
   subsets of the larger, through symbolic links to class folders), to show that embed's peak
   memory does not grow with the number of files;
2. ``vecmetric index`` of a store holding 1M generated vectors (written with ``Store.append``
   in chunks), then recall@10 of the saved index against exact search;
3. ``vecmetric verify --skip-files`` of that 1M-row store.

Image generation and vector generation are timed separately from the commands.

    python benchmarks/scale.py                    # 10k,30k,100k files; 1M vectors of dim 128
    python benchmarks/scale.py --quick            # 1k,3k,10k files; 100k vectors
    python benchmarks/scale.py --files 5000 --vectors 0 --no-write

The default model is a 32 px checkpoint of ``timm:test_efficientnet@random`` written by this
script (the same untrained network, fed 32 px inputs instead of 160 px: about 3x faster on a
CPU); ``--model timm:test_efficientnet@random`` measures the model at its own size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, machine_info, print_table, report
from _memory import run_measured

SECTION = "Scale"
GROWTH_LIMIT = 0.10  # embed peak at the most files over the fewest, minus one
PER_FOLDER = 500


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", default="10000,30000,100000", help="comma list of folder sizes to embed (default: 10000,30000,100000)")
    p.add_argument("--vectors", type=int, default=1_000_000, help="vectors to index; 0 skips (default: 1000000)")
    p.add_argument("--dim", type=int, default=128, help="dimension of the generated vectors (default: 128)")
    p.add_argument("--chunk", type=int, default=100_000, help="rows per Store.append when writing the vectors (default: 100000)")
    p.add_argument("--quick", action="store_true", help="1000,3000,10000 files and 100000 vectors")
    p.add_argument("--model", default=None, help="model spec (default: a 32 px checkpoint of timm:test_efficientnet@random)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: the CLI's default, one per core)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep images and stores here (default: a temporary folder, deleted)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    if args.quick:
        args.files, args.vectors = "1000,3000,10000", 100_000
    args.sizes = sorted(int(s) for s in args.files.split(",") if s.strip()) if args.files else []
    return args


# --- data ----------------------------------------------------------------------------------------


def _write_pngs(job: tuple[str, int, int]) -> int:
    import numpy as np
    from PIL import Image

    folder, start, count = job
    Path(folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        # A smooth 4x4 colour field upsampled, plus noise: distinct images that still compress.
        grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(grid, "RGB").resize((32, 32), Image.BILINEAR), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-8, 9, size=(32, 32, 1), dtype=np.int16), 0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(os.path.join(folder, f"img_{i:07d}.png"), compress_level=1)
    return count


def make_images(root: Path, count: int) -> float:
    """``count`` 32x32 PNGs in class folders of PER_FOLDER under ``root/all``; returns seconds spent."""
    from multiprocessing import get_context

    jobs = []
    for start in range(0, count, PER_FOLDER):
        folder = root / "all" / f"class_{start // PER_FOLDER:04d}"
        n = min(PER_FOLDER, count - start)
        if not folder.is_dir() or len(os.listdir(folder)) != n:
            jobs.append((str(folder), start, n))
    started = time.perf_counter()
    if jobs:
        with get_context("fork").Pool(min(2, os.cpu_count() or 1)) as pool:
            list(pool.imap_unordered(_write_pngs, jobs))
    return time.perf_counter() - started


def subset(root: Path, n: int) -> Path:
    """A folder that holds the first ``n`` images: symbolic links to whole class folders."""
    folder = root / f"first-{n}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for k in range((n + PER_FOLDER - 1) // PER_FOLDER):
        name = f"class_{k:04d}"
        wanted = min(PER_FOLDER, n - k * PER_FOLDER)
        if wanted == PER_FOLDER:
            os.symlink(root / "all" / name, folder / name)
        else:  # a partial class folder: link its first files one by one
            (folder / name).mkdir()
            for file in sorted((root / "all" / name).iterdir())[:wanted]:
                os.symlink(file, folder / name / file.name)
    return folder


def small_checkpoint(folder: Path) -> str:
    from vecmetric.encoders import PreprocessConfig, load_encoder, save_checkpoint

    encoder = load_encoder("timm:test_efficientnet@random", device="cpu")
    preprocess = PreprocessConfig(image_size=32, mean=encoder.preprocess.mean, std=encoder.preprocess.std, crop_pct=1.0)
    save_checkpoint(folder, encoder.model, encoder.architecture, preprocess)
    return str(folder)


def write_vector_store(path: Path, n: int, dim: int, chunk: int) -> tuple[float, "object"]:
    """A store of ``n`` random unit vectors in clusters, written with ``Store.append``; returns (seconds, queries)."""
    import numpy as np
    import pyarrow as pa

    from vecmetric.store import create_store, numpy_to_embeddings, store_schema

    described = {
        "spec": "bench:random",
        "fingerprint": f"bench-random-{dim}",
        "dim": dim,
        "metric": "cosine",
        "architecture": {"source": "bench", "name": "random"},
        "preprocess": {},
    }
    encoder = type("Described", (), {"describe": staticmethod(lambda: dict(described))})()
    if path.exists():
        shutil.rmtree(path)
    store = create_store(path, encoder)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    schema = store_schema(dim)
    started = time.perf_counter()
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        vectors = centres[rng.integers(0, len(centres), size=m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = np.arange(start, start + m, dtype=np.int64)
        table = pa.table(
            {
                "id": pa.array(ids),
                "path": pa.array([f"/bench/{i}.png" for i in range(start, start + m)]),
                "size": pa.array(np.ones(m, dtype=np.int64)),
                "mtime_ns": pa.array(np.zeros(m, dtype=np.int64)),
                "content_hash": pa.array([f"h{i}" for i in range(start, start + m)]),
                "label": pa.array([f"c{i % 1000}" for i in range(start, start + m)]),
                "model": pa.array([described["fingerprint"]] * m),
                "embedding": numpy_to_embeddings(vectors),
            },
            schema=schema,
        )
        store.write_manifest(next_id=start + m)
        store.append(table)
    store.write_manifest(counts={"rows": n})
    seconds = time.perf_counter() - started
    queries = centres[rng.integers(0, len(centres), size=200)] + 0.6 * rng.normal(size=(200, dim)).astype(np.float32)
    return seconds, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def index_recall(store_path: Path, queries, k: int = 10) -> tuple[float, float, float]:
    """recall@k of the saved index against exact search over the store; (recall, index ms/query, exact s)."""
    import numpy as np

    from vecmetric.index import HnswIndex, exact_search, recall_at_k
    from vecmetric.store import embeddings_to_numpy, open_store

    store = open_store(store_path)
    index = HnswIndex.load(store.index_dir)
    started = time.perf_counter()
    labels, _ = index.query(queries, k=k, threads=1)
    per_query_ms = (time.perf_counter() - started) * 1000 / len(queries)
    table = store.read_table(["id", "embedding"])
    data = embeddings_to_numpy(table.column("embedding"))
    ids = table.column("id").to_numpy()
    started = time.perf_counter()
    truth, _ = exact_search(data, queries, k=k, metric="cosine", ids=ids)
    exact_seconds = time.perf_counter() - started
    return recall_at_k(np.asarray(labels), np.asarray(truth)), per_query_ms, exact_seconds


# --- main ------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine_info()
    load_start = os.getloadavg()[0]
    blocks: list[str] = []
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="vm-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.sizes:
            images = work / "images"
            gen_seconds = make_images(images, max(args.sizes))
            print(f"generated {max(args.sizes)} 32x32 PNGs in {gen_seconds:.1f} s", flush=True)
            model = args.model or small_checkpoint(work / "test_efficientnet-32px")
            model_name = args.model or "timm:test_efficientnet@random as a 32 px checkpoint"
            rows, results = [], []
            for n in args.sizes:
                store = work / f"store-{n}"
                if store.exists():
                    shutil.rmtree(store)
                cmd = ["embed", str(subset(images, n)), "--store", str(store), "--model", model, "--device", "cpu"]
                cmd += ["--batch-size", str(args.batch_size), "--quiet", "--json"]
                if args.workers is not None:
                    cmd += ["--workers", str(args.workers)]
                r = run_measured(cmd, REPO_ROOT)
                s = r["summary"]
                assert s.get("embedded") == n and s.get("rows") == n, s
                results.append((n, r))
                rows.append([n, r["seconds"], n / r["seconds"], r["main_peak_mb"], r["worker_peak_mb"], r["tree_rss_mb"], r["procs"]])
                print(f"embed {n}: {r['seconds']:.1f} s, main peak {r['main_peak_mb']:.0f} MB, tree peak {r['tree_rss_mb']:.0f} MB", flush=True)
                shutil.rmtree(store, ignore_errors=True)
            table = print_table(
                f"`vecmetric embed` of generated 32x32 PNGs ({model_name}, batch {args.batch_size})",
                ["files", "seconds", "images/s", "main peak RSS (MB)", "largest worker peak RSS (MB)", "tree peak RSS (MB)", "processes"],
                rows,
            )
            (n0, r0), (n1, r1) = results[0], results[-1]
            growth_main = r1["main_peak_mb"] / r0["main_peak_mb"] - 1
            growth_tree = r1["tree_rss_mb"] / r0["tree_rss_mb"] - 1
            flat = max(growth_main, growth_tree) <= GROWTH_LIMIT
            notes = [
                f"Generating the {max(args.sizes):,} PNGs took {gen_seconds:.1f} s (not counted above; 0 s when they were already there).",
                f"From {n0:,} to {n1:,} files the main process's peak RSS changes by {growth_main:+.1%} and the process tree's by "
                f"{growth_tree:+.1%}: {'flat' if flat else 'GROWS'} (limit +{GROWTH_LIMIT:.0%}).",
                "Peaks: the main process's kernel high-water mark (VmHWM / wait4 ru_maxrss); worker peaks are their VmHWM; "
                "the tree peak is the largest sum of VmRSS over the main process and its DataLoader workers at one 100 ms sample "
                "(shared pages counted once per process).",
            ]
            blocks += [table, "\n".join(f"- {n}" for n in notes)]
        if args.vectors:
            store = work / "vectors"
            write_seconds, queries = write_vector_store(store, args.vectors, args.dim, args.chunk)
            print(f"wrote {args.vectors} vectors in {write_seconds:.1f} s", flush=True)
            r_index = run_measured(["index", "--store", str(store), "--json", "--quiet"], REPO_ROOT)
            print(f"index: {r_index['seconds']:.1f} s, peak {r_index['main_peak_mb']:.0f} MB", flush=True)
            recall, ms_per_query, exact_seconds = index_recall(store, queries)
            r_verify = run_measured(["verify", "--store", str(store), "--skip-files", "--json"], REPO_ROOT)
            ok = r_verify["summary"].get("ok")
            index_bytes = sum(p.stat().st_size for p in (store / "_index").iterdir())
            store_bytes = sum(p.stat().st_size for p in store.glob("part-*.parquet"))
            table = print_table(
                f"{args.vectors:,} vectors of dimension {args.dim} (cosine)",
                ["step", "seconds", "peak RSS (MB)", "result"],
                [
                    ["write the store (Store.append, in-process)", write_seconds, "", f"{args.vectors // args.chunk + (args.vectors % args.chunk > 0)} parts, {store_bytes / 2**20:.0f} MiB"],
                    ["`vecmetric index`", r_index["seconds"], r_index["main_peak_mb"], f"{r_index['summary'].get('count')} vectors, index files {index_bytes / 2**20:.0f} MiB"],
                    ["`vecmetric verify --skip-files`", r_verify["seconds"], r_verify["main_peak_mb"], f"ok={ok}"],
                ],
            )
            notes = [
                f"recall@10 of the saved index (M=16, ef_construction=200, ef=64) against exact search for 200 queries: "
                f"{recall:.4f}; {ms_per_query:.2f} ms per query on one thread (exact search: {exact_seconds:.1f} s for all 200).",
                f"Vectors: unit-normalised points around 1000 random centres (noise 0.6), written in chunks of {args.chunk:,} rows.",
            ]
            print("\n".join(notes), flush=True)
            blocks += [table, "\n".join(f"- {n}" for n in notes)]
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if blocks:
        load = f"- Load average (1 min) at the start and end: {load_start:.1f} and {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        blocks.append(load + " (above the core count, other jobs shared the machine and the times are upper bounds).")
        report(SECTION, blocks, info, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())

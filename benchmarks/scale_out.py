"""The figures docs/SCALE.md scales to 100M images: the single driver's write speed, one shard's build
time and memory against its size, and merged search over 1, 4 and 16 shards against one index.

1. Driver writes: ``RowWriter`` (the one writer of every engine) appends N rows of ``--dim``-d
   vectors to a fresh store in its default 4096-row parts: rows/s and MB/s (Parquet bytes on disk).
2. Shard build: ``build_index`` of one shard over stores of each ``--build-sizes`` rows, each in a
   fresh process (its peak RSS is the shard's build memory): seconds and MB, and a power-law fit
   ``t = a * n^b`` (and a linear fit of memory) that scales them to 1M rows.
3. Merged search: the largest store indexed as 1, 4 and 16 shards; recall@10 against exact search
   at the default ef (64) and ef 128, ms per query one at a time (one thread) and queries/s in a batch.

    python benchmarks/scale_out.py                                  # 2-core sizes: 25k..200k, 512-d
    python benchmarks/scale_out.py --build-sizes 250000,500000,1000000 --search-n 1000000   # a big box
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_info, machine_tag, print_table, report
from index_bench import SyntheticModel, clustered_vectors

BUILD_CHILD = r"""
import json, sys, time
import hnswlib, numpy, pyarrow.compute, pyarrow.dataset  # imported before the baseline: not the build's memory
from vecmetric.index import build_index
from vecmetric.store import open_store

def status(key):  # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) / 1024

store = open_store(sys.argv[1])
before = status("VmRSS")
started = time.perf_counter()
result = build_index(store, shards=1, threads=int(sys.argv[2]))
seconds = time.perf_counter() - started
size = sum(p.stat().st_size for p in store.index_dir.glob("hnsw-*.bin"))
print(json.dumps({"seconds": seconds, "peak_mb": status("VmHWM"), "build_mb": status("VmHWM") - before, "file_mb": size / 2**20, "count": result.count}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=512, help="vector dimension (default: 512, CLIP ViT-B/32's)")
    p.add_argument("--write-rows", type=int, default=200_000, help="rows the driver writes (default: 200000)")
    p.add_argument("--build-sizes", default="25000,50000,100000,200000", help="rows of the one-shard builds (default: 25000,50000,100000,200000)")
    p.add_argument("--search-n", type=int, default=100_000, help="rows of the merged-search comparison (default: 100000)")
    p.add_argument("--shards", default="1,4,16", help="shard counts compared (default: 1,4,16)")
    p.add_argument("--queries", type=int, default=500, help="query vectors (default: 500)")
    p.add_argument("--threads", type=int, default=-1, help="build threads (default: -1, all cores)")
    p.add_argument("--tmp", default=None, help="scratch folder (default: $TMPDIR)")
    p.add_argument("--ray-serve", action="store_true", help="instead: merged search with the shards held by Ray actors (RayShardedIndex, loopback Ray)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def write_rows(path: Path, data, flush_rows: int | None = None):
    """A fresh store holding ``data``, written by ``RowWriter`` as embed writes; returns (store, seconds)."""
    import numpy as np

    from vecmetric.store import FileEntry, RowWriter, create_store

    store = create_store(path, SyntheticModel(data.shape[1], "cosine", 0))
    entries = [FileEntry(f"/photos/class_{i // 1000:05d}/img_{i:09d}.jpg", 245_000 + i % 977, 1_700_000_000_000_000_000 + i, f"class_{i // 1000:05d}") for i in range(len(data))]
    digests = [f"{i:032x}" for i in range(len(data))]
    started = time.perf_counter()
    writer = RowWriter(store, 0, "synthetic-clustered", flush_rows)
    for entry, digest, vector in zip(entries, digests, data):
        writer.add(entry, digest, vector)
    writer.flush()
    store.write_manifest(next_id=writer.next_id, counts={"rows": len(data)})
    seconds = time.perf_counter() - started
    assert store.count() == len(data) and np.array_equal(store.read_table(["id"]).column("id").to_numpy()[:3], [0, 1, 2])
    return store, seconds


def measure_writes(data, tmp: Path) -> tuple[str, dict]:
    store, seconds = write_rows(tmp / "writes", data)
    parquet_mb = sum(p.stat().st_size for p in store.parts()) / 2**20
    vector_mb = data.nbytes / 2**20
    figures = {"rows_per_s": len(data) / seconds, "mb_per_s": parquet_mb / seconds, "parquet_mb": parquet_mb, "seconds": seconds}
    table = print_table(
        f"driver writes ({len(data):,} rows of {data.shape[1]}-d float32, RowWriter, 4096-row parts)",
        ["rows", "seconds", "rows/s", "Parquet MB", "MB/s written", "vector MB/s"],
        [[len(data), seconds, figures["rows_per_s"], parquet_mb, figures["mb_per_s"], vector_mb / seconds]],
    )
    return table, figures


def measure_builds(data, sizes: list[int], tmp: Path, threads: int) -> tuple[str, dict]:
    rows, points = [], []
    for n in sizes:
        store, _ = write_rows(tmp / f"build-{n}", data[:n])
        done = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(store.path), str(threads)], capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        points.append((n, got["seconds"], got["build_mb"], got["file_mb"]))
        rows.append([n, got["seconds"], got["peak_mb"], got["build_mb"], got["file_mb"], got["file_mb"] * 2**20 / n])
        print(f"one shard of {n:,}: {got['seconds']:.1f} s, peak {got['peak_mb']:.0f} MB", flush=True)
    # t = a n^b on log-log, memory = c + d n
    xs, ts = [math.log(p[0]) for p in points], [math.log(p[1]) for p in points]
    b = _slope(xs, ts)
    a = math.exp(sum(ts) / len(ts) - b * sum(xs) / len(xs))
    d = _slope([p[0] for p in points], [p[2] for p in points])
    c = sum(p[2] for p in points) / len(points) - d * sum(p[0] for p in points) / len(points)
    fit = {"a": a, "b": b, "mem_c": c, "mem_d": d, "t_1m": a * 1e6**b, "mem_1m_mb": c + d * 1e6, "file_bytes_per_row": rows[-1][-1]}
    table = print_table("one shard's build (build_index, M 16, ef_construction 200)", ["rows", "seconds", "peak RSS MB", "build MB (peak - before)", "index file MB", "file bytes/row"], rows)
    note = (
        f"Fit over these points: build seconds = {a:.3g} x n^{b:.2f}, so **{fit['t_1m']:,.0f} s for a 1M-row shard** on this machine; "
        f"build memory (peak RSS over the process's RSS before the build) = {c:.0f} MB + {d * 1e6 / 1024:.2f} GB per 1M rows, "
        f"so **{fit['mem_1m_mb'] / 1024:.1f} GB for a 1M-row shard**."
    )
    print(note)
    return table + "\n\n" + note, fit


def _slope(xs, ys) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def measure_search(data, queries, shard_counts: list[int], tmp: Path, threads: int) -> tuple[str, list]:
    from vecmetric.index import build_index, exact_search, load_current_index, recall_at_k

    truth, _ = exact_search(data, queries, k=10, metric="cosine")
    store, _ = write_rows(tmp / "search", data)
    rows = []
    for shards in shard_counts:
        build = build_index(store, shards=shards, rebuild=True, threads=threads).seconds
        index = load_current_index(store)
        for ef in (64, 128):
            labels, _ = index.query(queries, k=10, ef=ef, threads=-1)
            started = time.perf_counter()
            index.query(queries, k=10, ef=ef, threads=-1)
            batch = len(queries) / (time.perf_counter() - started)
            started = time.perf_counter()
            for q in queries[:200]:
                index.query(q[None], k=10, ef=ef, threads=1)
            one = (time.perf_counter() - started) / 200 * 1000
            rows.append([shards, ef, recall_at_k(labels, truth), one, batch, build])
            print(f"{shards} shards, ef {ef}: recall {rows[-1][2]:.4f}, {one:.2f} ms/query, {batch:,.0f} q/s", flush=True)
    table = print_table(
        f"merged search over {len(data):,} rows ({data.shape[1]}-d, {len(queries)} queries, k 10) against exact search",
        ["shards", "ef", "recall@10", "ms/query (1 thread)", "queries/s (batch, all threads)", "build s"],
        rows,
    )
    return table, rows


def measure_served(data, queries, shard_counts: list[int], tmp: Path, threads: int) -> str:
    """Merged search with each shard in a Ray actor on a loopback Ray instance, against the same shards in one process."""
    from vecmetric.index import RayShardedIndex, build_index, exact_search, load_current_index, recall_at_k

    truth, _ = exact_search(data, queries, k=10, metric="cosine")
    store, _ = write_rows(tmp / "served", data)
    rows = []
    for shards in shard_counts:
        build_index(store, shards=shards, rebuild=True, threads=threads)
        local = load_current_index(store)
        started = time.perf_counter()
        with RayShardedIndex(store) as served:
            load = time.perf_counter() - started
            labels, _ = served.query(queries, k=10)
            assert (labels == local.query(queries, k=10, threads=1)[0]).mean() > 0.999
            started = time.perf_counter()
            for q in queries[:100]:
                served.query(q[None], k=10)
            one = (time.perf_counter() - started) / 100 * 1000
            started = time.perf_counter()
            served.query(queries, k=10)
            batch = len(queries) / (time.perf_counter() - started)
        rows.append([shards, recall_at_k(labels, truth), one, batch, load])
        print(f"{shards} shards in actors: {one:.2f} ms/query, {batch:,.0f} q/s, loaded in {load:.1f} s", flush=True)
    return print_table(
        f"merged search over {len(data):,} rows, each shard in a Ray actor (RayShardedIndex, one node, loopback)",
        ["shards", "recall@10 (ef 64)", "ms/query (one at a time)", "queries/s (batch)", "seconds to start actors and load"],
        rows,
    )


def main(argv=None) -> None:
    import numpy as np

    args = parse_args(argv)
    info = machine_info()
    if args.ray_serve:
        data, queries = clustered_vectors(args.search_n, args.dim, max(10, args.search_n // 100), 0, args.queries)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        with tempfile.TemporaryDirectory(prefix="vm-serve-", dir=args.tmp) as tmp:
            table = measure_served(data, queries, [int(s) for s in args.shards.split(",")], Path(tmp), args.threads)
        note = "Each query goes to every shard actor (one Ray call each) and the answers are merged in the caller."
        report(f"Scaling out: shards served by Ray actors ({machine_tag('cpu')})", [table, note], info, write=not args.no_write)
        return
    sizes = [int(s) for s in args.build_sizes.split(",")]
    n = max(args.write_rows, max(sizes), args.search_n)
    data, queries = clustered_vectors(n, args.dim, max(10, n // 100), 0, args.queries)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="vm-scale-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        writes, _ = measure_writes(data[: args.write_rows], tmp)
        builds, fit = measure_builds(data, sizes, tmp, args.threads)
        search, _ = measure_search(data[: args.search_n], queries, [int(s) for s in args.shards.split(",")], tmp, args.threads)
    notes = (
        "Vectors: unit-normalised Gaussian clusters (n/100 centres), as `benchmarks/index_bench.py` draws them. "
        "Each build runs in a fresh process; its peak RSS includes Python, numpy and pyarrow; the build's own memory is the peak over the RSS before it."
    )
    report(f"Scaling out: writes, shard builds, merged search ({machine_tag('cpu')})", [writes, builds, search, notes], info, write=not args.no_write)


if __name__ == "__main__":
    main()

"""Dedup at scale: the near-pair search and grouping over 100k vectors with the index already built.

    python benchmarks/dedup_scale.py                       # 100k x 1280 (the default model's size), cosine
    python benchmarks/dedup_scale.py --n 20000 --no-write

Then the same rows as a store (a synthetic model description, written once to ``--work-dir``, its
index the cached one saved into it as ``build_index`` saves, so it is current): the whole of
``vecmetric dedup --json`` is timed as a fresh process (imports, index load, rows read, search,
groups, printing), and ``dedup_store`` in this process, in a section of its own. ``--no-store``
leaves that out, ``--store-only`` does only that.

The vectors: ``--n`` rows around 2,000 random centres (so that distinct rows have near
neighbours, as photos of similar scenes do), of which ``--dup-share`` are near copies of
another row (that row plus noise, cosine distance about 0.01-0.15) and 1% byte-identical
copies (same content hash and vector). The index is built with vecmetric's ``HnswIndex``
at its defaults (M 16, ef_construction 200) and cached in ``--work-dir``; only
``near_pairs`` + ``build_groups`` are timed (what ``vecmetric dedup`` adds to an indexed store).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import machine_info, machine_tag, print_table, report

SECTION = "Dedup at scale"
STORE_SECTION = "Dedup at scale, the whole command"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="rows (default: 100000)")
    p.add_argument("--dim", type=int, default=1280, help="dimension (default: 1280, the default model's)")
    p.add_argument("--dup-share", type=float, default=0.05, help="share of rows that are near copies (default: 0.05)")
    p.add_argument("--threshold", type=float, default=None, help="distance threshold (default: the default model's)")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vecmetric-dedup-scale", help="index cache")
    p.add_argument("--no-store", action="store_true", help="time the search on arrays only, not the command on a store")
    p.add_argument("--store-only", action="store_true", help="time only the command on a store (its own section of RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def make_vectors(n: int, dim: int, dup_share: float, seed: int = 0):
    """Vectors, content hashes and the planted (copy, source) pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim)).astype(np.float32) * 0.9
    hashes = [f"h{i}" for i in range(n)]
    copies = rng.choice(n, size=int(n * dup_share) + n // 100, replace=False)
    near, exact = copies[: int(n * dup_share)], copies[int(n * dup_share) :]
    sources = rng.choice(np.setdiff1d(np.arange(n), copies), size=len(copies), replace=False)
    src_near, src_exact = sources[: len(near)], sources[len(near) :]
    scale = np.linalg.norm(vectors[src_near], axis=1, keepdims=True) / np.sqrt(dim)
    noise = rng.uniform(0.1, 0.55, size=(len(near), 1)).astype(np.float32)
    vectors[near] = vectors[src_near] + rng.normal(size=(len(near), dim)).astype(np.float32) * scale * noise
    vectors[exact] = vectors[src_exact]
    for c, s in zip(exact.tolist(), src_exact.tolist()):
        hashes[c] = hashes[s]
    return vectors, hashes, list(zip(near.tolist(), src_near.tolist())), list(zip(exact.tolist(), src_exact.tolist()))


def load_or_build_index(folder: Path, vectors, ids):
    from vecmetric.index import HnswIndex, IndexParams

    try:
        index = HnswIndex.load(folder)
        if index.count == len(ids) and index.sidecar.get("dim") == vectors.shape[1]:
            return index, 0.0
    except Exception:  # noqa: BLE001 - no cache yet, or another size: build
        pass
    started = time.perf_counter()
    index = HnswIndex.create(folder, vectors.shape[1], IndexParams(metric="cosine"), len(ids))
    index.add(vectors, ids)
    seconds = time.perf_counter() - started
    index.save()
    return index, seconds


def store_around(folder: Path, vectors, hashes, index_folder: Path):
    """A store of these rows whose index is current: written once (then reused), its index the cached one."""
    import shutil
    from types import SimpleNamespace

    import numpy as np
    import pyarrow as pa

    from vecmetric.index import HnswIndex, index_status
    from vecmetric.store import create_store, numpy_to_embeddings, open_store

    n, dim = vectors.shape
    if (folder / "_manifest.json").exists():
        store = open_store(folder)
        if store.count() == n and index_status(store).usable:
            return store
    shutil.rmtree(folder, ignore_errors=True)
    model = {"spec": "synthetic:dedup-scale", "fingerprint": f"synthetic-{n}x{dim}", "dim": dim, "metric": "cosine", "architecture": {}, "preprocess": {}}
    store = create_store(folder, SimpleNamespace(describe=lambda: dict(model)))
    for start in range(0, n, 16384):
        ids = np.arange(start, min(n, start + 16384))
        store.append(
            pa.table(
                {
                    "id": pa.array(ids, pa.int64()),
                    "path": [f"/photos/{i:06d}.jpg" for i in ids],
                    "size": pa.array(np.full(len(ids), 1000), pa.int64()),
                    "mtime_ns": pa.array(ids, pa.int64()),
                    "content_hash": [hashes[i] for i in ids],
                    "label": pa.array([None] * len(ids), pa.string()),
                    "model": [model["fingerprint"]] * len(ids),
                    "embedding": numpy_to_embeddings(vectors[ids]),
                }
            )
        )
    store.write_manifest(next_id=n, counts={"rows": n}, roots=["/photos"])
    store.index_dir.mkdir()
    for path in index_folder.iterdir():
        shutil.copy2(path, store.index_dir / path.name)
    index = HnswIndex.load(store.index_dir)
    index.save(store_snapshot=store.snapshot(), model_fingerprint=model["fingerprint"], store_id=store.manifest["store_id"], model_spec=model["spec"], deleted=0)
    assert index_status(store).usable
    return store


def time_store(store, threshold: float) -> list:
    """``vecmetric dedup --json`` as a fresh process, then ``dedup_store`` here: one table row."""
    import resource
    import subprocess

    from vecmetric.dedup import dedup_store

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    load = os.getloadavg()[0]
    command = [sys.executable, "-m", "vecmetric", "dedup", "--store", str(store.path), "--threshold", str(threshold), "--json"]
    cpu_before, started = children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    cli_seconds, cli_cpu = time.perf_counter() - started, children_cpu() - cpu_before
    cpu_before, started = time.process_time(), time.perf_counter()
    found = dedup_store(store.path, threshold=threshold)
    api_seconds, api_cpu = time.perf_counter() - started, time.process_time() - cpu_before
    groups = len(done.stdout.splitlines())
    return [found.rows, store.dim, threshold, groups, len(found.groups), cli_seconds, cli_cpu, api_seconds, api_cpu, round(load, 2)]


def time_arrays(args, threshold: float, vectors, hashes, planted, exact, index, build_seconds) -> list[str]:
    """``near_pairs`` + ``build_groups`` on the arrays, and ``--auto``: the section's table and note."""
    import numpy as np

    from vecmetric.dedup import Rows, auto_threshold, build_groups, near_pairs
    from vecmetric.index import pairwise_distances

    ids = np.arange(args.n, dtype=np.int64)
    d = np.array([pairwise_distances(vectors[a : a + 1], vectors[b : b + 1], "cosine")[0, 0] for a, b in planted[:2000]])
    rows = Rows(ids, [f"/photos/{i:06d}.jpg" for i in range(args.n)], np.full(args.n, 1000), np.arange(args.n), hashes)
    load = os.getloadavg()[0]
    cpu_started = time.process_time()
    started = time.perf_counter()
    pairs = near_pairs(index, vectors, ids, threshold, "cosine")
    pairs_seconds = time.perf_counter() - started
    groups = build_groups(rows, vectors, "cosine", pairs, keep="oldest")
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    found = set(zip(pairs.left.tolist(), pairs.right.tolist()))
    in_group = {m.id: g.group for g in groups for m in g.members}
    planted_inside = [p for p, dist in zip(planted, d) if dist <= threshold]
    direct = sum((min(a, b), max(a, b)) in found for a, b in planted_inside[:2000]) / max(1, len(planted_inside[:2000]))
    grouped = sum(in_group.get(a, -1) == in_group.get(b, -2) for a, b in planted + exact) / len(planted + exact)
    rows_out = [[args.n, args.dim, threshold, len(pairs), pairs.capped, len(groups), f"{direct:.4f}", f"{grouped:.4f}", pairs_seconds, total - pairs_seconds, total, cpu, round(load, 2)]]
    table = print_table(
        "near-pair search and grouping with the index built",
        ["rows", "dim", "threshold", "pairs", "capped rows", "groups", "planted pairs within threshold found", "planted copies grouped", "pairs s", "groups s", "total s", "CPU s", "load"],
        rows_out,
    )
    started = time.perf_counter()
    auto = auto_threshold(index, vectors, ids, hashes, "cosine")
    auto_seconds = time.perf_counter() - started
    built = f"built in {build_seconds:.0f} s, not part of the time" if build_seconds else "cached from an earlier run"
    note = (
        f"{len(planted)} near copies planted (cosine distance to their source: median {np.median(d):.3f}, max {d.max():.3f}) "
        f"and {len(exact)} byte-identical ones. Index: vecmetric's HnswIndex at its defaults (M 16, ef_construction 200, "
        f"ef 64), {built}. 'planted pairs within threshold found': the share of the planted pairs closer than the threshold "
        "that the range search returned (HNSW is approximate); 'planted copies grouped': the share of all planted copies in "
        "their source's group (one beyond the threshold can still join through another row). `--auto` on these vectors "
        f"({auto.details['sampled']:,} rows sampled, {auto_seconds:.1f} s): valley depth {auto.details['valley_depth']}, classes "
        f"{auto.details['separation']}x apart -> {auto.method} {auto.threshold:.3f}. 'CPU s': CPU time of all the "
        "process's threads; the machine is shared, so with a load average above 2 the wall time runs longer than CPU s / 2."
    )
    return [table, note]


def main(argv=None) -> None:
    import numpy as np

    from vecmetric.dedup import DEFAULT_THRESHOLD

    args = parse_args(argv)
    info = machine_info()
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    vectors, hashes, planted, exact = make_vectors(args.n, args.dim, args.dup_share)
    print(f"planted copies: {len(planted)} near, {len(exact)} byte-identical", file=sys.stderr)
    folder = args.work_dir / f"index-{args.n}x{args.dim}-{args.dup_share}"
    index, build_seconds = load_or_build_index(folder, vectors, np.arange(args.n, dtype=np.int64))
    print(f"index: {index.count} vectors ({'built in %.0f s' % build_seconds if build_seconds else 'cached'})", file=sys.stderr)
    if not args.store_only:
        blocks = time_arrays(args, threshold, vectors, hashes, planted, exact, index, build_seconds)
        report(f"{SECTION} ({args.n:,} x {args.dim}, {machine_tag('cpu')})", blocks, info=info, write=not args.no_write)
    if not args.no_store:
        del index  # the command loads its own copy
        store = store_around(args.work_dir / f"store-{args.n}x{args.dim}-{args.dup_share}", vectors, hashes, folder)
        table = print_table(
            "the whole command on a store of these rows, index current",
            ["rows", "dim", "threshold", "groups printed", "groups (API)", "`vecmetric dedup --json` s", "its CPU s", "`dedup_store` s", "its CPU s", "load"],
            [time_store(store, threshold)],
        )
        note = (
            'The rows of "Dedup at scale" as a store (a synthetic model description; its index the one cached there, saved into '
            "the store as `build_index` saves, so it is current). `vecmetric dedup --json` s: wall time of a fresh process "
            "(imports, index load, reading the rows and their vectors from Parquet, the search, groups, printing). `dedup_store` "
            "s: the same in this process, imports done. CPU s: CPU time of all their threads, which other work on the machine "
            "inflates less than the wall time; the search (mostly hnswlib queries, 50 of the 57 CPU s) runs on both cores, so on a quiet machine "
            'the wall time is near 0.6 of the CPU time, as in "Dedup at scale" (30.7 s for 51.2 CPU s at load 1.8).'
        )
        report(f"{STORE_SECTION} ({args.n:,} x {args.dim}, {machine_tag('cpu')})", [table, note], info=info, write=not args.no_write)


if __name__ == "__main__":
    main()

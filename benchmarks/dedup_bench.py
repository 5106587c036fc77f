"""Near-duplicate detection on real photos: vecmetric's dedup core against imagededup's PHash and DHash.

    python benchmarks/dedup_bench.py                 # builds the set (dedup_data.py), embeds, scores, writes RESULTS.md
    python benchmarks/dedup_bench.py --no-write --imagededup-python ''    # vecmetric only

Ground truth by construction (``dedup_data.py``): 52 originals with 5 transformed copies each and
16 distractors. Every method is scored on unordered pairs of files: precision, recall and F1
against the 780 true pairs. vecmetric reports groups, so its pairs are every pair inside a group;
imagededup reports a list of duplicates per file, scored as it is (as a user of ``find_duplicates``
sees it) and, for a like-for-like comparison, closed transitively into groups.

vecmetric: the default model (EfficientNet-Lite0, cosine) embeds the folder into a fresh store,
``build_index`` indexes it, then ``near_pairs`` + ``build_groups`` run at the default threshold,
at ``--auto``'s and over a sweep. imagededup runs in its own venv (``--imagededup-python``) through
``_imagededup_run.py``, each method with every default; its CNN is tried and reported.
``pip install imagededup`` pulls torch, whose PyPI build for Linux brings several GB of CUDA
libraries, so the venv is made without it (the hashes do not use torch)::

    python3 -m venv /work/venvs/imagededup
    /work/venvs/imagededup/bin/pip install --no-deps imagededup==0.3.3.post2
    /work/venvs/imagededup/bin/pip install numpy scipy pywavelets pillow tqdm scikit-learn matplotlib
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BENCH_DIR, machine_info, machine_tag, print_table, report
from dedup_data import DEFAULT_OUT, KINDS, materialise, truth_pairs

SECTION = "Near duplicates"
IMAGEDEDUP_PYTHON = "/work/venvs/imagededup/bin/python"
SWEEP = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", type=Path, default=Path(os.environ.get("VECMETRIC_DEDUP_SOURCES", "/work/.mirror")), help="see dedup_data.py")
    p.add_argument("--data", type=Path, default=DEFAULT_OUT, help=f"the set's folder (default: {DEFAULT_OUT})")
    p.add_argument("--imagededup-python", default=IMAGEDEDUP_PYTHON, help=f"python of imagededup's venv; '' skips it (default: {IMAGEDEDUP_PYTHON})")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def score(predicted: set, truth: set) -> tuple[float, float, float]:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def group_pairs(groups) -> set:
    return {frozenset((Path(a.path).name, Path(b.path).name)) for g in groups for a, b in itertools.combinations(g.members, 2)}


def closed(pairs: set) -> set:
    """Every pair inside the connected components of ``pairs``: imagededup's answer read as groups."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in (tuple(p) for p in pairs):
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for x in list(parent):
        groups.setdefault(find(x), []).append(x)
    return {frozenset(p) for g in groups.values() for p in itertools.combinations(g, 2)}


def kind_recall(predicted: set, truth: dict) -> dict[str, float]:
    """Per kind of copy: the share of copies paired with their original."""
    hits: dict[str, list[bool]] = {}
    for group in truth["groups"]:
        for m in group["members"][1:]:
            hits.setdefault(m["kind"], []).append(frozenset((group["original"], m["file"])) in predicted)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def embed_set(images: Path, store_dir: Path):
    """Embed with the default model and index; returns (store, seconds to embed, seconds to index)."""
    from vecmetric.index import build_index
    from vecmetric.store import embed_directory, open_store

    started = time.perf_counter()
    embed_directory(images, store_dir, model="default")
    embedded = time.perf_counter() - started
    store = open_store(store_dir)
    started = time.perf_counter()
    build_index(store)
    return store, embedded, time.perf_counter() - started


def run_vecmetric(store, threshold: float):
    """(groups, seconds, (index, rows, vectors)) of ``find_duplicates`` on the store's index."""
    from vecmetric.dedup import Rows, find_duplicates
    from vecmetric.index import load_current_index
    from vecmetric.store import embeddings_to_numpy

    table = store.read_table(["id", "path", "size", "mtime_ns", "content_hash", "embedding"])
    rows, vectors = Rows.from_table(table), embeddings_to_numpy(table.column("embedding"))
    index = load_current_index(store)
    started = time.perf_counter()
    groups = find_duplicates(index, rows, vectors, threshold).groups
    return groups, time.perf_counter() - started, (index, rows, vectors)


def auto_on_distinct(vectors, rows, truth, folder: Path):
    """--auto on the 68 distinct photos alone (no copies): the fallback should show."""
    import numpy as np

    from vecmetric.dedup import auto_threshold
    from vecmetric.index import HnswIndex, IndexParams

    keep = {g["original"] for g in truth["groups"]} | set(truth["distractors"])
    pick = np.array([i for i, p in enumerate(rows.paths) if Path(p).name in keep])
    index = HnswIndex.create(folder, vectors.shape[1], IndexParams(), len(pick))
    index.add(vectors[pick], rows.ids[pick])
    return auto_threshold(index, vectors[pick], rows.ids[pick], [rows.content_hashes[i] for i in pick], "cosine")


def run_imagededup(python: str, images: Path) -> dict:
    done = subprocess.run([python, str(BENCH_DIR / "_imagededup_run.py"), str(images), "--methods", "PHash,DHash,CNN"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"imagededup failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main(argv=None) -> None:
    from vecmetric.dedup import DEFAULT_THRESHOLD, auto_threshold

    args = parse_args(argv)
    info = machine_info()
    truth = materialise(args.data, args.sources)
    images = args.data / "images"
    pairs = truth_pairs(truth)
    results, kinds, notes = [], {}, []
    with tempfile.TemporaryDirectory(prefix="vecmetric-dedup-bench-") as tmp:
        store, embed_s, index_s = embed_set(images, Path(tmp) / "store")
        groups, seconds, (index, rows, vectors) = run_vecmetric(store, DEFAULT_THRESHOLD)
        predicted = group_pairs(groups)
        keepers_ok = sum(Path(g.keeper.path).name in {t["original"] for t in truth["groups"]} for g in groups)
        results.append([f"vecmetric, default threshold {DEFAULT_THRESHOLD:g}", *score(predicted, pairs), len(groups), seconds, embed_s + index_s + seconds])
        kinds["vecmetric default"] = kind_recall(predicted, truth)
        auto = auto_threshold(index, vectors, rows.ids, rows.content_hashes, index.metric)
        auto_groups, auto_s, _ = run_vecmetric(store, auto.threshold)
        results.append([f"vecmetric, --auto ({auto.method}: {auto.threshold:.3f})", *score(group_pairs(auto_groups), pairs), len(auto_groups), auto_s, embed_s + index_s + auto_s])
        kinds["vecmetric --auto"] = kind_recall(group_pairs(auto_groups), truth)
        sweep = [[t, *score(group_pairs(run_vecmetric(store, t)[0]), pairs)] for t in SWEEP]
        alone = auto_on_distinct(vectors, rows, truth, Path(tmp) / "distinct")
    notes.append(
        f"vecmetric's seconds: `find_duplicates` (`near_pairs` + `build_groups`) on the built index; end to end adds embedding the 328 files with the "
        f"default model ({embed_s:.1f} s) and building the index ({index_s:.2f} s). {keepers_ok} of {len(groups)} groups at the default "
        f"threshold keep their original (`--keep oldest`: originals are the oldest files)."
    )
    notes.append(
        f"`--auto` on this store: nearest-neighbour distances (to another file's bytes) of all 328 rows, valley depth "
        f"{auto.details['valley_depth']}, classes {auto.details['separation']}x apart -> {auto.method} {auto.threshold:.3f} (median "
        f"random-pair distance {auto.median_random:.3f}). On the 68 distinct photos alone (no copies): valley depth "
        f"{alone.details['valley_depth']}, classes {alone.details['separation']}x apart -> {alone.method} {alone.threshold:.3f}, "
        "below every distinct pair, so a store without duplicates gets no false groups."
    )
    if args.imagededup_python:
        found = run_imagededup(args.imagededup_python, images)
        for name, out in found["methods"].items():
            if "error" in out:
                notes.append(f"imagededup {found['version']} {name}: not run ({out['error']}). It cannot run offline in any case: its "
                             "model's weights (torchvision MobileNetV3-small) are downloaded at first use; on this machine that download "
                             "fails (URLError: name or service not known, tried with torchvision in vecmetric's venv).")
                continue
            predicted = {frozenset(p) for p in out["pairs"]}
            results.append([f"imagededup {found['version']} {name} (Hamming <= 10, default)", *score(predicted, pairs), "-", out["seconds"], out["seconds"]])
            results.append([f"imagededup {name}, its pairs closed into groups", *score(closed(predicted), pairs), "-", out["seconds"], out["seconds"]])
            kinds[f"imagededup {name}"] = kind_recall(predicted, truth)
    blocks = [
        print_table("duplicate pairs on 328 real photos (780 true pairs)", ["method", "precision", "recall", "F1", "groups", "seconds", "end to end s"], results),
        print_table("recall of copy-original pairs by kind of copy", ["method", *KINDS], [[m, *[v.get(k, float("nan")) for k in KINDS]] for m, v in kinds.items()]),
        print_table("vecmetric over thresholds (default model, cosine)", ["threshold", "precision", "recall", "F1"], sweep),
        *notes,
    ]
    report(f"{SECTION} ({machine_tag('cpu')})", blocks, info=info, write=not args.no_write)


if __name__ == "__main__":
    main()

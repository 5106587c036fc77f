"""Which loss retrieves unseen classes best? Every ``--loss`` (and the hyperbolic head) on two class-disjoint sets.

Sets (train on some alphabets, test on others: no test class is seen in training):

* ``omniglot``: shared/data/omniglot_small; train on Balinese, Early_Aramaic, Korean, Sanskrit (128 classes),
  test on Greek, Latin, Tagalog (67 classes).
* ``omniglot-eval``: Omniglot's evaluation set (20 alphabets that the background set, and so omniglot_small,
  does not have), from ``images_evaluation.npz`` of the public repository bitsandscraps/omniglot (a numpy copy of
  brendenlake/omniglot's ``python/images_evaluation.zip``, MIT; ``--omniglot-eval-npz``, checked by its SHA-256).
  Train on Angelic, Atemayar_Qelisayer, Atlantean, Aurek-Besh, Avesta (124 classes), test on the 5 largest others
  (Gurmukhi, Kannada, Malayalam, Oriya, Tibetan: 221 classes).

Every configuration gets the same budget: the default encoder (EfficientNet-Lite0, ImageNet) with a 128-d head,
the same image size, epochs, batch (8 classes x 4), optimizer and schedule, 20% of the training classes held out to
pick the best epoch, and ``--seeds`` seeds. Each finished run appends one JSON line to the results file, so an
interrupted benchmark continues where it stopped (``--work`` keeps the data and the results).

The hyperbolic runs also measure which index metric gives the best candidates for exact Poincare re-ranking.

Usage:
    python benchmarks/losses.py --omniglot-eval-npz images_evaluation.npz [--image-size 32] [--epochs 4] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, report

DEFAULT_OMNIGLOT = REPO_ROOT.parent / "shared" / "data" / "omniglot_small"
EVAL_NPZ_SHA256 = "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276"
TITLE = "Losses on unseen classes (2-core CPU)"
# Training sets of about 125 classes (100 trained on, 25 held out to pick the epoch) keep 21 runs per set within an
# hour of a shared 2-core CPU.
SETS = {
    "omniglot": (("Balinese", "Early_Aramaic", "Korean", "Sanskrit"), ("Greek", "Latin", "Tagalog")),
    "omniglot-eval": (
        ("Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta"),
        ("Gurmukhi", "Kannada", "Malayalam", "Oriya", "Tibetan"),
    ),
}
# Omniglot's evaluation alphabets in the order of their character numbers (0965 onwards) and their sizes.
EVAL_ALPHABETS = (
    ("Angelic", 20), ("Atemayar_Qelisayer", 26), ("Atlantean", 26), ("Aurek-Besh", 26), ("Avesta", 26), ("Ge_ez", 26),
    ("Glagolitic", 45), ("Gurmukhi", 45), ("Kannada", 41), ("Keble", 26), ("Malayalam", 47), ("Manipuri", 40),
    ("Mongolian", 30), ("Old_Church_Slavonic_(Cyrillic)", 45), ("Oriya", 46), ("Syriac_(Serto)", 23), ("Sylheti", 28),
    ("Tengwar", 25), ("Tibetan", 42), ("ULOG", 26),
)
CONFIGS = {
    "triplet": {"loss": "triplet"},
    "multi-similarity": {"loss": "multi-similarity"},
    "contrastive": {"loss": "contrastive"},
    "proxy-anchor": {"loss": "proxy-anchor"},
    "normalized-softmax": {"loss": "normalized-softmax"},
    "supcon": {"loss": "supcon"},
    "hyperbolic (supcon)": {"loss": "supcon", "geometry": "hyperbolic"},
}
KEYS = ("mean_average_precision_at_r", "precision_at_1", "r_precision")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--omniglot", type=Path, default=DEFAULT_OMNIGLOT, help="omniglot_small folder")
    parser.add_argument("--omniglot-eval-npz", type=Path, default=None, help="images_evaluation.npz (see the docstring)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated sets (default: both)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations (default: all)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4, help="backbone learning rate; head 10x, proxies 100x")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared 2-core machine two threads "
                        "trained 11x slower than one, 8 against 89 images/s, as OpenMP threads wait on each other)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vecmetric-losses-bench")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--note", default="", help="a paragraph added to the results")
    parser.add_argument("--quick", action="store_true", help="a few classes, 1 epoch, 1 seed: checks the script, measures nothing")
    return parser.parse_args()


def link_omniglot(data: Path, alphabets, target: Path, limit: int | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name.split("__")[0] in alphabets)[:limit]
    for name in names:
        if not (target / name).exists():
            (target / name).symlink_to((data / name).resolve(), target_is_directory=True)


def extract_eval_set(npz: Path, target: Path) -> Path:
    """Write Omniglot's evaluation set as PNG class folders ``Alphabet__characterNN`` (once)."""
    import numpy as np
    from PIL import Image

    done = target / ".complete"
    if done.exists():
        return target
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    if digest != EVAL_NPZ_SHA256:
        sys.exit(f"{npz}: SHA-256 {digest}, expected {EVAL_NPZ_SHA256}")
    images = np.load(npz)["images"]  # (659, 20, 105, 105) bool, True = white paper
    assert images.shape[0] == sum(size for _, size in EVAL_ALPHABETS), images.shape
    index = 0
    for alphabet, size in EVAL_ALPHABETS:
        for character in range(1, size + 1):
            folder = target / f"{alphabet}__character{character:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for drawer, image in enumerate(images[index], start=1):
                Image.fromarray(image.astype(np.uint8) * 255).save(folder / f"{drawer:02d}.png")
            index += 1
    done.write_text("ok\n")
    return target


def prepare_set(name: str, args) -> tuple[Path, Path]:
    source = args.omniglot if name == "omniglot" else extract_eval_set(args.omniglot_eval_npz, args.work / "omniglot_eval")
    limit = 12 if args.quick else None
    train_alphabets, test_alphabets = SETS[name]
    train_dir, test_dir = args.work / name / "train", args.work / name / "test"
    link_omniglot(source, train_alphabets, train_dir, limit)
    link_omniglot(source, test_alphabets, test_dir, limit)
    return train_dir, test_dir


class EpochLines:
    """Prints each epoch's line to stderr (what ``vecmetric train`` logs)."""

    def __init__(self, prefix: str):
        from vecmetric.progress import Reporter

        self.reporter = type("R", (Reporter,), {"log": lambda _, m: print(f"  {prefix} {m}", file=sys.stderr, flush=True)})()


def budget(args) -> str:
    """What every run of one benchmark shares; records of another budget are not mixed in."""
    return f"{args.image_size}px-{args.epochs}ep-lr{args.lr:g}" + ("-quick" if args.quick else "")


def run_one(set_name: str, config: str, seed: int, train_dir: Path, test_dir: Path, args) -> dict:
    from vecmetric.evaluate import evaluate
    from vecmetric.train import TrainOptions, train

    run_dir = args.work / "runs" / f"{set_name}-{config.replace(' ', '_')}-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    options = TrainOptions(
        model="default", embedding_dim=128, image_size=args.image_size, epochs=1 if args.quick else args.epochs, lr=args.lr,
        batch_size=32, m_per_class=4, flip=False, seed=seed, workers=args.workers, device="cpu", **CONFIGS[config],
    )
    started = time.perf_counter()
    load = os.getloadavg()[0]
    result = train(train_dir, run_dir, options, EpochLines(f"{set_name}/{config}/{seed}").reporter)
    scores = evaluate(test_dir, str(run_dir), device="cpu", workers=args.workers)
    record = {
        "set": set_name, "config": config, "seed": seed, "budget": budget(args), **{k: scores[k] for k in KEYS},
        "images_per_s": result.train_images_per_s, "best_epoch": result.best_epoch, "seconds": time.perf_counter() - started,
        "load": load, "num_classes": scores["num_classes"],
    }
    if CONFIGS[config].get("geometry") == "hyperbolic" and seed == 0:
        record["candidates"] = candidate_recall(run_dir, test_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return record


def candidate_recall(run_dir: Path, test_dir: Path) -> dict:
    """How well each index metric's order keeps the exact Poincare top 10 of the unseen-class embeddings.

    ``exact_<metric>_<K>``: recall@10 of the Poincare top 10 among the metric's exact top K;
    ``hnsw_l2``: recall@10 after re-ranking ``poincare_candidate_count(10, 64)`` HNSW (l2, ef 64) candidates.
    """
    import numpy as np

    from vecmetric.distances import pairwise_distances, poincare_candidate_count, poincare_distances, rerank_poincare
    from vecmetric.encoders import load_encoder
    from vecmetric.evaluate import scan_class_folders
    from vecmetric.index._hnsw import HnswIndex, IndexParams

    encoder = load_encoder(str(run_dir), device="cpu")
    paths = scan_class_folders(test_dir, check_images=False).paths
    vectors = np.concatenate([encoder.embed_paths(paths[i : i + 256]) for i in range(0, len(paths), 256)])
    c = encoder.geometry.curvature
    exact = poincare_distances(vectors, vectors, c)
    np.fill_diagonal(exact, np.inf)
    truth = np.argsort(exact, axis=1)[:, :10]
    out = {"norm_ratio_max": float(np.linalg.norm(vectors, axis=1).max() * c**0.5)}
    for metric in ("l2", "cosine"):
        d = pairwise_distances(vectors, vectors, metric)
        np.fill_diagonal(d, np.inf)
        order = np.argsort(d, axis=1)
        for k in (10, 20, 40, 64):
            out[f"exact_{metric}_{k}"] = float(np.mean([len(set(t) & set(o[:k])) / 10 for t, o in zip(truth, order)]))
    index = HnswIndex.create(run_dir, vectors.shape[1], IndexParams(metric="poincare"), len(vectors))
    index.add(vectors, np.arange(len(vectors)))
    fetch = poincare_candidate_count(10, 64) + 1  # + the query itself
    ids, _ = index.query(vectors, fetch)
    ids = np.where(ids == np.arange(len(vectors))[:, None], -1, ids)  # leave the query out, as above
    found, _ = rerank_poincare(vectors, ids, vectors[np.maximum(ids, 0)], 10, c)
    out["hnsw_l2"] = float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))
    out["candidates"] = fetch - 1
    return out


def summarise(records: list[dict], sets: list[str], configs: list[str]) -> tuple[list[str], str]:
    """Tables (mean +- sd over seeds per set, and the average over the sets) and the default-loss decision."""
    from _common import markdown_table

    def cell(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    blocks = []
    for set_name in sets:
        rows = []
        for config in ["untrained", *configs]:
            runs = [r for r in records if r["set"] == set_name and r["config"] == config]
            if runs:
                speed = [r["images_per_s"] for r in runs if r.get("images_per_s")]
                rows.append([config, len(runs), *[cell([r[k] for r in runs]) for k in KEYS], f"{statistics.mean(speed):.0f}" if speed else ""])
        blocks.append(f"**{set_name}** (unseen classes: {next((r['num_classes'] for r in records if r['set'] == set_name), '?')})\n\n"
                      + markdown_table(["configuration", "seeds", "MAP@R", "P@1", "R-precision", "train images/s"], rows))
    per_seed = {}  # config -> [MAP@R averaged over the sets, per seed]
    for config in configs:
        seeds = sorted({r["seed"] for r in records if r["config"] == config})
        values = []
        for seed in seeds:
            runs = [r for r in records if r["config"] == config and r["seed"] == seed]
            if len(runs) == len(sets):
                values.append(statistics.mean(r["mean_average_precision_at_r"] for r in runs))
        if values:
            per_seed[config] = values
    rows = [[c, cell(v)] for c, v in sorted(per_seed.items(), key=lambda kv: -statistics.mean(kv[1]))]
    blocks.append("MAP@R averaged over both sets (mean ± sd over seeds):\n\n" + markdown_table(["configuration", "MAP@R"], rows))
    losses = {c: v for c, v in per_seed.items() if "geometry" not in CONFIGS[c] and len(v) > 1}
    decision = "not enough seeds to decide"
    if "triplet" in losses:
        best = max(losses, key=lambda c: statistics.mean(losses[c]))
        gain = statistics.mean(losses[best]) - statistics.mean(losses["triplet"])
        sd = max(statistics.stdev(losses[best]), statistics.stdev(losses["triplet"]))
        if best != "triplet" and gain > sd:
            decision = f"default loss: **{best}** (MAP@R +{gain:.4f} over triplet on average over both sets, more than one sd of the seeds, {sd:.4f})"
        else:
            decision = f"default loss stays **triplet** (best other: {best}, +{gain:.4f}, not more than one sd of the seeds, {sd:.4f})"
    blocks.append(decision)
    candidates = [(r["set"], r["candidates"]) for r in records if r.get("candidates")]
    if candidates:
        rows = []
        for set_name, c in candidates:
            rows.append([set_name, f"{c['norm_ratio_max']:.2f}", *[f"{c[f'exact_{m}_{k}']:.4f}" for m in ("l2", "cosine") for k in (10, 20, 40)],
                         f"{c['hnsw_l2']:.4f} ({c['candidates']})"])
        blocks.append(
            "Index candidates for the hyperbolic head (seed 0, every unseen-class image as a query): recall@10 of the exact "
            "Poincare top 10 among each metric's exact top K, and after re-ranking the candidates an l2 HNSW index gives "
            "(`poincare_candidate_count(10, ef=64)` of them). `max norm x sqrt(c)` is the largest embedding norm as a fraction "
            "of the ball's radius.\n\n"
            + markdown_table(["set", "max norm x sqrt(c)", "l2 K=10", "l2 K=20", "l2 K=40", "cosine K=10", "cosine K=20", "cosine K=40",
                              "HNSW l2 + re-rank (candidates)"], rows)
        )
    return blocks, decision


def read_records(work: Path, quick: bool) -> list[dict]:
    """Every finished run of every set (one results file per set, so two sets can run side by side)."""
    records = []
    for path in sorted(work.glob("results-quick-*.jsonl" if quick else "results-[!q]*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def main() -> None:
    import torch

    args = parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    sets, configs = args.sets.split(","), args.configs.split(",")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    if "omniglot-eval" in sets and args.omniglot_eval_npz is None and not (args.work / "omniglot_eval" / ".complete").exists():
        sys.exit("--omniglot-eval-npz is needed for the omniglot-eval set (see the docstring)")
    records = [r for r in read_records(args.work, args.quick) if r.get("budget") == budget(args)]
    done = {(r["set"], r["config"], r["seed"]) for r in records}
    for set_name in sets:
        results = args.work / f"results-{'quick-' if args.quick else ''}{set_name}.jsonl"
        train_dir, test_dir = prepare_set(set_name, args)
        jobs = [(set_name, "untrained", 0)] + [(set_name, c, s) for s in seeds for c in configs]
        for job in jobs:
            if job in done:
                continue
            print(f"{job}: load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            if job[1] == "untrained":
                from vecmetric.evaluate import evaluate

                scores = evaluate(test_dir, "default", device="cpu", workers=args.workers, image_size=args.image_size)
                record = {"set": set_name, "config": "untrained", "seed": 0, "budget": budget(args), **{k: scores[k] for k in KEYS},
                          "num_classes": scores["num_classes"]}
            else:
                record = run_one(*job, train_dir, test_dir, args)
            records.append(record)
            with open(results, "a") as fh:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            print(json.dumps(record), flush=True)
    records = [r for r in read_records(args.work, args.quick) if r.get("budget") == budget(args)]
    sets = [name for name in SETS if any(r["set"] == name for r in records)]
    blocks, decision = summarise(records, sets, configs)
    blocks.insert(0, (
        f"Train on some alphabets, test on others (see the script's docstring for the sets). Every configuration: the default "
        f"encoder (EfficientNet-Lite0, ImageNet) with a 128-d head, {args.image_size} px images, {args.epochs} epochs, batches of "
        f"8 classes x 4, AdamW (backbone lr {args.lr:g}, head 10x, proxies 100x), 5% warm-up then cosine decay, the loss's "
        f"library defaults, best epoch by validation MAP@R on 20% held-out training classes, {args.threads} torch thread(s); "
        f"MAP@R, P@1 and R-precision on the unseen test classes, every image querying all the others (exact k-NN in the "
        f"model's metric: the Poincare distance for the hyperbolic head). Mean ± standard deviation over the seeds."
    ))
    if args.note:
        blocks.append(args.note)
    print("\n\n".join(blocks))
    if not args.quick and not args.no_write:
        report(TITLE, blocks)


if __name__ == "__main__":
    main()

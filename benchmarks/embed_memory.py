"""Peak memory of ``vecmetric embed`` as the folder grows: it must stay flat.

For each folder size, makes that many small JPEGs, runs ``vecmetric embed`` into a fresh
store in a subprocess, and samples the whole process tree (the main process and its
DataLoader workers) every 50 ms from /proc:

- tree PSS: proportional set size summed over the tree (shared pages such as torch's
  libraries, mapped by every forked worker, are counted once in total);
- tree RSS: resident set size summed over the tree (counts shared pages once per process);
- main peak RSS: the kernel's own high-water mark of the main process (``wait4`` rusage).

Target (issue 2): peak memory does not grow with the folder size.

    python benchmarks/embed_memory.py                                   # 500, 2000, 5000 images
    python benchmarks/embed_memory.py --sizes 5000,20000 --model default   # a big box
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import REPO_ROOT, machine_info, machine_tag, make_photos, print_table, report
from _memory import run_measured

GROWTH_LIMIT = 0.10  # peak at the largest size over the smallest size, minus one


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="500,2000,5000", help="comma list of folder sizes (default: 500,2000,5000)")
    p.add_argument("--model", default="timm:test_efficientnet@random", help="model spec (default: timm:test_efficientnet@random, tiny and fast)")
    p.add_argument("--image-size", default="320x240", help="WxH of the JPEGs (default: 320x240)")
    p.add_argument("--device", default="auto", help="device (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: the CLI's default)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--data-dir", type=Path, help="keep the JPEGs here and reuse them (default: a temporary folder)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def measure(folder: Path, store: Path, args) -> dict:
    cmd = ["embed", str(folder), "--store", str(store), "--model", args.model, "--device", args.device]
    cmd += ["--batch-size", str(args.batch_size), "--quiet", "--json"]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    result = run_measured(cmd, REPO_ROOT)
    return {
        "embedded": result["summary"]["embedded"],
        "seconds": result["seconds"],
        "main_peak_mb": result["main_peak_mb"],
        "tree_pss_mb": result["tree_pss_mb"],
        "tree_rss_mb": result["tree_rss_mb"],
        "procs": result["procs"],
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine_info()
    sizes = [int(s) for s in args.sizes.split(",")]
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="vm-bench-mem-") as tmp:
        root = args.data_dir or Path(tmp)
        for n in sizes:
            folder = root / f"jpeg-{width}x{height}-{n}"
            make_photos(folder, n, size=(width, height), quality=90)
            r = measure(folder, Path(tmp) / f"store-{n}", args)
            results.append((n, r))
            print(f"{n} images: main {r['main_peak_mb']:.0f} MB, tree PSS {r['tree_pss_mb']:.0f} MB, {r['seconds']:.1f} s", flush=True)
            rows.append([n, r["embedded"], r["main_peak_mb"], r["tree_pss_mb"], r["tree_rss_mb"], r["procs"], r["embedded"] / r["seconds"]])
    table = print_table(
        f"peak memory of `vecmetric embed`, MB ({args.model}, {width}x{height} JPEGs, batch {args.batch_size})",
        ["images", "embedded", "main process peak RSS", "process tree peak PSS", "process tree peak RSS", "processes", "images/s"],
        rows,
    )
    (n0, r0), (n1, r1) = results[0], results[-1]
    growth_main = r1["main_peak_mb"] / r0["main_peak_mb"] - 1
    growth_tree = r1["tree_pss_mb"] / r0["tree_pss_mb"] - 1
    per_1k = (r1["tree_pss_mb"] - r0["tree_pss_mb"]) / max(1, (n1 - n0)) * 1000
    flat = max(growth_main, growth_tree) <= GROWTH_LIMIT
    notes = [
        f"From {n0} to {n1} images the main process peak changes by {growth_main:+.1%} and the tree's peak PSS by "
        f"{growth_tree:+.1%} ({per_1k:+.2f} MB per 1000 images): {'flat' if flat else 'GROWS'} "
        f"(limit +{GROWTH_LIMIT:.0%}).",
        "Each run is a fresh `vecmetric embed` subprocess into a fresh store; the tree is sampled every 50 ms "
        "(a short spike between samples can be missed; the main process's kernel high-water mark cannot).",
    ]
    report(
        f"Embed peak memory ({machine_tag(args.device)})",
        [table, "\n".join(f"- {n}" for n in notes)],
        info,
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()

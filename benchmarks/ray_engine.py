"""The Ray engine's overhead on one machine: ``ray_embed_outcomes`` against the local engine, same folder, one run.

Makes N natural-looking JPEGs, starts a loopback-only Ray instance (timed: the startup a
``--engine ray`` run without ``--address`` pays), then alternates, ``--repeats`` times each:

1. local: ``embed_directory`` into a fresh store (DataLoader workers decode, this process embeds);
2. ray: ``ray_embed_outcomes`` over the same files, every outcome consumed (decode tasks, one
   actor pool; the rows are not written, which costs the local run well under 1% at this size).

Both times run from the call to the last vector and include loading the model (the actors load
their own). Reported: images/s of each (median), the overhead ``local / ray - 1`` (target: under
30%), the time to the first outcome and the ray engine's rate after it (its fixed cost and its
streaming speed apart).

    python benchmarks/ray_engine.py                                  # 200 JPEGs, tiny model
    python benchmarks/ray_engine.py --model default --images 400
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine_info, machine_tag, make_photos, print_table, report

TARGET = 0.30


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200, help="JPEGs in the folder (default: 200)")
    p.add_argument("--image-size", default="320x240", help="WxH of the JPEGs (default: 320x240)")
    p.add_argument("--model", default="timm:test_efficientnet@random", help="model spec (default: timm:test_efficientnet@random)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each engine, alternated (default: 2)")
    p.add_argument("--data-dir", type=Path, help="keep the JPEGs here and reuse them (default: a temporary folder)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def start_local_ray() -> float:
    """Start Ray as the engine does without an address (loopback only); returns the seconds it took."""
    from vecmetric._ray_session import LOOPBACK_ENV as _LOCAL_ENV

    for key, value in _LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    return time.perf_counter() - started


def run_local(folder: Path, store: Path, args) -> float:
    from vecmetric.store import embed_directory

    result = embed_directory(folder, store, model=args.model, device="cpu", precision="fp32", batch_size=args.batch_size)
    return result.embedded / result.seconds


def run_ray(files, args) -> tuple[float, float, float]:
    """(images/s, seconds to the first outcome, images/s after the first outcome)."""
    from vecmetric.engines import ray_embed_outcomes

    started = time.perf_counter()
    outcomes = ray_embed_outcomes(files, frozenset(), args.model, precision="fp32", batch_size=args.batch_size)
    first = None
    count = 0
    for outcome in outcomes:
        assert outcome.vector is not None, outcome
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return count / (end - started), first - started, (count - 1) / max(end - first, 1e-9)


def main(argv=None) -> None:
    args = parse_args(argv)
    width, height = (int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_dir or Path(tmp) / "photos"
        make_photos(folder, args.images, size=(width, height))
        from vecmetric.store import scan_folder

        files = scan_folder(folder).files
        startup = start_local_ray()
        local, ray_runs = [], []
        for i in range(args.repeats):
            local.append(run_local(folder, Path(tmp) / f"store-{i}", args))
            ray_runs.append(run_ray(files, args))
            print(f"run {i + 1}: local {local[-1]:.1f} img/s, ray {ray_runs[-1][0]:.1f} img/s", flush=True)
    local_ips = statistics.median(local)
    ray_ips = statistics.median(r[0] for r in ray_runs)
    rows = [
        ["local (embed_directory)", f"{local_ips:.1f}", "", ""],
        [
            "ray (ray_embed_outcomes)",
            f"{ray_ips:.1f}",
            f"{statistics.median(r[1] for r in ray_runs):.2f}",
            f"{statistics.median(r[2] for r in ray_runs):.1f}",
        ],
    ]
    overhead = local_ips / ray_ips - 1
    title = f"Ray engine overhead, {machine_tag('cpu')}"
    table = print_table(title, ["engine", "images/s", "s to first vector", "images/s after it"], rows)
    notes = (
        f"{args.images} JPEGs {args.image_size}, model `{args.model}`, fp32 on CPU, batch {args.batch_size}, "
        f"median of {args.repeats} alternated runs. Ray startup (loopback, not in the rates): {startup:.2f} s. "
        f"Overhead local/ray - 1 = {overhead:+.0%} (target under {TARGET:.0%})."
    )
    print(notes)
    report(title, [table, notes], machine_info(), write=not args.no_write)


if __name__ == "__main__":
    main()

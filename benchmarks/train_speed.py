"""Training throughput: ``vecmetric train`` against a bare forward-backward loop on pre-decoded tensors.

Both run in this process on the same Omniglot training alphabets, model (the default encoder with a
128-d head), image size, batch, loss, miner and optimizer. ``vecmetric train`` decodes and augments
in its DataLoader workers, runs through Lightning Fabric, and counts active triplets; the bare loop
only steps on four batches decoded beforehand. Each is timed in windows of one epoch's steps, bare
windows before and after training, so both see the same machine state; the ratio compares the
best window of each (the least disturbed) and the medians.

Target (issue 3): vecmetric / bare >= 0.90.

    python benchmarks/train_speed.py                      # 2-core laptop: about 4 minutes
    python benchmarks/train_speed.py --device cuda --epochs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_info, machine_tag, print_table, report
from train_omniglot import DEFAULT_DATA, TRAIN_ALPHABETS, bare_loop, link_classes

TARGET = 0.90


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="omniglot_small folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs, each one timed window (default: 3)")
    p.add_argument("--bare-windows", type=int, default=4, help="bare-loop windows, half before and half after training (default: 4)")
    p.add_argument("--image-size", type=int, default=64, help="image size (default: 64)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--m-per-class", type=int, default=4, help="images per class in a batch (default: 4)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: vecmetric's)")
    p.add_argument("--classes", type=int, default=0, help="use only this many training classes (default: all 175)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def main(argv=None) -> None:
    import torch

    from vecmetric.encoders import resolve_device
    from vecmetric.train import TrainOptions, train
    from vecmetric.train.loop import training_precision
    from vecmetric.train.options import default_workers

    args = parse_args(argv)
    info = machine_info()
    device = resolve_device(args.device)
    workers = default_workers() if args.workers is None else args.workers
    work = Path(tempfile.mkdtemp(prefix="vecmetric-train-speed-"))
    try:
        link_classes(args.data, TRAIN_ALPHABETS, work / "train", args.classes or None)
        options = TrainOptions(
            model="default", embedding_dim=128, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
            m_per_class=args.m_per_class, lr=3e-4, freeze_bn=True, flip=False, seed=0, workers=workers,
            device=args.device, val_classes=0.2,
        )
        # The run's own split: its training classes also feed the bare loop.
        bare_args = argparse.Namespace(
            embedding_dim=128, seed=0, image_size=args.image_size, batch_size=args.batch_size, m_per_class=args.m_per_class,
            lr=3e-4, bare_steps=0, repeats=1,
        )
        started = time.perf_counter()
        result = train(work / "train", work / "run", options)
        train_wall = time.perf_counter() - started
        epochs = [row for row in result.history if row["epoch"] > 0]
        classes = json.loads((work / "run" / "run.json").read_text())["data"]["train_classes"]
        steps = epochs[0]["step"]
        bare_args.bare_steps = steps
        bare = []
        for _ in range(args.bare_windows):
            best, _mean = bare_loop(work / "train", classes, bare_args, device)
            bare.append(best)
        ours = [row["train_images_per_s"] for row in epochs]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_ratio = max(ours) / max(bare)
    median_ratio = statistics.median(ours) / statistics.median(bare)
    table = print_table(
        f"images/s, windows of {steps} steps ({steps * args.batch_size} images)",
        ["loop", "best", "median", "every window"],
        [
            [f"`vecmetric train` ({workers} DataLoader worker(s), per epoch)", max(ours), statistics.median(ours), ", ".join(f"{v:.1f}" for v in ours)],
            ["bare forward-backward loop on pre-decoded tensors", max(bare), statistics.median(bare), ", ".join(f"{v:.1f}" for v in bare)],
        ],
    )
    verdict = "met" if best_ratio >= TARGET else "missed"
    notes = [
        f"`vecmetric train` runs at **{100 * best_ratio:.0f}%** of the bare loop, best window against best window "
        f"({100 * median_ratio:.0f}% median against median; target >= {100 * TARGET:.0f}%: {verdict}).",
        f"Settings: default encoder + 128-d head, {args.image_size} px, batch {args.batch_size} = "
        f"{args.batch_size // args.m_per_class} classes x {args.m_per_class}, semi-hard triplet mining on cosine, AdamW, "
        f"BatchNorm statistics frozen, {len(classes)} training classes, device {device}, precision {training_precision(device, 'auto')} (the bare loop: bf16 autocast where the GPU has it); "
        f"training wall time {train_wall:.0f} s including per-epoch validation (not in the windows).",
        "The bare loop: forward, mining, loss, backward and optimizer step on four batches decoded beforehand, "
        "with no data loading, logging, scheduler or Fabric.",
    ]
    report(f"Training throughput ({machine_tag(args.device)})", [table, "\n".join(f"- {n}" for n in notes)], info, write=not args.no_write)
    print(f"ratio best {best_ratio:.3f} median {median_ratio:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()

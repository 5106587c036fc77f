"""Training throughput: ``vecmetric train`` against a bare forward-backward loop on pre-decoded tensors.

Both run in this process on the same Omniglot training alphabets, model (the default encoder with a
128-d head), image size, batch, loss, miner and optimizer. ``vecmetric train`` reads and augments
images in its DataLoader workers (from its decoded-image cache by default), runs through Lightning
Fabric, and counts active triplets; the bare loop only steps on four batches decoded beforehand.
Each is timed in windows of one epoch's steps, alternating: ``train`` stops after every epoch and
resumes for the next, with a bare window in between, so each pair shares the machine's state of the
moment. The ratio is the median of the paired ratios (the best window of each is reported too).

Target (issue 3): vecmetric / bare >= 0.90.

    python benchmarks/train_speed.py                      # 2-core laptop: about 5 minutes
    python benchmarks/train_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import machine_info, machine_tag, print_table, report
from train_omniglot import DEFAULT_DATA, TRAIN_ALPHABETS, bare_loop, link_classes

from vecmetric.progress import Reporter
from vecmetric.train.image_cache import CACHE_MODES

TARGET = 0.90


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="omniglot_small folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs, each one timed window paired with a bare one (default: 5)")
    p.add_argument("--image-size", type=int, default=64, help="image size (default: 64)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--m-per-class", type=int, default=4, help="images per class in a batch (default: 4)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: vecmetric's)")
    p.add_argument("--cache", default="auto", choices=CACHE_MODES, help="train's --cache (default: auto)")
    p.add_argument("--classes", type=int, default=0, help="use only this many training classes (default: all 175)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


class _PauseAfterEachEpoch(Reporter):
    """Stops ``train`` after every epoch (its state is saved by then), so a bare window can run next to it."""

    def __init__(self):
        self.records: list[dict] = []

    def log(self, message: str) -> None:
        print(message, file=sys.stderr)

    def finished(self, task: str, summary: dict) -> None:
        if task != "epoch":
            return
        self.records.append(summary)
        if summary["epoch"] > 0:
            raise _Paused


class _Paused(Exception):
    pass


def main(argv=None) -> None:
    from vecmetric._system import loader_workers
    from vecmetric.encoders import resolve_device
    from vecmetric.train import TrainOptions, train
    from vecmetric.train.optim import training_precision

    args = parse_args(argv)
    info = machine_info()
    device = resolve_device(args.device)
    workers = loader_workers(leave_one_cpu=True) if args.workers is None else args.workers
    work = Path(tempfile.mkdtemp(prefix="vecmetric-train-speed-"))
    try:
        link_classes(args.data, TRAIN_ALPHABETS, work / "train", args.classes or None)
        options = TrainOptions(
            model="default", embedding_dim=128, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
            m_per_class=args.m_per_class, lr=3e-4, freeze_bn=True, flip=False, seed=0, workers=workers,
            device=args.device, val_classes=0.2, cache=args.cache, loss="triplet",  # as the bare loop
        )
        bare_args = argparse.Namespace(
            embedding_dim=128, seed=0, image_size=args.image_size, batch_size=args.batch_size, m_per_class=args.m_per_class,
            lr=3e-4, bare_steps=0, repeats=1,
        )
        ours, bare, train_wall = [], [], 0.0
        for epoch in range(1, args.epochs + 1):
            reporter = _PauseAfterEachEpoch()
            started = time.perf_counter()
            try:
                train(work / "train", work / "run", replace(options, resume=epoch > 1), reporter)
            except _Paused:
                pass
            train_wall += time.perf_counter() - started
            record = reporter.records[-1]
            ours.append(record["train_images_per_s"])
            # The run's own split: its training classes feed the bare loop, one epoch's steps per window.
            classes = json.loads((work / "run" / "run.json").read_text())["data"]["train_classes"]
            bare_args.bare_steps = steps = record["step"] // epoch
            bare.append(bare_loop(work / "train", classes, bare_args, device)[0])
            print(f"epoch {epoch}: vecmetric {ours[-1]:.1f}, bare {bare[-1]:.1f} images/s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    paired = [a / b for a, b in zip(ours, bare)]
    paired_median = statistics.median(paired)
    best_ratio = max(ours) / max(bare)
    table = print_table(
        f"images/s, windows of {steps} steps ({steps * args.batch_size} images)",
        ["loop", "best", "median", "every window"],
        [
            [f"`vecmetric train` ({workers} DataLoader worker(s), per epoch)", max(ours), statistics.median(ours), ", ".join(f"{v:.1f}" for v in ours)],
            ["bare forward-backward loop on pre-decoded tensors, right after each epoch", max(bare), statistics.median(bare), ", ".join(f"{v:.1f}" for v in bare)],
            ["ratio, each epoch to the bare window after it", max(paired), paired_median, ", ".join(f"{v:.2f}" for v in paired)],
        ],
    )
    verdict = "met" if paired_median >= TARGET else "missed"
    notes = [
        f"`vecmetric train` runs at **{100 * paired_median:.0f}%** of the bare loop: the median of the paired ratios, each epoch "
        f"against the bare window timed right after it (best window against best window: {100 * best_ratio:.0f}%; "
        f"target >= {100 * TARGET:.0f}%: {verdict}).",
        f"Settings: default encoder + 128-d head, {args.image_size} px, batch {args.batch_size} = "
        f"{args.batch_size // args.m_per_class} classes x {args.m_per_class}, semi-hard triplet mining on cosine, AdamW, "
        f"BatchNorm statistics frozen, {len(classes)} training classes, decoded-image cache {args.cache}, device {device}, "
        f"precision {training_precision(device, 'auto')} (the bare loop: bf16 autocast where the GPU has it); "
        f"training wall time {train_wall:.0f} s including start-up and per-epoch validation (not in the windows).",
        "The bare loop: forward, mining, loss, backward and the same optimizer's step on four batches decoded beforehand, "
        "with no data loading, augmentation, logging, scheduler or Fabric. `train` stops after each epoch and resumes "
        "for the next, so the two loops alternate and share the machine's state of the moment.",
    ]
    report(f"Training throughput ({machine_tag(args.device)})", [table, "\n".join(f"- {n}" for n in notes)], info, write=not args.no_write)
    print(f"ratio paired median {paired_median:.3f}, best {best_ratio:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()

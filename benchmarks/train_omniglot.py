"""Does fine-tuning help on classes never seen? Omniglot: train on 5 alphabets, test on 3 others.

Measures, on Greek, Latin and Tagalog (67 classes, 1,340 images, none seen in training):

1. the pretrained default encoder (EfficientNet-Lite0) before any training;
2. after ``vecmetric train`` (run through the CLI, best epoch by MAP@R on held-out training classes);
3. after a plain reference loop written directly with pytorch-metric-learning (its MPerClassSampler,
   TripletMarginLoss, TripletMarginMiner) with the same backbone, head, image size, epochs, batch,
   optimizer, schedule, classes and seed;

and training throughput: ``vecmetric train``'s images/s against a bare forward-backward loop
(same model, loss, miner and optimizer) on pre-decoded tensors, measured in the same run.

The table goes to benchmarks/RESULTS.md under "## Training on Omniglot" (only that section is replaced).

Usage:
    python benchmarks/train_omniglot.py [--device auto] [--epochs 4] [--image-size 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "omniglot_small"
TRAIN_ALPHABETS = ("Balinese", "Early_Aramaic", "Japanese_(katakana)", "Korean", "Sanskrit")
TEST_ALPHABETS = ("Greek", "Latin", "Tagalog")
HEADING = "## Training on Omniglot"
METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "recall_at_1", "recall_at_5")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="omniglot_small folder (Alphabet__characterNN classes)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default: auto)")
    parser.add_argument("--image-size", type=int, default=64, help="training and test image size (default: 64)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs for both loops (default: 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--m-per-class", type=int, default=4, help="images per class in a batch (default: 4)")
    parser.add_argument("--embedding-dim", type=int, default=128, help="projection head size (default: 128)")
    parser.add_argument("--lr", type=float, default=3e-4, help="backbone learning rate; the head gets 10x (default: 3e-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: vecmetric's)")
    parser.add_argument("--bare-steps", type=int, default=0, help="timed steps per bare-loop repeat (default: one epoch's steps, so both loops are timed over windows of the same length)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the bare loop (default: 3)")
    parser.add_argument("--work", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--docs", type=Path, default=None, help="also copy the run's curves.png here (README material)")
    parser.add_argument("--reuse", action="store_true", help="with --work: keep finished stages found there (continue an interrupted benchmark)")
    parser.add_argument("--stage", choices=("all", "reference"), default="all", help="'reference': only train the reference loop (needs --work holding run/run.json); lets it run beside the vecmetric run")
    parser.add_argument("--note", default="", help="a sentence added to the results (e.g. what else ran on the machine)")
    parser.add_argument("--quick", action="store_true", help="a few classes and 1 epoch: checks the script, measures nothing")
    return parser.parse_args()


def link_classes(data: Path, alphabets, target: Path, limit: int | None = None) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name.split("__")[0] in alphabets)
    if limit:
        names = names[:limit]
    for name in names:
        if not (target / name).exists():
            (target / name).symlink_to((data / name).resolve(), target_is_directory=True)
    return names


def machine(device_name: str) -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__}, device {device_name}"
    if device_name.startswith("cuda"):
        text += f" ({torch.cuda.get_device_name(0)})"
    return text


def schedule(total_steps: int, warmup: float):
    """Same warm-up + cosine multiplier as vecmetric (written out again: the reference must not import it)."""
    warmup_steps = max(1, round(warmup * total_steps)) if warmup else 0

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def freeze_batchnorm(net) -> None:
    """BatchNorm layers keep their ImageNet statistics (what ``vecmetric train --freeze-bn`` does)."""
    import torch

    for layer in net.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.eval()


def fresh_model(embedding_dim: int, seed: int):
    """The default encoder's backbone with a seeded linear head, L2-normalised (an EmbeddingModel)."""
    import torch
    from torch import nn

    from vecmetric.encoders import load_encoder

    encoder = load_encoder("default", device="cpu", precision="fp32")
    net = encoder.model
    torch.manual_seed(seed)
    net.head = nn.Linear(net.backbone_dim, embedding_dim)
    return encoder, net


def reference_loop(train_dir: Path, classes: list[str], args, device) -> tuple[Path, float]:
    """A plain pytorch-metric-learning training loop; returns its checkpoint folder and images/s."""
    import numpy as np
    import torch
    from PIL import Image
    from pytorch_metric_learning import distances, losses, miners, samplers
    from torchvision import transforms

    from vecmetric.encoders import ArchitectureConfig, save_checkpoint

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    encoder, net = fresh_model(args.embedding_dim, args.seed)
    pre = encoder.preprocess
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.image_size, scale=(0.4, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    items = [(str(p), label) for label, name in enumerate(classes) for p in sorted((train_dir / name).iterdir())]

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            path, label = items[i]
            return transform(Image.open(path).convert("RGB")), label

    labels = [label for _, label in items]
    sampler = samplers.MPerClassSampler(labels, args.m_per_class, batch_size=args.batch_size, length_before_new_iter=len(items))
    loader = torch.utils.data.DataLoader(
        Folder(), batch_size=args.batch_size, sampler=sampler, num_workers=args.workers, drop_last=True,
        persistent_workers=args.workers > 0,
    )
    net = net.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(
        [{"params": net.backbone.parameters(), "lr": args.lr}, {"params": net.head.parameters(), "lr": 10 * args.lr}],
        weight_decay=1e-4,
    )
    steps = len(loader) * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(steps, 0.05))
    distance = distances.CosineSimilarity()
    loss_fn = losses.TripletMarginLoss(margin=0.2, distance=distance)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=distance)
    seen, seconds = 0, 0.0
    for epoch in range(args.epochs):
        net.train()
        freeze_batchnorm(net)
        started = time.perf_counter()
        for images, batch_labels in loader:
            images = images.to(device).contiguous(memory_format=torch.channels_last)
            batch_labels = batch_labels.to(device)
            embeddings = net(images)
            loss = loss_fn(embeddings, batch_labels, miner(embeddings, batch_labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(images)
        seconds += time.perf_counter() - started
        print(f"  reference epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}", file=sys.stderr, flush=True)
    folder = args.work / "reference"
    architecture = ArchitectureConfig("timm", encoder.architecture.name, args.embedding_dim, True)
    save_checkpoint(folder, net.cpu(), architecture, encoder.preprocess, "cosine")
    (folder / "speed.json").write_text(json.dumps({"images_per_s": seen / seconds, "seconds": seconds}))
    return folder, seen / seconds


def bare_loop(train_dir: Path, classes: list[str], args, device) -> tuple[float, float]:
    """Forward, mine, loss, backward and step on batches decoded beforehand: the ceiling for training speed.

    Returns the best and the mean images/s over ``--repeats`` timed runs of ``--bare-steps`` steps.
    """
    import numpy as np
    import torch
    from pytorch_metric_learning import distances, losses, miners

    from vecmetric.images import load_image_array
    from vecmetric.train import TrainOptions
    from vecmetric.train.optim import build_optimizer

    encoder, net = fresh_model(args.embedding_dim, args.seed)
    pre = encoder.preprocess
    from dataclasses import replace

    pre = replace(pre, image_size=args.image_size)
    per_batch = args.batch_size // args.m_per_class
    batches = []
    for b in range(4):
        chosen = [classes[(b * per_batch + j) % len(classes)] for j in range(per_batch)]
        paths = [p for name in chosen for p in sorted((train_dir / name).iterdir())[: args.m_per_class]]
        images = torch.from_numpy(np.stack([load_image_array(p, pre) for p in paths]))
        labels = torch.arange(per_batch).repeat_interleave(args.m_per_class)
        batches.append((images.to(device), labels.to(device)))
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255
    net = net.to(device, memory_format=torch.channels_last).train()
    freeze_batchnorm(net)
    # vecmetric's own optimizer (the same AdamW and parameter groups), so that only the loop differs.
    optimizer = build_optimizer(net, TrainOptions(lr=args.lr, head_lr=10 * args.lr, weight_decay=1e-4))
    distance = distances.CosineSimilarity()
    loss_fn = losses.TripletMarginLoss(margin=0.2, distance=distance)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=distance)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def step(images, labels):
        x = ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            embeddings = net(x).float()
        loss = loss_fn(embeddings, labels, miner(embeddings, labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for i in range(3):
        step(*batches[i % len(batches)])
    speeds = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(args.bare_steps):
            step(*batches[i % len(batches)])
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(args.bare_steps * args.batch_size / (time.perf_counter() - started))
    return max(speeds), sum(speeds) / len(speeds)


def evaluate_on_test(test_dir: Path, spec: str, args) -> dict:
    from vecmetric.evaluate import evaluate

    return evaluate(test_dir, spec, device=args.device, workers=args.workers, image_size=args.image_size, batch_size=128)


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it), leaving the others alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{HEADING}\n\n{body.strip()}\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


def main() -> None:
    args = parse_args()

    from vecmetric._system import loader_workers
    from vecmetric.encoders import resolve_device

    args.workers = loader_workers(leave_one_cpu=True) if args.workers is None else args.workers
    device = resolve_device(args.device)
    if args.quick:
        args.epochs, args.bare_steps, args.repeats = 1, 3, 1
    temporary = args.work is None
    args.work = Path(tempfile.mkdtemp(prefix="vecmetric-omniglot-")) if temporary else args.work
    if args.work.exists() and not temporary and not args.reuse:
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    limit = 12 if args.quick else None
    train_dir, test_dir = args.work / "train", args.work / "test"
    train_names = link_classes(args.data, TRAIN_ALPHABETS, train_dir, limit)
    test_names = link_classes(args.data, TEST_ALPHABETS, test_dir, limit)
    print(f"{len(train_names)} training classes, {len(test_names)} test classes; work folder {args.work}", file=sys.stderr)
    started_all = time.perf_counter()
    rows = {}
    if args.stage == "reference":
        run = json.loads((args.work / "run" / "run.json").read_text())
        reference_loop(train_dir, run["data"]["train_classes"], args, device)
        return

    t = time.perf_counter()
    rows["default encoder, untrained"] = evaluate_on_test(test_dir, "default", args)
    print(f"before: {rows['default encoder, untrained']} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)

    run_dir = args.work / "run"
    command = [
        sys.executable, "-m", "vecmetric", "train", str(train_dir), "--out", str(run_dir),
        "--model", "default", "--embedding-dim", str(args.embedding_dim), "--image-size", str(args.image_size),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--m-per-class", str(args.m_per_class),
        "--lr", str(args.lr), "--freeze-bn", "--no-flip", "--seed", str(args.seed), "--workers", str(args.workers),
        "--device", args.device, "--val-classes", "0.2", "--loss", "triplet",  # the reference loop is triplet
    ]
    state_path = run_dir / "last" / "state.json"
    finished = state_path.is_file() and json.loads(state_path.read_text())["epoch"] == args.epochs
    if args.reuse and finished and (args.work / "train_stderr.txt").is_file():
        print("reusing the finished vecmetric run", file=sys.stderr)
        timing = args.work / "train_seconds.txt"
        train_seconds = float(timing.read_text()) if timing.is_file() else None
    else:
        t = time.perf_counter()
        env = dict(os.environ, COLUMNS="100")
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        train_seconds = time.perf_counter() - t
        (args.work / "train_stdout.txt").write_text(proc.stdout)
        (args.work / "train_stderr.txt").write_text(proc.stderr)
        (args.work / "train_seconds.txt").write_text(f"{train_seconds}\n")
        if proc.returncode != 0:
            sys.exit(f"vecmetric train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run = json.loads((run_dir / "run.json").read_text())
    state = json.loads(state_path.read_text())
    epochs = [row for row in state["history"] if row["epoch"] > 0]
    vecmetric_speeds = [row["train_images_per_s"] for row in epochs]
    vecmetric_speed = sum(vecmetric_speeds) / len(vecmetric_speeds)
    vecmetric_best = max(vecmetric_speeds)
    best_epoch = state["best_epoch"]
    # Timed right after training, so that both loops see the machine in the same state.
    args.bare_steps = args.bare_steps or epochs[0]["step"]
    bare_best, bare_speed = bare_loop(train_dir, run["data"]["train_classes"], args, device)
    rows[f"after `vecmetric train` (best epoch {best_epoch} by validation MAP@R)"] = evaluate_on_test(test_dir, str(run_dir), args)
    if best_epoch != epochs[-1]["epoch"]:
        rows["after `vecmetric train`, last epoch"] = evaluate_on_test(test_dir, str(run_dir / "last"), args)
    if train_seconds is None:  # reused without a timing: the training epochs (validation not counted)
        train_seconds = sum(row["seconds"] for row in epochs)
    print(f"vecmetric train: {train_seconds:.0f} s, {vecmetric_speed:.1f} img/s", file=sys.stderr, flush=True)

    # The reference trains on exactly the classes vecmetric trained on (its validation classes left out too).
    speed_path = args.work / "reference" / "speed.json"
    if args.reuse and speed_path.is_file():
        print("reusing the finished reference run", file=sys.stderr)
        reference_dir, saved = args.work / "reference", json.loads(speed_path.read_text())
        reference_speed, reference_seconds = saved["images_per_s"], saved["seconds"]
    else:
        t = time.perf_counter()
        reference_dir, reference_speed = reference_loop(train_dir, run["data"]["train_classes"], args, device)
        reference_seconds = time.perf_counter() - t
    rows["after the plain pytorch-metric-learning loop (last epoch)"] = evaluate_on_test(test_dir, str(reference_dir), args)

    total = time.perf_counter() - started_all
    print(f"bare loop {bare_best:.1f} img/s (best), {bare_speed:.1f} (mean); total {total:.0f} s", file=sys.stderr)

    header = "| encoder | " + " | ".join(["P@1", "R-precision", "MAP@R", "recall@1", "recall@5"]) + " |"
    lines = [header, "|---|" + "---:|" * len(METRICS)]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[k]:.4f}" for k in METRICS) + " |")
    ratio = vecmetric_best / bare_best
    body = f"""
`python benchmarks/train_omniglot.py{' --quick' if args.quick else ''} --device {args.device} --epochs {args.epochs} --image-size {args.image_size}` \u2014 {time.strftime('%Y-%m-%d', time.gmtime())}

Machine: {machine(str(device))}.

Train on 5 Omniglot alphabets ({', '.join(TRAIN_ALPHABETS)}: {len(train_names)} classes; `vecmetric train` holds out
20% of them, {len(run['data']['val_classes'])} classes, to pick its best epoch, and the reference loop trains on the same
{len(run['data']['train_classes'])} classes), test on {', '.join(TEST_ALPHABETS)}: {len(test_names)} classes never seen in
training, every image querying all the others (exact k-NN, cosine). Settings for both loops: the default encoder
(EfficientNet-Lite0, ImageNet) with a {args.embedding_dim}-d linear head, {args.image_size} px images (the test too, for every
row), {args.epochs} epochs, batch {args.batch_size} = {args.batch_size // args.m_per_class} classes x {args.m_per_class},
triplet margin loss 0.2 with semi-hard mining on cosine similarity, AdamW (backbone lr {args.lr:g}, head {10 * args.lr:g},
weight decay 1e-4, 5% warm-up then cosine decay), BatchNorm statistics frozen, random resized crops without flips,
seed {args.seed}.
The image size and epochs were chosen so the whole benchmark fits in well under 30 minutes on 2 otherwise idle CPU cores.
{args.note}

{chr(10).join(lines)}

Training throughput (training steps only, validation excluded). Other jobs shared these 2 cores, so each loop is
reported as its best and its mean: the best epoch of `vecmetric train` and the best of {args.repeats} timed runs of
{args.bare_steps} steps of the bare loop (as many steps as an epoch: windows of the same length, timed right after
`vecmetric train`) are the least disturbed measurements, and they are what the ratio compares.

| loop | best images/s | mean images/s |
|---|---:|---:|
| `vecmetric train` ({args.workers} DataLoader worker(s) decoding, per epoch) | {vecmetric_best:.1f} | {vecmetric_speed:.1f} |
| bare forward-backward loop on pre-decoded tensors (same model, loss, miner, optimizer) | {bare_best:.1f} | {bare_speed:.1f} |
| plain pytorch-metric-learning loop (torchvision transforms, {args.workers} worker(s), whole run) | | {reference_speed:.1f} |

`vecmetric train` runs at **{100 * ratio:.0f}%** of the bare loop (best against best; {100 * vecmetric_speed / bare_speed:.0f}% mean
against mean). Wall time: `vecmetric train` {train_seconds:.0f} s (with per-epoch validation), reference loop
{reference_seconds:.0f} s, {"this invocation (reusing finished stages)" if args.reuse else "whole benchmark"} {total:.0f} s.
"""
    write_section(args.results, body)
    print(body)
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "curves.png", args.docs / "curves.png")
    if temporary:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()

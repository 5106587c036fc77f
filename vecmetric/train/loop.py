"""The training loop: Lightning Fabric, triplet loss with mining, validation on unseen classes.

Speed on the hot path: images arrive as uint8 from persistent DataLoader workers (which crop
them from decoded copies kept in memory when they fit, see ``image_cache``), are normalised on
the device, and run channels_last; bf16 autocast on GPUs that support it.
On CPUs fp32 is the default: measured on an AMX Xeon, bf16 training of EfficientNet-Lite0
ran 2-5x slower than fp32 (its backward pass has no fast bf16 kernels), while bf16
inference is 3.7x faster, so validation still embeds in bf16 there.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TrainError
from .checkpoint import check_run_dir, save_last_state, write_metrics_csv, write_run
from .data import EvalImages, LabelledImages, TrainImages, parse_val_classes, scan_class_folders, split_classes
from .image_cache import build_image_cache, plan_image_cache
from .losses import active_triplet_counts, build_loss, build_miner
from .metrics import retrieval_metrics
from .optim import build_optimizer, lr_lambda, training_precision
from .options import TrainOptions, default_workers
from .sampler import MPerClassBatchSampler, check_sampler_options

__all__ = ["Reporter", "TrainResult", "train"]

VAL_KEYS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class Reporter:
    """Receives progress from ``train``; the CLI's subclass draws it with rich. All no-ops here."""

    def warn(self, message: str) -> None:
        import warnings

        warnings.warn(message, stacklevel=2)

    def log(self, message: str) -> None:
        pass

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def advance(self, loss: float | None) -> None:
        """One step done; ``loss`` is given every few steps (reading it syncs the device), else None."""

    def start_eval(self, images: int) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class SilentReporter(Reporter):
    """Reports nothing, warnings included: what DDP's other ranks use, as rank zero reports for all."""

    def warn(self, message: str) -> None:
        pass


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        run_dir: the run folder (a valid ``--model`` spec).
        best_epoch: the epoch whose weights are in ``run_dir`` (best validation MAP@R; the last without validation).
        best: that epoch's record; ``last``: the final epoch's record.
        history: one record per epoch (epoch 0: validation before training).
        train_images_per_s: mean training throughput over the epochs run in this call.
        is_main: whether this process is DDP's global rank zero (the one that wrote the run folder).
    """

    run_dir: Path
    best_epoch: int
    best: dict[str, Any]
    last: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_images_per_s: float = 0.0
    resumed_from_epoch: int = 0
    is_main: bool = True


def build_training_model(encoder, options: TrainOptions):
    """The encoder's network with the head and normalisation training asks for, and its architecture."""
    import torch
    from torch import nn

    from ..encoders import ArchitectureConfig

    net = encoder.model
    current = net.head.out_features if net.head is not None else None
    wanted = options.embedding_dim or current
    if wanted != current:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            net.head = nn.Linear(net.backbone_dim, wanted)
    net.normalize = options.metric == "cosine"
    net.float().to(memory_format=torch.channels_last)
    architecture = ArchitectureConfig(
        source=encoder.architecture.source,
        name=encoder.architecture.name,
        embedding_dim=wanted,
        normalize=net.normalize,
        kwargs=dict(encoder.architecture.kwargs),
    )
    return net, architecture


class _Normalizer:
    """uint8 batches to normalised float, channels_last, on the device."""

    def __init__(self, preprocess, device):
        import torch

        self.mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255.0
        self.device = device

    def __call__(self, batch):
        import torch

        batch = batch.to(self.device, non_blocking=True).float()
        return ((batch - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def embed_for_eval(net, loader, normalizer, inference_precision: str):
    """Embed a labelled loader with ``net`` in eval mode; returns (embeddings, labels) as numpy."""
    import numpy as np
    import torch

    was_training = net.training
    net.eval()
    device = normalizer.device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if inference_precision == "bf16" and device.type in ("cpu", "cuda")
        else contextlib.nullcontext()
    )
    chunks, labels = [], []
    with torch.inference_mode(), autocast:
        for images, batch_labels in loader:
            chunks.append(net(normalizer(images)).float().cpu().numpy())
            labels.append(np.asarray(batch_labels))
    net.train(was_training)
    return np.concatenate(chunks), np.concatenate(labels)


def _batchnorm_eval(module) -> None:
    """Keep BatchNorm layers on their pretrained running statistics (their scale and shift still train)."""
    from torch import nn

    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def _batches(loader):
    """Iterate a DataLoader, turning a worker's TrainError (which arrives with its traceback text) into one line."""
    try:
        yield from loader
    except TrainError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise TrainError(lines[-1].split("TrainError: ", 1)[-1] if lines else "a DataLoader worker failed") from None


def _identity(data_dir: Path, options: TrainOptions, train_set: LabelledImages, val_set: LabelledImages | None, image_size: int):
    args = options.to_dict()
    args.update(image_size=image_size, data_dir=str(data_dir.resolve()))
    data = {
        "train_classes": train_set.class_names,
        "val_classes": val_set.class_names if val_set else [],
        "train_images": len(train_set),
        "val_images": len(val_set) if val_set else 0,
    }
    return {"args": args, "data": data}


def _image_cache(train_set: LabelledImages, image_size: int, options: TrainOptions, reporter: Reporter):
    """The decoded training images in memory when ``options.cache`` allows, else None."""
    shared = options.workers > 0
    plan = plan_image_cache(train_set.paths, image_size, options.cache, shared=shared, processes=options.devices)
    if not plan.cache:
        if options.cache == "auto":
            reporter.log(f"decoding the training images at every step: {plan.reason}")
        return None
    reporter.log(f"keeping {len(train_set):,} decoded training images in memory ({plan.reason})")
    return build_image_cache(train_set.paths, plan, image_size, shared=shared)


def prepare_data(data_dir: Path, options: TrainOptions, reporter: Reporter):
    """Scan, report what was skipped, split classes, and check the sampler can fill batches."""
    images = scan_class_folders(data_dir, min_images_per_class=2)
    for message in images.skip_messages():
        reporter.warn(message)
    if len(images.class_names) < 2:
        raise TrainError(
            f"{data_dir} has {len(images.class_names)} usable class(es); training needs at least 2",
            hint="one subfolder per class, each with 2 or more readable images",
        )
    train_names, val_names = split_classes(images.class_names, parse_val_classes(options.val_classes), options.seed)
    train_set = images.subset(train_names)
    val_set = images.subset(val_names) if val_names else None
    check_sampler_options(train_set.class_sizes(), options.m_per_class, options.batch_size)
    return train_set, val_set


def train(data_dir, out_dir, options: TrainOptions | None = None, reporter: Reporter | None = None) -> TrainResult:
    """Fine-tune an encoder with triplet loss so that same-class images are close.

    Args:
        data_dir: a folder with one subfolder per class.
        out_dir: the run folder; holds the best model (a valid ``--model`` spec), ``last/``, metrics and curves.
        options: a ``TrainOptions`` (defaults when None).
        reporter: receives warnings and progress (default: silent except warnings).

    Returns:
        A ``TrainResult``.

    Raises:
        InputError: ``data_dir`` is missing or holds no class folders with images.
        TrainError: unusable data, options or run folder.
        EncoderError: the model spec or device cannot be used.
    """
    import torch
    from lightning_fabric import Fabric
    from lightning_fabric.utilities.rank_zero import rank_zero_only
    from lightning_fabric.utilities.seed import seed_everything

    from ..encoders import load_encoder, resolve_device, resolve_precision, save_checkpoint

    options = replace(options or TrainOptions())
    # Under DDP every process runs this function (the launcher starts the others with their rank in
    # the environment, which Lightning reads): only global rank zero reports, warnings included.
    reporter = (reporter or Reporter()) if getattr(rank_zero_only, "rank", 0) == 0 else SilentReporter()
    options.validate()
    data_dir, run_dir = Path(data_dir), Path(out_dir)
    if options.workers is None:
        options.workers = default_workers()
    if options.head_lr is None:
        options.head_lr = 10 * options.lr

    device = resolve_device(options.device)
    # The model first: a wrong spec fails before a long scan of the images.
    encoder = load_encoder(options.model, device="cpu", precision="fp32")
    train_set, val_set = prepare_data(data_dir, options, reporter)
    image_size = options.image_size or encoder.preprocess.image_size
    preprocess = replace(encoder.preprocess, image_size=image_size)
    identity = _identity(data_dir, options, train_set, val_set, image_size)
    saved = check_run_dir(run_dir, identity, options.resume)

    strategy = "auto"
    if options.devices * options.num_nodes > 1:
        from lightning_fabric.strategies import DDPStrategy

        # Frozen backbone epochs leave parameters without gradients, which DDP must be told about.
        strategy = DDPStrategy(find_unused_parameters=options.freeze_backbone_epochs > 0)
    # --device cuda:N picks that GPU for a single-process run; --devices N uses the first N.
    devices = [device.index] if device.index is not None and options.devices == 1 else options.devices
    fabric = Fabric(
        accelerator=device.type,
        devices=devices,
        num_nodes=options.num_nodes,
        precision=training_precision(device, options.precision),
        strategy=strategy,
    )
    fabric.launch()
    is_main = fabric.is_global_zero
    if is_main:
        write_run(run_dir, identity)

    net, architecture = build_training_model(encoder, options)
    optimizer = build_optimizer(net, options)

    sampler = MPerClassBatchSampler(
        train_set.labels, options.m_per_class, options.batch_size, options.seed, fabric.global_rank, fabric.world_size
    )
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * options.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, max(1, round(options.warmup * total_steps)) if options.warmup else 0)
    )

    history: list[dict[str, Any]] = []
    start_epoch, best_epoch, best_score = 1, 0, -1.0
    if saved is not None:
        net.load_state_dict(saved["model"])
        history = saved["history"]
        start_epoch = int(saved["epoch"]) + 1
        best_epoch, best_score = int(saved["best_epoch"]), float(saved["best_score"])
        reporter.log(f"resuming {run_dir} after epoch {saved['epoch']}")

    model, optimizer = fabric.setup(net, optimizer)
    if saved is not None:
        # After setup, so the moments land on the parameters' device; before the scheduler's state.
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    loss_fn = build_loss(options.metric, options.margin)
    miner = build_miner(options.miner, options.metric, options.margin)
    normalizer = _Normalizer(preprocess, fabric.device)
    inference_precision = resolve_precision(fabric.device, "auto")
    pin = fabric.device.type == "cuda"
    cache = _image_cache(train_set, image_size, options, reporter)
    loader = torch.utils.data.DataLoader(
        TrainImages(train_set, image_size, preprocess.interpolation, options.flip, cache),
        batch_sampler=sampler,
        num_workers=options.workers,
        persistent_workers=options.workers > 0,
        pin_memory=pin,
    )
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(
            EvalImages(val_set.paths, val_set.labels, preprocess),
            batch_size=2 * options.batch_size,
            num_workers=options.workers,
            persistent_workers=options.workers > 0,
            pin_memory=pin,
        )

    def validate() -> dict[str, float]:
        if val_loader is None:
            return {}
        if is_main:
            reporter.start_eval(len(val_set))
        embeddings, labels = embed_for_eval(net, val_loader, normalizer, inference_precision)
        scores = retrieval_metrics(embeddings, labels, options.metric)
        return {key: scores[key] for key in VAL_KEYS}

    def checkpoint_extra(record: dict[str, Any]) -> dict[str, Any]:
        return {"training": {**identity, "epoch": record["epoch"], "metrics": record}}

    if not history and val_loader is not None:
        history.append({"epoch": 0, "step": 0, **validate()})
        if is_main:
            reporter.end_epoch(history[-1])

    throughputs = []
    step = (start_epoch - 1) * steps_per_epoch
    for epoch in range(start_epoch, options.epochs + 1):
        # Everything random in an epoch derives from (seed, epoch): resuming needs no RNG state.
        seed_everything(options.seed * 100_003 + epoch, verbose=False)
        sampler.set_epoch(epoch)
        frozen = epoch <= options.freeze_backbone_epochs
        net.backbone.requires_grad_(not frozen)
        model.train()
        net.backbone.train(not frozen)
        if options.freeze_bn:
            _batchnorm_eval(net.backbone)
        if is_main:
            reporter.start_epoch(epoch, options.epochs, steps_per_epoch)
        loss_sum = torch.zeros((), device=fabric.device)
        active = torch.zeros(2, device=fabric.device)
        started = time.perf_counter()
        for images, labels in _batches(loader):
            labels = labels.to(fabric.device)
            embeddings = model(normalizer(images)).float()
            triplets = miner(embeddings, labels) if miner is not None else None
            loss = loss_fn(embeddings, labels, triplets)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            optimizer.step()
            scheduler.step()
            step += 1
            # Over every valid triplet of the batch, not just the mined ones: semi-hard mining keeps only
            # margin violators, so the mined fraction would always be 1.
            count, total = active_triplet_counts(embeddings, labels, None, loss_fn.distance, options.margin)
            active += torch.stack([count, total])
            loss_sum += loss.detach()
            if is_main:
                # Reading the loss waits for the device: only every 10th step.
                reporter.advance(float(loss.detach()) if step % 10 == 1 else None)
        seconds = time.perf_counter() - started
        loss_mean = fabric.all_reduce(loss_sum / steps_per_epoch, reduce_op="mean")
        active = fabric.all_reduce(active, reduce_op="sum")
        images_per_s = steps_per_epoch * options.batch_size * fabric.world_size / seconds
        throughputs.append(images_per_s)
        record = {
            "epoch": epoch,
            "step": step,
            "loss": float(loss_mean),
            "active_triplets": float(active[0] / active[1]) if active[1] > 0 else 0.0,
            **validate(),
            "lr": float(scheduler.get_last_lr()[0]),
            "train_images_per_s": images_per_s,
            "seconds": seconds,
        }
        history.append(record)
        score = record.get("mean_average_precision_at_r", float(epoch))
        improved = score > best_score
        if improved:
            best_epoch, best_score = epoch, score
        if is_main:
            if improved:
                save_checkpoint(run_dir, net, architecture, preprocess, options.metric, extra=checkpoint_extra(record))
            write_metrics_csv(run_dir, history)
            state = {"epoch": epoch, "step": step, "best_epoch": best_epoch, "best_score": best_score, "history": history}
            save_last_state(
                run_dir, net, architecture, preprocess, options.metric, optimizer, scheduler, state, checkpoint_extra(record)
            )
            reporter.end_epoch(record)
        fabric.barrier()

    if is_main:
        from .curves import plot_curves

        plot_curves(history, run_dir / "curves.png", metric=options.metric)
        reporter.close()
    by_epoch = {row["epoch"]: row for row in history}
    return TrainResult(
        run_dir=run_dir,
        best_epoch=best_epoch,
        best=by_epoch.get(best_epoch, history[-1] if history else {}),
        last=history[-1] if history else {},
        history=history,
        train_images_per_s=sum(throughputs) / len(throughputs) if throughputs else 0.0,
        resumed_from_epoch=start_epoch - 1,
        is_main=is_main,
    )

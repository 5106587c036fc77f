"""The stages before the first training step: data, run folder, devices, model, loaders.

Each is a function of its own so tests can reach it; ``train`` (in ``loop.py``) calls them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..distances import check_geometry
from ..errors import TrainError
from ..evaluate import EvalImages, LabelledImages, collate_samples, scan_class_folders
from ..progress import Reporter
from .checkpoint import check_run_dir
from .data import TrainImages, parse_val_classes, split_classes
from .image_cache import build_image_cache, plan_image_cache
from .options import TrainOptions
from .sampler import check_sampler_options

__all__ = ["RunPlan", "plan_run", "prepare_data", "build_training_model", "launch_fabric", "make_loaders"]


@dataclass
class RunPlan:
    """What a run is, decided before any device or process is set up.

    Attributes:
        encoder: the starting encoder, on the CPU in fp32.
        train_set, val_set: the training classes' images and the held-out classes' (None without validation).
        preprocess: the encoder's preprocessing at the training image size.
        identity: the run's arguments and class split, as ``run.json`` records them.
        saved: the last saved state to resume from, or None.
    """

    data_dir: Path
    run_dir: Path
    device: Any
    encoder: Any
    train_set: LabelledImages
    val_set: LabelledImages | None
    preprocess: Any
    identity: dict[str, Any]
    saved: dict[str, Any] | None


def prepare_data(data_dir: Path, options: TrainOptions, reporter: Reporter) -> tuple[LabelledImages, LabelledImages | None]:
    """Scan, report what was skipped, split classes, and check the sampler can fill batches.

    Raises:
        InputError: no labelled folder; TrainError: too few classes or images for the options.
    """
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


def plan_run(data_dir: Path, run_dir: Path, options: TrainOptions, reporter: Reporter) -> RunPlan:
    """Load the starting model, read and split the data, and check the run folder.

    Raises:
        EncoderError: the model spec or device cannot be used; InputError, TrainError: see ``prepare_data``
        and ``checkpoint.check_run_dir``.
    """
    from ..encoders import load_encoder, resolve_device

    device = resolve_device(options.device)
    # The model first: a wrong spec fails before a long scan of the images.
    encoder = load_encoder(options.model, device="cpu", precision="fp32")
    train_set, val_set = prepare_data(data_dir, options, reporter)
    image_size = options.image_size or encoder.preprocess.image_size
    identity = _identity(data_dir, options, train_set, val_set, image_size)
    saved = check_run_dir(run_dir, identity, options.resume)
    preprocess = replace(encoder.preprocess, image_size=image_size)
    return RunPlan(data_dir, run_dir, device, encoder, train_set, val_set, preprocess, identity, saved)


def launch_fabric(options: TrainOptions, device):
    """A launched Lightning Fabric for the devices, nodes and precision asked for (DDP above one process)."""
    from lightning_fabric import Fabric

    from .optim import training_precision

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
    return fabric


def build_training_model(encoder, options: TrainOptions):
    """The encoder's network with the head and the normalisation or Poincare ball training asks for, and its architecture."""
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
    geometry = check_geometry(options.geometry, options.curvature, error=TrainError)
    net.normalize = options.metric == "cosine"
    net.curvature, net.clip_r = geometry.curvature, geometry.clip_r
    net.float().to(memory_format=torch.channels_last)
    architecture = ArchitectureConfig(
        source=encoder.architecture.source,
        name=encoder.architecture.name,
        embedding_dim=wanted,
        normalize=net.normalize,
        geometry=geometry.name,
        curvature=geometry.curvature,
        clip_r=geometry.clip_r,
    )
    return net, architecture


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


def make_loaders(plan: RunPlan, options: TrainOptions, sampler, pin_memory: bool, reporter: Reporter):
    """The training loader (batches from ``sampler``, decoded images cached when they fit) and the validation loader."""
    import torch

    image_size = plan.preprocess.image_size
    cache = _image_cache(plan.train_set, image_size, options, reporter)
    common = dict(num_workers=options.workers, persistent_workers=options.workers > 0, pin_memory=pin_memory, collate_fn=collate_samples)
    loader = torch.utils.data.DataLoader(
        TrainImages(plan.train_set, image_size, plan.preprocess.interpolation, options.flip, cache), batch_sampler=sampler, **common
    )
    val_loader = None
    if plan.val_set is not None:
        val_loader = torch.utils.data.DataLoader(
            EvalImages(plan.val_set.paths, plan.val_set.labels, plan.preprocess), batch_size=2 * options.batch_size, **common
        )
    return loader, val_loader

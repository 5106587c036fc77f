"""Labelled image folders: scanning, the class-level split, and the datasets train and eval read.

A labelled folder holds one subfolder per class. Every image is decoded once while
scanning, so an unreadable file is reported and skipped up front rather than
failing a training run halfway through.
"""

from __future__ import annotations

import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import InputError, TrainError
from ..images import ImageDecodeError, decode_image, is_image_path, resample_filter

__all__ = [
    "LabelledImages",
    "TrainImages",
    "EvalImages",
    "scan_class_folders",
    "split_classes",
    "parse_val_classes",
]

# Random resized crop: the share of the image's area kept and the aspect ratios allowed.
# Milder than ImageNet's (0.08, 1): retrieval needs most of the object in view.
CROP_SCALE = (0.4, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass
class LabelledImages:
    """Image paths with integer labels, and what the scan skipped.

    Attributes:
        paths: image files, grouped by class, sorted.
        labels: ``labels[i]`` indexes ``class_names`` for ``paths[i]``.
        class_names: sorted class folder names.
        skipped: ``(path, reason)`` for every file left out as unreadable.
        single_image_classes: classes left out because they hold one usable image.
    """

    paths: list[str]
    labels: list[int]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    single_image_classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def class_sizes(self) -> dict[str, int]:
        sizes = dict.fromkeys(self.class_names, 0)
        for label in self.labels:
            sizes[self.class_names[label]] += 1
        return sizes

    def subset(self, class_names: Sequence[str]) -> "LabelledImages":
        """The images of ``class_names`` only, relabelled 0..len(class_names)-1."""
        keep = {name: i for i, name in enumerate(sorted(class_names))}
        paths, labels = [], []
        for path, label in zip(self.paths, self.labels):
            new = keep.get(self.class_names[label])
            if new is not None:
                paths.append(path)
                labels.append(new)
        return LabelledImages(paths, labels, sorted(class_names))

    def skip_messages(self) -> list[str]:
        """One line per kind of skip, for warnings."""
        out = []
        if self.skipped:
            first_path, first_reason = self.skipped[0]
            more = f" and {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
            out.append(f"skipped {len(self.skipped)} unreadable image(s): {first_path} ({first_reason}){more}")
        if self.single_image_classes:
            names = ", ".join(self.single_image_classes[:5]) + (" ..." if len(self.single_image_classes) > 5 else "")
            out.append(
                f"skipped {len(self.single_image_classes)} class(es) with a single image (no positive pair possible): {names}"
            )
        return out


def _check_image(path: str) -> str | None:
    """None when ``path`` decodes, else the reason it does not."""
    try:
        with open(path, "rb") as fh:
            decode_image(fh.read(), min_size=32)
        return None
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    except ImageDecodeError as exc:
        return str(exc)


def scan_class_folders(
    data_dir: str | os.PathLike,
    *,
    min_images_per_class: int = 2,
    check_images: bool = True,
    threads: int | None = None,
) -> LabelledImages:
    """Find the images of a folder with one subfolder per class.

    Hidden entries and loose files at the top are ignored; images are found
    recursively inside each class folder.

    Args:
        data_dir: the labelled folder.
        min_images_per_class: classes with fewer usable images are left out (and listed).
            Training needs 2 (a positive pair); evaluation keeps single-image classes as distractors (1).
        check_images: decode every image once and skip the unreadable ones.
        threads: decoding threads (default: the number of CPUs, at most 8).

    Returns:
        A ``LabelledImages``; its ``skipped`` and ``single_image_classes`` say what was left out.

    Raises:
        InputError: ``data_dir`` is missing, not a folder, or has no class folder with images.
    """
    root = Path(data_dir)
    if not root.exists():
        raise InputError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder (expected one subfolder per class)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found: dict[str, list[str]] = {}
    for class_dir in class_dirs:
        files = sorted(
            str(p)
            for p in class_dir.rglob("*")
            if is_image_path(p) and not any(part.startswith(".") for part in p.relative_to(class_dir).parts) and p.is_file()
        )
        if files:
            found[class_dir.name] = files
    if not found:
        raise InputError(f"{root} has no class subfolders with images", hint="expected DATA_DIR/CLASS_NAME/image.jpg")

    skipped: list[tuple[str, str]] = []
    if check_images:
        all_paths = [p for files in found.values() for p in files]
        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            reasons = list(pool.map(_check_image, all_paths, chunksize=64))
        bad = {path: reason for path, reason in zip(all_paths, reasons) if reason is not None}
        skipped = sorted(bad.items())
        found = {name: [p for p in files if p not in bad] for name, files in found.items()}

    too_small = sorted(name for name, files in found.items() if 0 < len(files) < min_images_per_class)
    class_names = sorted(name for name, files in found.items() if len(files) >= max(1, min_images_per_class))
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        paths.extend(found[name])
        labels.extend([label] * len(found[name]))
    return LabelledImages(paths, labels, class_names, skipped, too_small)


def parse_val_classes(value: str | float | Sequence[str] | None) -> float | list[str]:
    """``0.2`` (a fraction of the classes) or ``"a,b,c"`` (explicit class names).

    Raises:
        TrainError: a fraction outside [0, 1).
    """
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        fraction = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            fraction = float(text)
        except ValueError:
            names = [name.strip() for name in text.split(",") if name.strip()]
            if not names:
                raise TrainError("--val-classes is empty", hint="give a fraction like 0.2 or class names a,b,c") from None
            return names
    else:
        return [str(name) for name in value]
    if not 0.0 <= fraction < 1.0 or math.isnan(fraction):
        raise TrainError(f"--val-classes {value} must be a fraction in [0, 1) or a comma-separated list of class names")
    return fraction


def split_classes(class_names: Sequence[str], val_classes: float | Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """Split classes (never images) into training and validation classes.

    A fraction picks that share of the classes at random (seeded, at least 2 when above 0);
    a list names them. Validation needs 2 classes to measure retrieval, training needs 2 for negatives.

    Returns:
        ``(train_classes, val_classes)``, both sorted and disjoint.

    Raises:
        TrainError: unknown class names, or too few classes left on either side.
    """
    names = sorted(class_names)
    if isinstance(val_classes, (int, float)):
        count = 0 if val_classes <= 0 else max(2, round(val_classes * len(names)))
        shuffled = list(names)
        random.Random(seed).shuffle(shuffled)
        val = sorted(shuffled[:count])
    else:
        val = sorted(set(val_classes))
        unknown = [name for name in val if name not in set(names)]
        if unknown:
            shown = ", ".join(unknown[:5])
            raise TrainError(f"--val-classes names {len(unknown)} class(es) not in the data: {shown}")
        if len(val) < 2:
            raise TrainError("--val-classes must name at least 2 classes (retrieval needs a wrong class to rank)")
    val_set = set(val)
    train = [name for name in names if name not in val_set]
    if len(train) < 2:
        raise TrainError(
            f"only {len(train)} class(es) left for training after holding out {len(val)} for validation",
            hint="training needs at least 2 classes; lower --val-classes or add classes",
        )
    return train, val


def _random_resized_crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box, drawn from ``rng`` so every sample is reproducible."""
    area = width * height
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


class TrainImages:
    """Training samples: decoded in DataLoader workers, randomly cropped and flipped, as uint8.

    Items are looked up with ``(index, sample_seed)`` keys from the batch sampler, so each
    sample's augmentation depends only on its seed: the same on any number of workers, and
    the same again when a run is resumed. With an ``ImageCache`` of the same images the
    decoded pixels come from memory instead of the files: identical samples, less work.
    """

    def __init__(self, images: LabelledImages, image_size: int, interpolation: str = "bicubic", flip: bool = True, cache=None):
        self.paths = images.paths
        self.labels = images.labels
        self.image_size = int(image_size)
        self.interpolation = interpolation
        self.flip = flip
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]):
        import numpy as np
        import torch
        from PIL import Image

        index, sample_seed = key
        if self.cache is not None:
            img = self.cache.image(index)
        else:
            path = self.paths[index]
            try:
                with open(path, "rb") as fh:
                    img = decode_image(fh.read(), min_size=self.image_size)
            except (OSError, ImageDecodeError) as exc:
                raise TrainError(f"cannot read {path} during training (changed since the scan?): {exc}") from None
        rng = random.Random(sample_seed)
        box = _random_resized_crop_box(img.width, img.height, rng)
        size = (self.image_size, self.image_size)
        img = img.resize(size, resample_filter(self.interpolation), box=box, reducing_gap=3.0)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1), self.labels[index]


class EvalImages:
    """Evaluation samples: the encoder's deterministic resize and centre crop, as uint8."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], preprocess):
        self.paths = list(paths)
        self.labels = list(labels)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from ..images import load_image_array

        return load_image_array(self.paths[index], self.preprocess), self.labels[index]

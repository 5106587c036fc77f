"""Training data: the class-level split and the augmented training samples.

Scanning labelled folders lives in ``vecmetric.evaluate.folders`` (eval reads them too).
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from ..errors import TrainError
from ..evaluate.folders import LabelledImages, SampleError
from ..images import ImageDecodeError, decode_image, resample_filter

__all__ = ["TrainImages", "split_classes", "parse_val_classes"]

# Random resized crop: the share of the image's area kept and the aspect ratios allowed.
# Milder than ImageNet's (0.08, 1): retrieval needs most of the object in view.
CROP_SCALE = (0.4, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


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
                return SampleError(path, str(exc))
        rng = random.Random(sample_seed)
        box = _random_resized_crop_box(img.width, img.height, rng)
        size = (self.image_size, self.image_size)
        img = img.resize(size, resample_filter(self.interpolation), box=box, reducing_gap=3.0)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1), self.labels[index]

"""Labelled image folders (one subfolder per class), as train and eval read them.

Classes follow the store's one label rule (``vecmetric.store.label_for``): an image's class is
the first folder below the data folder, however deep the image lies inside it. Every image
is decoded once while scanning, so an unreadable file is reported and skipped up front
rather than failing a run halfway through. Datasets hand a file that fails later (changed
since the scan) to the main process as a ``SampleError`` value, not as a worker exception
whose text would have to be parsed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .._system import decode_threads
from ..errors import InputError
from ..images import ImageDecodeError, decode_image, is_image_path
from ..store import label_for

__all__ = ["LabelledImages", "EvalImages", "SampleError", "collate_samples", "scan_class_folders"]


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
    found: dict[str, list[str]] = {}
    # Loose files at the top have no class (label_for gives None), so only folders are walked.
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.rglob("*"), key=str):
            hidden = any(part.startswith(".") for part in path.relative_to(class_dir).parts)
            if not hidden and is_image_path(path) and path.is_file():
                found.setdefault(label_for(str(path), str(root)), []).append(str(path))
    if not found:
        raise InputError(f"{root} has no class subfolders with images", hint="expected DATA_DIR/CLASS_NAME/image.jpg")

    skipped: list[tuple[str, str]] = []
    if check_images:
        all_paths = [p for files in found.values() for p in files]
        threads = threads or decode_threads()
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


@dataclass(frozen=True)
class SampleError:
    """A sample that could not be read in a DataLoader worker: the file and why."""

    path: str
    reason: str


def collate_samples(items):
    """DataLoader collation that passes the first ``SampleError`` of a batch on instead of a batch."""
    from torch.utils.data import default_collate

    for item in items:
        if isinstance(item, SampleError):
            return item
    return default_collate(items)


class EvalImages:
    """Evaluation samples: the encoder's deterministic resize and centre crop, as uint8 (3, S, S)."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], preprocess):
        self.paths = list(paths)
        self.labels = list(labels)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from ..images import decode_and_preprocess

        path = self.paths[index]
        try:
            with open(path, "rb") as fh:
                return decode_and_preprocess(fh.read(), self.preprocess), self.labels[index]
        except OSError as exc:
            return SampleError(path, f"cannot read: {exc.strerror or exc}")
        except ImageDecodeError as exc:
            return SampleError(path, str(exc))

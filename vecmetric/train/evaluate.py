"""``evaluate``: retrieval metrics of a model on a labelled folder, or of a labelled store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, StoreError
from .data import EvalImages, scan_class_folders
from .metrics import METRIC_KEYS, retrieval_metrics

__all__ = ["evaluate", "evaluate_embeddings", "COUNT_KEYS"]

EVAL_METRICS = ("cosine", "l2", "ip")
COUNT_KEYS = ("num_images", "num_classes", "num_queries", "num_skipped")


def evaluate_embeddings(embeddings, labels, metric: str = "cosine", skipped: int = 0) -> dict[str, Any]:
    """The six retrieval metrics and the counts for labelled vectors (each one queries all the others)."""
    scores = retrieval_metrics(embeddings, labels, metric)
    return {**{key: scores[key] for key in METRIC_KEYS}, **{key: scores[key] for key in COUNT_KEYS[:3]}, "num_skipped": skipped}


def _store_vectors(store: str | os.PathLike):
    import numpy as np

    try:
        from ..store import open_store
    except ImportError:
        raise StoreError("this vecmetric build has no store support") from None
    handle = open_store(store)
    table = handle.read_table(columns=["embedding", "label"])
    labels = table.column("label").to_pylist()
    keep = [i for i, label in enumerate(labels) if label not in (None, "")]
    if len(table) == 0:
        raise StoreError(f"store {store} is empty")
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    metric = getattr(handle, "metric", None)
    return vectors[keep], [labels[i] for i in keep], len(labels) - len(keep), metric


def evaluate(
    data_dir: str | os.PathLike | None = None,
    model: str = "default",
    *,
    store: str | os.PathLike | None = None,
    metric: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int | None = None,
    image_size: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Leave-one-out retrieval metrics: precision@1, R-precision, MAP@R, recall@1/5/10.

    Either embeds ``data_dir`` (one subfolder per class) with ``model``, or reads the
    vectors and labels of ``store`` (rows without a label are left out).

    Args:
        data_dir: labelled image folder (ignored when ``store`` is given).
        model: encoder spec for ``data_dir``.
        store: a store whose rows carry labels.
        metric: ``cosine``, ``l2`` or ``ip``; default: the model's (or the store's), else cosine.
        batch_size, device, workers: embedding settings.
        image_size: embed at this size instead of the model's own (e.g. the size a model was trained at).
        on_warning: receives one line per kind of skipped input.
        on_progress: called with (images done, total) while embedding.

    Returns:
        A dict with the six metrics and ``num_images``, ``num_classes``, ``num_queries``, ``num_skipped``.

    Raises:
        InputError: missing folder or no labelled images; StoreError: unusable store; EncoderError: bad model.
    """
    import numpy as np

    warn = on_warning or (lambda message: None)
    if metric is not None and metric not in EVAL_METRICS:
        raise InputError(f"unknown metric {metric!r}", hint="choose one of: " + ", ".join(EVAL_METRICS))
    if store is not None:
        vectors, labels, unlabelled, store_metric = _store_vectors(store)
        if unlabelled:
            warn(f"left out {unlabelled} store row(s) without a label")
        if len(labels) == 0:
            raise StoreError(f"store {store} has no rows with a label", hint="embed a labelled folder (one subfolder per class)")
        return evaluate_embeddings(vectors, labels, metric or store_metric or "cosine", skipped=unlabelled)

    if data_dir is None:
        raise InputError("give a labelled folder or --store")
    import torch

    from ..encoders import load_encoder
    from .options import default_workers

    encoder = load_encoder(model, device=device)  # first: a wrong spec fails before a long scan
    images = scan_class_folders(Path(data_dir), min_images_per_class=1)
    for message in images.skip_messages():
        warn(message)
    workers = default_workers() if workers is None else workers
    preprocess = encoder.preprocess
    if image_size:
        from dataclasses import replace

        preprocess = replace(preprocess, image_size=int(image_size))
    loader = torch.utils.data.DataLoader(
        EvalImages(images.paths, images.labels, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=encoder.device.type == "cuda",
    )
    chunks, done = [], 0
    for batch, _ in loader:
        chunks.append(encoder.embed_tensors(batch))
        done += len(batch)
        if on_progress:
            on_progress(done, len(images))
    vectors = np.concatenate(chunks)
    names = [images.class_names[label] for label in images.labels]
    return evaluate_embeddings(vectors, names, metric or encoder.metric, skipped=len(images.skipped))

"""``evaluate``: retrieval metrics of a model on a labelled folder, or of a labelled store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ..distances import geometry_of, get_metric
from ..errors import InputError, StoreError
from ..progress import Reporter, reporter_or_default
from .folders import EvalImages, SampleError, collate_samples, scan_class_folders
from .metrics import METRIC_KEYS, retrieval_metrics

__all__ = ["evaluate", "evaluate_embeddings", "embed_batches", "COUNT_KEYS"]

COUNT_KEYS = ("num_images", "num_classes", "num_queries", "num_skipped")


def evaluate_embeddings(embeddings, labels, metric: str = "cosine", skipped: int = 0, curvature: float | None = None) -> dict[str, Any]:
    """The six retrieval metrics and the counts for labelled vectors (each one queries all the others).

    ``curvature``: the Poincare ball's ``c`` for the ``poincare`` metric (exact hyperbolic distances).
    """
    scores = retrieval_metrics(embeddings, labels, metric, curvature=curvature)
    return {**{key: scores[key] for key in METRIC_KEYS}, **{key: scores[key] for key in COUNT_KEYS[:3]}, "num_skipped": skipped}


def embed_batches(embed: Callable[[Any], Any], batches: Iterable, on_batch: Callable[[int], None] | None = None):
    """Embed labelled batches ``(uint8 images, labels)``; returns ``(float32 vectors, labels)`` as numpy.

    Shared by ``eval`` (the encoder's ``embed_tensors``) and training's validation (the model being trained).

    Raises:
        InputError: a file of a batch could not be read (``SampleError`` from the dataset).
    """
    import numpy as np

    chunks, labels = [], []
    for batch in batches:
        if isinstance(batch, SampleError):
            raise InputError(f"cannot read {batch.path} (changed since the scan?): {batch.reason}")
        images, batch_labels = batch
        chunks.append(np.asarray(embed(images), dtype=np.float32))
        labels.append(np.asarray(batch_labels))
        if on_batch is not None:
            on_batch(len(images))
    return np.concatenate(chunks), np.concatenate(labels)


def _store_vectors(store: str | os.PathLike):
    """A store's labelled vectors, their labels, how many rows had no label, the store's metric and its model's geometry."""
    from ..store import embeddings_to_numpy, open_store

    handle = open_store(store)
    table = handle.read_table(columns=["embedding", "label"])
    if table.num_rows == 0:
        raise StoreError(f"store {store} is empty")
    labels = table.column("label").to_pylist()
    keep = [i for i, label in enumerate(labels) if label not in (None, "")]
    vectors = embeddings_to_numpy(table.column("embedding"))
    return vectors[keep], [labels[i] for i in keep], len(labels) - len(keep), handle.metric, geometry_of(handle.model)


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
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Leave-one-out retrieval metrics: precision@1, R-precision, MAP@R, recall@1/5/10.

    Either embeds ``data_dir`` (one subfolder per class) with ``model``, or reads the
    vectors and labels of ``store`` (rows without a label are left out).

    Args:
        data_dir: labelled image folder (ignored when ``store`` is given).
        model: encoder spec for ``data_dir``.
        store: a store whose rows carry labels.
        metric: ``cosine``, ``l2`` or ``ip``; default: the model's (or the store's), which for a hyperbolic
            model is the exact Poincare distance (``poincare``) at the model's curvature.
        batch_size, device, workers: embedding settings.
        image_size: embed at this size instead of the model's own (e.g. the size a model was trained at).
        reporter: receives one warning per kind of skipped input, and the embedding's progress.

    Returns:
        A dict with the six metrics and ``num_images``, ``num_classes``, ``num_queries``, ``num_skipped``.

    Raises:
        InputError: missing folder, no labelled images, bad options; StoreError: unusable store; EncoderError: bad model.
    """
    reporter = reporter_or_default(reporter)
    if metric is not None:
        get_metric(metric)
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {batch_size}")
    if image_size is not None and image_size < 16:
        raise InputError(f"--image-size must be at least 16, not {image_size}")
    if store is not None:
        vectors, labels, unlabelled, store_metric, geometry = _store_vectors(store)
        if unlabelled:
            reporter.warn(f"left out {unlabelled} store row(s) without a label")
        if len(labels) == 0:
            raise StoreError(f"store {store} has no rows with a label", hint="embed a labelled folder (one subfolder per class)")
        return evaluate_embeddings(vectors, labels, metric or store_metric, skipped=unlabelled, curvature=geometry.curvature)
    if data_dir is None:
        raise InputError("give DATA_DIR (one subfolder per class) or --store STORE")
    return _evaluate_folder(Path(data_dir), model, metric, batch_size, device, workers, image_size, reporter)


def _faster_on_cpu(encoder, reporter: Reporter):
    """On a CPU, the model's ONNX export run by onnxruntime (fp32) when it embeds faster than torch, as ``embed``
    does for a new store, so a folder and a store made from it get the same vectors."""
    from ..encoders.export import shared_export

    exported = shared_export(encoder, reporter)
    if exported is None or exported.info.onnxruntime_faster is False:
        return encoder
    return exported


def _evaluate_folder(data_dir: Path, model: str, metric, batch_size: int, device: str, workers, image_size, reporter: Reporter):
    """``evaluate`` for a labelled folder: embed it with ``model``, then score."""
    from dataclasses import replace

    import torch

    from .._system import loader_workers
    from ..encoders import load_encoder

    encoder = load_encoder(model, device=device)  # first: a wrong spec fails before a long scan
    if encoder.device.type == "cpu" and not image_size:
        encoder = _faster_on_cpu(encoder, reporter)
    images = scan_class_folders(data_dir, min_images_per_class=1)
    for message in images.skip_messages():
        reporter.warn(message)
    preprocess = replace(encoder.preprocess, image_size=int(image_size)) if image_size else encoder.preprocess
    workers = loader_workers(leave_one_cpu=True) if workers is None else workers
    loader = torch.utils.data.DataLoader(
        EvalImages(images.paths, images.labels, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=getattr(encoder, "device", None) is not None and encoder.device.type == "cuda",
    )
    reporter.start("embedding", len(images))
    vectors, labels = embed_batches(encoder.embed_tensors, loader, reporter.advance)
    reporter.close()
    names = [images.class_names[label] for label in labels]
    return evaluate_embeddings(vectors, names, metric or encoder.metric, skipped=len(images.skipped), curvature=encoder.geometry.curvature)

"""Export an encoder to ONNX, so queries can run with onnxruntime and without torch.

An export folder holds ``image.onnx`` (uint8 images in, embeddings out, normalisation inside),
for open_clip models with CLIP's tokenizer also ``text.onnx`` and the tokenizer's vocabulary,
and ``export.json``, written last: the commit point. Each graph is run by onnxruntime on sample
images (and texts) and compared with torch fp32 before it is recorded as usable. A model that
cannot be exported is recorded as ``failed`` with the reason, so it is not tried again.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .._fsutil import atomic_write_bytes, atomic_write_json
from ..runtime._format import (
    EXPORT_FILE,
    IMAGE_TOWER,
    STATUS_FAILED,
    STATUS_OK,
    TEXT_TOWER,
    ExportInfo,
    export_dir,
    sha256_hex,
)

__all__ = ["export_encoder", "export_dir", "ExportInfo"]

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_WRITTEN_FILES = (f"{IMAGE_TOWER}.onnx", f"{TEXT_TOWER}.onnx", VOCAB_FILE)


def export_encoder(
    encoder, folder: str | os.PathLike | None = None, sample_paths: Sequence[str | os.PathLike] | None = None, benchmark: bool = True
) -> ExportInfo:
    """Export ``encoder`` to ONNX in ``folder``, check it against torch fp32, and record the result.

    The torch.onnx dynamo exporter is tried first, then the TorchScript one. A tower is usable
    when onnxruntime's vectors keep a cosine of at least 0.9999 to torch fp32's on every sample
    (and, for ``ip``/``l2`` models, a relative error of at most 1e-3); a text tower also needs
    token ids equal to open_clip's.

    Args:
        encoder: a loaded ``Encoder`` (any device; the export runs on a CPU copy when needed).
        folder: where to write; default ``export_dir(encoder.fingerprint)`` in the user's cache.
        sample_paths: images to check the export on; default a few generated photo-like images.
        benchmark: also time onnxruntime against torch on this machine (about a second).

    Returns:
        The ``ExportInfo`` written to ``export.json``: ``status`` ``ok``, or ``failed`` with the
        ``reason`` (nothing is raised for a model that cannot be exported).

    Raises:
        InputError: a sample image cannot be read.
        OSError: the folder cannot be written.
    """
    import torch

    from ._export_check import compare, sample_batch
    from ._export_graphs import ImageGraph, on_cpu, run_torch

    start = time.perf_counter()
    folder = Path(folder) if folder is not None else export_dir(encoder.fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EXPORT_FILE).unlink(missing_ok=True)  # no commit point while the files change
    images = sample_batch(encoder.preprocess, sample_paths)
    threads = torch.get_num_threads()
    info = ExportInfo(
        folder,
        STATUS_FAILED,
        encoder.spec,
        encoder.fingerprint,
        dim=encoder.dim,
        metric=encoder.metric,
        architecture=json.loads(json.dumps(encoder.architecture.to_dict())),  # as export.json reads back
        preprocess=json.loads(json.dumps(encoder.preprocess.to_dict())),
        versions=_versions(),
    )
    graph = ImageGraph(on_cpu(encoder.model), encoder.preprocess.mean, encoder.preprocess.std).eval()
    expected = run_torch(graph, images)
    entry, runtime, reason = _export_tower(
        info, graph, images, threads, lambda rt: compare(rt.embed_tensors(images), expected, encoder.metric)
    )
    if entry is None:
        return _commit(replace(info, reason=f"image tower: {reason}"), start)
    info = replace(info, status=STATUS_OK, towers={IMAGE_TOWER: entry})
    if encoder.supports_text:
        info = _add_text_tower(info, encoder, threads)
    if benchmark:
        info = replace(info, benchmark=_benchmark(encoder, runtime, images, threads))
    return _commit(info, start)


def _export_tower(info: ExportInfo, graph, sample, threads: int, check: Callable, extra: dict | None = None):
    """Export one graph with each exporter in turn until one passes ``check(runtime)``.

    Returns:
        ``(entry, runtime, None)`` for the first export that passes, else ``(None, None, reason)``.
    """
    import numpy as np

    from ..runtime._onnx import OnnxEncoder
    from ._export_graphs import EXPORTERS, OUTPUT_NAME, describe_error, export_graph

    tower = graph.tower
    name = f"{tower}.onnx"
    example = np.concatenate([sample, sample])[:2]  # two rows: a batch of one would be specialised
    reasons = []
    for exporter in EXPORTERS:
        try:
            data, opset = export_graph(graph, example, exporter)
        except Exception as exc:  # exporters fail in many ways (torch._dynamo, onnxscript, ...): recorded, not raised
            reasons.append(f"{exporter} exporter: {describe_error(exc)}")
            continue
        atomic_write_bytes(info.folder / name, data)
        entry = {"file": name, "sha256": sha256_hex(data), "size": len(data), "input": graph.input_name, "output": OUTPUT_NAME}
        entry.update(exporter=exporter, opset=opset, **(extra or {}), **({"failed_exporters": reasons[:]} if reasons else {}))
        runtime = OnnxEncoder(replace(info, status=STATUS_OK, towers={**info.towers, tower: entry}), threads)
        try:
            entry["check"] = check(runtime)
        except Exception as exc:  # onnxruntime may refuse a graph the exporter produced
            entry["check"] = {"passed": False, "error": describe_error(exc)}
        if entry["check"]["passed"]:
            return entry, runtime, None
        reasons.append(f"{exporter} exporter: check failed {entry['check']}")
    (info.folder / name).unlink(missing_ok=True)
    return None, None, "; ".join(reasons)


def _add_text_tower(info: ExportInfo, encoder, threads: int) -> ExportInfo:
    """Add the text tower and the tokenizer's vocabulary, or record why the export has none."""
    import numpy as np

    from ..runtime._tokenizer import ClipTokenizer
    from ._export_check import CHECK_TEXTS, clip_tokenizer_settings, compare
    from ._export_graphs import TextGraph, on_cpu, run_torch

    clip_model = _text_model(encoder)
    if clip_model is None:
        return replace(info, text_reason="the encoder does not expose its open_clip model")
    reference, settings, reason = clip_tokenizer_settings(encoder.architecture.name)
    if reason:
        return replace(info, text_reason=reason)
    vocab = Path(settings["vocab_path"]).read_bytes()
    if ClipTokenizer(vocab, settings["context_length"], settings["clean"]).encoder != reference.encoder:
        return replace(info, text_reason="open_clip's tokenizer uses another vocabulary than CLIP's")
    atomic_write_bytes(info.folder / VOCAB_FILE, vocab)
    tokenizer = {"kind": "clip-bpe", "file": VOCAB_FILE, "sha256": sha256_hex(vocab), "size": len(vocab)}
    tokenizer.update(context_length=settings["context_length"], clean=settings["clean"])
    info = replace(info, tokenizer=tokenizer)
    tokens = reference(list(CHECK_TEXTS)).numpy()
    graph = TextGraph(on_cpu(clip_model)).eval()
    expected = run_torch(graph, tokens)

    def check(runtime) -> dict[str, Any]:
        tokens_equal = bool(np.array_equal(runtime.tokenize(CHECK_TEXTS), tokens))
        result = compare(runtime.embed_texts(CHECK_TEXTS), expected, "cosine")
        return {**result, "tokens_equal": tokens_equal, "passed": result["passed"] and tokens_equal}

    entry, _, reason = _export_tower(info, graph, tokens, threads, check, {"context_length": settings["context_length"]})
    if entry is None:
        return replace(info, tokenizer=None, text_reason=reason)
    return replace(info, towers={**info.towers, TEXT_TOWER: entry})


def _text_model(encoder):
    """The open_clip model whose ``encode_text`` the encoder calls, or None."""
    model = getattr(encoder, "text_model", None)
    if model is None and getattr(encoder, "_encode_text", None) is not None:
        # Encoder keeps the open_clip model only in the closure build_open_clip gives it.
        cells = encoder._encode_text.__closure__ or ()
        model = next((c.cell_contents for c in cells if hasattr(c.cell_contents, "encode_text")), None)
    return model


def _benchmark(encoder, runtime, images, threads: int) -> dict[str, Any]:
    """onnxruntime against the fastest torch path on the encoder's device (``auto`` precision: bf16 where
    the hardware has it), same threads: what ``embed`` would otherwise run."""
    import numpy as np
    import torch

    from ._device import resolve_precision
    from ._export_check import BENCHMARK_BATCH, throughput
    from ._inference import inference_autocast

    precision = resolve_precision(encoder.device, "auto")

    def torch_embed(batch):
        with torch.inference_mode(), inference_autocast(encoder.device, precision):
            return encoder.model(encoder.normalize(batch)).float().cpu().numpy()

    batch = np.resize(images, (BENCHMARK_BATCH, *images.shape[1:]))
    rates = throughput(runtime.embed_tensors, torch_embed, batch)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "batch": BENCHMARK_BATCH,
        "threads": threads,
        **rates,
        "torch_device": str(encoder.device),
        "torch_precision": precision,
        "load_average": load,
    }


def _commit(info: ExportInfo, start: float) -> ExportInfo:
    """Remove files the export does not list, then write ``export.json`` (atomically): the commit point."""
    listed = {entry["file"] for entry in info.towers.values()} | ({info.tokenizer["file"]} if info.tokenizer else set())
    for name in _WRITTEN_FILES:
        if name not in listed:
            (info.folder / name).unlink(missing_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info = replace(info, created=now, seconds=round(time.perf_counter() - start, 2))
    atomic_write_json(info.folder / EXPORT_FILE, info.to_dict())
    return info


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    found: dict[str, str | None] = {"vecmetric": __version__}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def shared_export(encoder, reporter=None):
    """The usable export of ``encoder`` for commands that have no store: from its run folder's ``_model/``
    when it is a training run, else from the per-user cache, exported there first when missing.

    Returns:
        An ``OnnxEncoder``, or None when the model cannot be exported (recorded, so not tried again).
    """
    from ..runtime import export_state, load_export, model_dir

    fingerprint = encoder.fingerprint
    candidates = [model_dir(encoder.spec)] if Path(encoder.spec).is_dir() else []
    for folder in [*candidates, export_dir(fingerprint)]:
        state, _ = export_state(folder, fingerprint)
        if state == "ok":
            return load_export(folder, fingerprint)
        if state == "failed":
            return None
    if reporter is not None:
        reporter.log(f"exporting the model to ONNX once, into {export_dir(fingerprint)}")
    info = export_encoder(encoder, export_dir(fingerprint))
    return load_export(info.folder, fingerprint) if info.ok else None

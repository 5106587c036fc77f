"""Run an exported model with onnxruntime: query embeddings without importing torch."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

from .._system import usable_cpus
from ..distances import geometry_of
from ..encoders._config import PreprocessConfig
from ..errors import ExportError, reason
from ._format import IMAGE_TOWER, TEXT_TOWER, ExportInfo, check_sizes, read_export_info, read_verified


def load_export(folder: str | os.PathLike, fingerprint: str | None = None, threads: int | None = None) -> "OnnxEncoder":
    """Open an export folder written by ``vecmetric.encoders.export.export_encoder``.

    Reads ``export.json`` and checks every file's size; each graph's sha256 is checked on the
    bytes handed to onnxruntime when its tower is first used. No session is created here.

    Args:
        folder: the export folder.
        fingerprint: the model fingerprint the caller expects (a store's); None accepts any.
        threads: onnxruntime intra-op threads; default the usable cores.

    Returns:
        An ``OnnxEncoder``.

    Raises:
        ExportError: no export, a failed one, a damaged one, or one made for another model.
    """
    info = read_export_info(folder)
    if fingerprint is not None and info.fingerprint != fingerprint:
        raise ExportError(f"the export in {folder} is of model {info.fingerprint}, not {fingerprint}")
    if not info.ok:
        raise ExportError(f"the ONNX export of {info.spec} failed: {info.reason}")
    if IMAGE_TOWER not in info.towers:
        raise ExportError(f"the export in {folder} has no image tower", hint="delete the folder and export again")
    check_sizes(info)
    return OnnxEncoder(info, threads)


class OnnxEncoder:
    """An export run by onnxruntime on the CPU, with the attributes vecmetric uses on an ``Encoder``.

    Each tower's session is created on its first use (a text query never loads the image graph),
    or by ``prepare``; that is when the graph's sha256 is checked, on the very bytes onnxruntime gets.

    Attributes:
        spec, fingerprint, dim, metric, preprocess: as the torch ``Encoder`` that was exported.
        supports_text: whether the export has a text tower.
        info: the export's ``ExportInfo``.
        threads: onnxruntime intra-op threads.
    """

    precision = "fp32"

    def __init__(self, info: ExportInfo, threads: int | None = None):
        self.info = info
        self.spec = info.spec
        self.fingerprint = info.fingerprint
        self.dim = int(info.dim)
        self.metric = info.metric
        self.preprocess = PreprocessConfig.from_dict(info.preprocess)
        self.threads = int(threads or usable_cpus())
        self._sessions: dict[str, Any] = {}
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def geometry(self):
        """Where the embeddings live, as the torch ``Encoder.geometry`` says (Euclidean, or a Poincare ball)."""
        return geometry_of(self.info.architecture)

    @property
    def supports_text(self) -> bool:
        return TEXT_TOWER in self.info.towers and self.info.tokenizer is not None

    def prepare(self, *towers: str) -> None:
        """Create the sessions of ``towers`` (default: all) now, checking their files' sha256.

        Raises:
            ExportError: a file is damaged or onnxruntime cannot load it.
        """
        for tower in towers or tuple(self.info.towers):
            if tower == TEXT_TOWER:
                self.tokenize([])
            self._session(tower)

    def _session(self, tower: str):
        if tower not in self.info.towers:
            raise ExportError(f"the export of {self.spec} has no {tower} tower")
        with self._lock:
            if tower not in self._sessions:
                self._sessions[tower] = self._create_session(self.info.towers[tower])
            return self._sessions[tower]

    def _create_session(self, entry: dict[str, Any]):
        import onnxruntime as ort

        data = read_verified(self.info.folder, entry)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle intra-op threads sleep instead of spinning: embed decodes images on the same cores and a
        # server runs several requests at once, and spinning threads take their CPU (measured: up to 1.5x
        # faster embedding on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types, not exported by name
            raise ExportError(f"onnxruntime cannot load {self.info.folder / entry['file']}: {reason(exc, 300)}") from None

    def _run(self, tower: str, array) -> Any:
        entry = self.info.towers[tower]
        out = self._session(tower).run([entry["output"]], {entry["input"]: array})[0]
        if out.shape != (len(array), self.dim):
            raise ExportError(f"the {tower} graph in {self.info.folder} returned shape {out.shape}, expected (N, {self.dim})")
        return out

    def embed_tensors(self, batch) -> Any:
        """Embed a uint8 image batch (N, 3, S, S); returns float32 numpy (N, dim).

        Raises:
            ValueError: the batch is not uint8 or not (N, 3, S, S) with this model's S.
            ExportError: the graph file is damaged or onnxruntime cannot run it.
        """
        import numpy as np

        batch = np.ascontiguousarray(batch)
        size = self.preprocess.image_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"expected a uint8 batch (N, 3, {size}, {size}), got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(IMAGE_TOWER, batch)

    def embed_paths(self, paths: Sequence[str | os.PathLike]) -> Any:
        """Embed image files, decoded and cropped as every other path does (``load_image_array``).

        Raises:
            InputError: a file cannot be read or decoded.
            ExportError: the graph file is damaged or onnxruntime cannot run it.
        """
        import numpy as np

        from ..images import load_image_array

        size = self.preprocess.image_size
        arrays = [load_image_array(p, self.preprocess) for p in paths]
        return self.embed_tensors(np.stack(arrays) if arrays else np.zeros((0, 3, size, size), np.uint8))

    def tokenize(self, texts: Sequence[str]) -> Any:
        """CLIP token ids, int64 (N, context_length), as open_clip's tokenizer gives them.

        Raises:
            ExportError: no text tower, or its vocabulary file is damaged.
        """
        if not self.supports_text:
            raise ExportError(
                f"the export of {self.spec} has no text tower" + (f": {self.info.text_reason}" if self.info.text_reason else ""),
                hint="text queries need an open_clip model",
            )
        with self._lock:
            if self._tokenizer is None:
                from ._tokenizer import ClipTokenizer

                tok = self.info.tokenizer
                vocab = read_verified(self.info.folder, tok)
                self._tokenizer = ClipTokenizer(vocab, int(tok["context_length"]), tok.get("clean", "lower"))
        return self._tokenizer(list(texts))

    def embed_texts(self, texts: Sequence[str]) -> Any:
        """Embed text queries into the image space; float32 numpy (N, dim), L2-normalised.

        Raises:
            ExportError: no text tower, or its files are damaged.
        """
        import numpy as np

        tokens = self.tokenize(texts)
        return self._run(TEXT_TOWER, tokens) if len(tokens) else np.zeros((0, self.dim), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What stores and indexes record about the model (the same keys as ``Encoder.describe``)."""
        return {
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "metric": self.metric,
            "architecture": dict(self.info.architecture or {}),
            "preprocess": self.preprocess.to_dict(),
            "geometry": geometry_of(self.info.architecture).to_dict(),
        }

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.spec!r}, dim={self.dim}, folder={str(Path(self.info.folder))!r}, threads={self.threads})"

"""The ``Encoder``: a loaded model on its device, with its preprocessing and fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

from ..errors import EncoderError
from ._config import ArchitectureConfig, PreprocessConfig
from ._inference import Normalizer, inference_autocast


def weights_fingerprint(model, architecture: ArchitectureConfig, preprocess: PreprocessConfig) -> str:
    """``NAME-HASH``: a hash of the architecture, preprocessing and every weight tensor.

    Two encoders with the same fingerprint produce the same vectors, whatever spec named them.
    """
    import torch

    digest = hashlib.sha256()
    # "kwargs" was a field of ArchitectureConfig (never read, since removed): hashed as it always
    # was, so the fingerprints that existing stores and indexes record stay valid.
    described = {**architecture.to_dict(), "kwargs": {}}
    digest.update(json.dumps([described, preprocess.to_dict()], sort_keys=True).encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"{architecture.name}-{digest.hexdigest()[:16]}"


class Encoder:
    """A model ready to embed images (and text, for open_clip), on one device.

    Attributes:
        spec: the spec that loads this encoder again (absolute path for checkpoints).
        fingerprint: identifies the weights; stores and indexes record it.
        dim: the embedding size.
        metric: the metric the embeddings are made for (``cosine`` means L2-normalised).
        preprocess: the image preprocessing.
        device, precision: where and how inference runs.
    """

    def __init__(
        self,
        spec: str,
        model,
        preprocess: PreprocessConfig,
        architecture: ArchitectureConfig,
        fingerprint: str,
        device,
        precision: str,
        metric: str = "cosine",
        encode_text: Callable | None = None,
    ):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.architecture = architecture
        self.fingerprint = fingerprint
        self.device = device
        self.precision = precision
        self.metric = metric
        self._encode_text = encode_text
        self.normalize = Normalizer(preprocess, device)

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    @property
    def geometry(self):
        """Where the embeddings live: a ``vecmetric.distances.Geometry`` (Euclidean, or a Poincare ball)."""
        from ..distances import geometry_of

        return geometry_of(self.architecture.to_dict())

    @property
    def supports_text(self) -> bool:
        return self._encode_text is not None

    def _autocast(self):
        return inference_autocast(self.device, self.precision)

    def embed_tensors(self, batch) -> "Any":
        """Embed a uint8 batch (N, 3, S, S, a tensor or numpy array); returns float32 (N, dim)."""
        import torch

        with torch.inference_mode(), self._autocast():
            out = self.model(self.normalize(batch))
        return out.float().cpu().numpy()

    def embed_paths(self, paths: Sequence[str]) -> "Any":
        """Embed image files (raises InputError on the first unusable one)."""
        import numpy as np

        from ..images import load_image_array

        return self.embed_tensors(np.stack([load_image_array(p, self.preprocess) for p in paths]))

    def embed_texts(self, texts: Sequence[str]) -> "Any":
        """Embed text queries into the image space (open_clip models only)."""
        if self._encode_text is None:
            raise EncoderError(f"model {self.spec} has no text tower", hint="text queries need an open_clip:ARCH@TAG model")
        with self._autocast():
            return self._encode_text(list(texts)).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        """What stores and indexes record about the model that made their vectors."""
        return {
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "metric": self.metric,
            "architecture": self.architecture.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "geometry": self.geometry.to_dict(),
        }

    def __repr__(self) -> str:
        return f"Encoder({self.spec!r}, dim={self.dim}, device={self.device}, precision={self.precision})"

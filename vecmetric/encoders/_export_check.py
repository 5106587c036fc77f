"""What an export is checked on and how: sample images and texts, the agreement test, the timing."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

from ..errors import reason
from ._config import PreprocessConfig

#: The ONNX vectors must keep at least this cosine similarity to torch fp32's, on every sample.
MIN_COSINE = 0.9999
#: For models whose vector length matters (``ip``, ``l2``): the largest ``|onnx - torch| / |torch|``.
#: fp32 exports stay under 1e-5 here (2.5e-6 for the default model); 1e-3 leaves room for other
#: CPUs' kernels and is still far tighter than a cosine of 0.9999 alone, which allows 1.4%.
MAX_RELATIVE_ERROR = 1e-3
SAMPLE_COUNT = 8
BENCHMARK_BATCH = 16

#: Texts the text tower and the tokenizer are checked on: punctuation, accents, emoji, HTML
#: entities, digits, a text longer than the context (truncated) and the empty string.
CHECK_TEXTS = (
    "a photo of a cat",
    "A red bicycle, leaning on a wall... at night?!",
    "Crème brûlée in a café — naïve façade, Ångström",
    "🚲 emoji 🐈\u200d⬛ and 👍🏽",
    "&amp; html &lt;entities&gt; and  extra   spaces ",
    "numbers 3.14159 and 2024, don't you'll we've",
    "日本語のテキスト",
    " ".join(["a very long caption that goes on"] * 20),
    "",
)


def natural_images(preprocess: PreprocessConfig, count: int = SAMPLE_COUNT, seed: int = 0):
    """Generated photo-like images (1/f noise, correlated colours, a few shapes), preprocessed.

    Natural images have a 1/f amplitude spectrum; uniform noise would drive a network far from
    the activations it sees in use, where an export is checked best.

    Returns:
        uint8 numpy (count, 3, S, S), cut by the one resize/crop geometry (``resize_and_crop``).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    from ..images import resize_and_crop

    rng = np.random.default_rng(seed)
    height, width = 240, 320
    freq = np.hypot(*np.meshgrid(np.fft.rfftfreq(width), np.fft.fftfreq(height)))
    freq[0, 0] = 1.0
    out = []
    for _ in range(count):
        spectrum = (rng.normal(size=(3, height, freq.shape[1])) + 1j * rng.normal(size=(3, height, freq.shape[1]))) / freq
        planes = np.fft.irfft2(spectrum, s=(height, width))
        planes = planes[0] * 0.7 + planes * 0.3  # shared luminance, so colours correlate as in photos
        planes = (planes - planes.min()) / (np.ptp(planes) or 1.0)
        img = Image.fromarray((planes.transpose(1, 2, 0) * 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
            box = (x, y, x + int(rng.integers(20, 80)), y + int(rng.integers(20, 80)))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        out.append(resize_and_crop(img, preprocess))
    return np.stack(out)


def sample_batch(preprocess: PreprocessConfig, sample_paths: Sequence[str | os.PathLike] | None):
    """The uint8 batch an export is checked on: the caller's images, else generated ones.

    Raises:
        InputError: a sample image cannot be read or decoded.
    """
    import numpy as np

    from ..images import load_image_array

    if not sample_paths:
        return natural_images(preprocess)
    return np.stack([load_image_array(p, preprocess) for p in sample_paths])


def compare(onnx_out, torch_out, metric: str) -> dict[str, Any]:
    """How closely the ONNX vectors follow torch's, and whether that is close enough.

    Returns:
        ``{"count", "min_cosine", "max_relative_error", "passed"}``.
    """
    import numpy as np

    a, b = np.asarray(onnx_out, np.float64), np.asarray(torch_out, np.float64)
    norm_b = np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * norm_b, 1e-30)
    relative = np.linalg.norm(a - b, axis=1) / np.maximum(norm_b, 1e-30)
    finite = bool(np.isfinite(a).all()) and a.shape == b.shape
    passed = finite and cosine.min() >= MIN_COSINE and (metric == "cosine" or relative.max() <= MAX_RELATIVE_ERROR)
    return {
        "count": len(a),
        "min_cosine": float(cosine.min()) if finite else None,
        "max_relative_error": float(relative.max()) if finite else None,
        "passed": bool(passed),
    }


def throughput(run_onnx: Callable, run_torch: Callable, batch, rounds: int = 3, budget_s: float = 1.0) -> dict[str, float]:
    """Images per second of each runner on ``batch``: the best of up to ``rounds`` timed runs.

    One warm-up run each, then the two runners alternate (so a burst of load from another process
    hits both alike) until ``rounds`` rounds or ``budget_s`` seconds of timed runs, at least one.
    """
    runners = {"onnxruntime": run_onnx, "torch": run_torch}
    best = {name: float("inf") for name in runners}
    for run in runners.values():
        run(batch)
    spent = 0.0
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch)
            seconds = time.perf_counter() - start
            best[name], spent = min(best[name], seconds), spent + seconds
        if spent >= budget_s:
            break
    return {f"{name}_images_per_s": round(len(batch) / seconds, 1) for name, seconds in best.items()}


def clip_tokenizer_settings(arch: str) -> tuple[Any, dict[str, Any] | None, str | None]:
    """How to rebuild ``open_clip.get_tokenizer(arch)`` without torch, or why that is not possible.

    Returns:
        ``(tokenizer, settings, None)`` for a plain ``SimpleTokenizer``: open_clip's tokenizer (the
        reference) and ``context_length``, ``clean`` and ``vocab_path``; ``(None, None, reason)``
        for any other tokenizer.
    """
    import open_clip
    from open_clip import tokenizer as oc_tokenizer

    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # HF and SentencePiece tokenizers may need a download or a missing package
        return None, None, f"open_clip cannot build its tokenizer here: {type(exc).__name__}: {reason(exc)}"
    if type(tokenizer) is not oc_tokenizer.SimpleTokenizer:
        return None, None, f"its tokenizer is {type(tokenizer).__name__}; only CLIP's BPE tokenizer (SimpleTokenizer) is exported"
    if getattr(tokenizer, "reduction_fn", None) is not None:
        return None, None, "its tokenizer shortens long texts at random (reduction_mask), which cannot be reproduced"
    clean = next((m for m in ("lower", "whitespace", "canonicalize") if tokenizer.clean_fn is oc_tokenizer.get_clean_fn(m)), None)
    if clean is None or len(tokenizer.all_special_ids) != 2:
        return None, None, "its SimpleTokenizer has settings the exported tokenizer does not reproduce"
    settings = {"context_length": int(tokenizer.context_length), "clean": clean, "vocab_path": oc_tokenizer.default_bpe()}
    return tokenizer, settings, None

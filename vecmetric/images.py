"""Safe, fast image decoding shared by embed, search, train and eval.

Decoding is defensive: the pixel count is capped (decompression bombs), animated
images give their first frame, every mode becomes RGB, and large JPEGs are decoded
at a reduced scale (draft mode) since the network needs only a few hundred pixels.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
from typing import Any, Iterator

from .errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)
MAX_PIXELS = 89_478_485  # Pillow's own DecompressionBombWarning limit, enforced as an error
DECODE_SECONDS = 30.0  # per image: a pathological file is skipped instead of hanging the run


class ImageDecodeError(Exception):
    """An image could not be decoded; the message says why (used for skip reports)."""


def is_image_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``ImageDecodeError`` if the block runs longer than ``seconds``.

    Uses SIGALRM, so it applies in a process's main thread (DataLoader workers and the CLI);
    elsewhere, or with ``seconds`` None, the block runs unlimited.
    """
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise ImageDecodeError(f"decoding took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode_image(data: bytes, min_size: int = 0, max_pixels: int = MAX_PIXELS):
    """Decode image bytes to an RGB ``PIL.Image``.

    Args:
        data: the file's bytes.
        min_size: JPEGs are draft-decoded at the smallest scale whose shorter side is still >= this.
        max_pixels: larger images are refused as decompression bombs.

    Raises:
        ImageDecodeError: empty, corrupt, truncated, oversized or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError("image has no pixels")
            if width * height > max_pixels:
                raise ImageDecodeError(f"decompression bomb: {width}x{height} pixels is over the {max_pixels} limit")
            _draft(img, min_size)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None


def _draft(img, min_size: int) -> None:
    """Let a JPEG decode at the smallest scale whose shorter side is still >= ``min_size``."""
    if img.format == "JPEG" and min_size:
        width, height = img.size
        scale = min_size / min(width, height)
        img.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))


def decoded_size(path: str | os.PathLike, min_size: int = 0) -> tuple[int, int]:
    """The ``(width, height)`` that ``decode_image(data, min_size)`` returns, read from the header alone.

    Raises:
        ImageDecodeError: not an image Pillow can open.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            _draft(img, min_size)
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"cannot read the image header: {exc}") from None


def _to_rgb(img):
    from PIL import Image

    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clipping.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype("uint8")).convert("RGB")
    return img.convert("RGB")


RESAMPLE_NAMES = ("bicubic", "bilinear", "nearest", "lanczos")


def resample_filter(name: str):
    """The Pillow filter for an interpolation name (``bicubic`` for unknown names, as timm does)."""
    from PIL import Image

    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}.get(
        name, Image.BICUBIC
    )


def crop_geometry(width: int, height: int, preprocess) -> tuple[int, int, int, int]:
    """The one resize-then-centre-crop geometry every path uses (CPU, GPU, ONNX queries).

    The shorter side is resized to ``preprocess.resize_size``, then an ``image_size`` square is
    cut from the centre.

    Returns:
        ``(new_width, new_height, left, top)``: the resized size and the crop's top-left corner in it.
    """
    size, short = preprocess.image_size, preprocess.resize_size
    scale = short / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def resize_and_crop(img, preprocess) -> "Any":
    """Resize the shorter side to ``preprocess.resize_size`` and centre crop to ``image_size``.

    Returns:
        A uint8 numpy array (3, S, S); normalisation happens later, batched, in the model's runtime.
    """
    import numpy as np

    size = preprocess.image_size
    width, height = img.size
    new_w, new_h, left, top = crop_geometry(width, height, preprocess)
    # Resizing only the source box that lands in the centre crop samples exactly the pixels that
    # resizing the whole image to (new_w, new_h) and cropping would (Pillow's filters still read
    # past the box edges), for a third less work; and a long, thin image (a 1 x 200000 PNG is
    # 470 bytes) costs no more than any other, where the whole resize would need billions of pixels.
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    img = img.resize((size, size), resample_filter(preprocess.interpolation), box=box, reducing_gap=3.0)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def decode_and_preprocess(data: bytes, preprocess, seconds: float | None = DECODE_SECONDS, max_pixels: int = MAX_PIXELS):
    """Bytes to the uint8 (3, S, S) numpy array the encoder takes, within a time limit.

    A server runs it under ``vecmetric.present.DecodeGuard`` (``seconds=None``: the guard's time limit
    holds in any thread, SIGALRM's only in the main one).

    Raises:
        ImageDecodeError: unusable image, more than ``max_pixels`` pixels, or decoding took longer than ``seconds``.
    """
    with time_limit(seconds):
        return resize_and_crop(decode_image(data, preprocess.resize_size, max_pixels=max_pixels), preprocess)


def load_image_array(path: str | os.PathLike, preprocess):
    """Read, decode and preprocess one image file to a uint8 (3, S, S) numpy array.

    Raises:
        InputError: the file cannot be read or decoded.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        return decode_and_preprocess(data, preprocess)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ImageDecodeError as exc:
        raise InputError(f"cannot use {path}: {exc}") from None

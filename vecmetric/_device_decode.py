"""JPEG decoding on the encoder's device (nvJPEG on CUDA), for ``embed_directory``.

On a GPU the model embeds thousands of images a second, far more than CPU workers can
decode. So the workers only read and hash files and check the JPEG header
(``device_decodable``); the main process decodes whole batches with
``torchvision.io.decode_jpeg`` on the GPU (A100 and newer use their hardware JPEG engines),
then resizes and crops there with the same geometry as ``images.resize_and_crop``.
Everything else (PNG, progressive or CMYK JPEGs, odd shapes) is still decoded by the workers.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from .images import MAX_PIXELS, ImageDecodeError, crop_geometry, decode_and_preprocess

MAX_DEVICE_ASPECT = 8  # thinner images go to the CPU path, which resizes only the crop box (the GPU resizes it all)
MAX_DEVICE_PIXELS = min(MAX_PIXELS, 40_000_000)  # larger JPEGs go to the CPU path, whose draft mode shrinks them
BATCH_PIXELS = 64_000_000  # per nvJPEG call and per resize: bounds GPU memory (~0.8 GB as float) whatever the photos
JPEG_END = b"\xff\xd9"


def device_decodable(data: bytes) -> int | None:
    """The pixel count of a JPEG the device decoder can take, else None.

    It takes complete baseline RGB or greyscale JPEGs of sensible shape. A file without its
    end marker is left to Pillow, which reports truncation; nvJPEG may silently fill the
    missing part.
    """
    if data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != JPEG_END:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            ok = (
                img.format == "JPEG"
                and img.mode in ("RGB", "L")
                and not img.info.get("progressive")
                and not img.info.get("progression")
                and 16 <= min(width, height)
                and width * height <= MAX_DEVICE_PIXELS
                and max(width, height) <= MAX_DEVICE_ASPECT * min(width, height)
            )
            return width * height if ok else None
    except Exception:  # noqa: BLE001 - anything odd goes to the CPU path, which reports it
        return None


def _chunks(pixel_counts: list[int], budget: int) -> list[list[int]]:
    """Consecutive index groups whose pixel counts add up to at most ``budget`` (at least one each)."""
    groups: list[list[int]] = [[]]
    total = 0
    for i, count in enumerate(pixel_counts):
        if groups[-1] and total + count > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += count
    return [g for g in groups if g]


def device_decode_available(device) -> bool:
    """Whether ``torchvision.io.decode_jpeg`` decodes on ``device`` here (nvJPEG built in, driver OK)."""
    try:
        import torch

        blob = torch.frombuffer(bytearray(_tiny_jpeg()), dtype=torch.uint8)
        return tuple(_decode_jpegs([blob], device)[0].shape) == (3, 16, 16)
    except Exception:  # noqa: BLE001 - any failure means: decode on the CPU
        return False


def _decode_jpegs(blobs: list, device) -> list:
    """``torchvision.io.decode_jpeg`` on a list of blobs, to RGB on ``device``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still work,
        # and torchvision is already a dependency (timm and open_clip need it).
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)


def _tiny_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(out, format="JPEG")
    return out.getvalue()


class DeviceJpegDecoder:
    """Decodes batches of JPEG bytes to uint8 (N, 3, S, S) tensors on ``device``."""

    def __init__(self, device, preprocess):
        self.device = device
        self.preprocess = preprocess

    def decode(self, blobs: list, pixel_counts: list[int] | None = None) -> list[Any]:
        """Decode and preprocess each blob (a 1-D uint8 CPU tensor of JPEG bytes).

        Args:
            blobs: the JPEGs.
            pixel_counts: each one's width x height (from ``device_decodable``), to decode a
                batch of large photos in parts; None decodes them all at once.

        Returns:
            Per blob, a uint8 (3, S, S) tensor on the device, or an ``ImageDecodeError``.
        """
        out: list[Any] = []
        for group in _chunks(pixel_counts, BATCH_PIXELS) if pixel_counts else [list(range(len(blobs)))]:
            part = [blobs[i] for i in group]
            try:
                out.extend(self._resize_and_crop(_decode_jpegs(part, self.device)))
            except RuntimeError:  # one bad blob fails the batch: go one by one
                out.extend(self._decode_one(blob) for blob in part)
        return out

    def _decode_one(self, blob):
        """One blob on the device; if nvJPEG refuses it, Pillow decides (and reports why)."""
        try:
            return self._resize_and_crop(_decode_jpegs([blob], self.device))[0]
        except RuntimeError:
            try:
                import torch

                return torch.from_numpy(decode_and_preprocess(blob.numpy().tobytes(), self.preprocess)).to(self.device)
            except ImageDecodeError as exc:
                return exc

    def _resize_and_crop(self, images: list) -> list[Any]:
        """Same geometry as ``images.resize_and_crop``, batched per input size on the device."""
        import torch
        import torch.nn.functional as F

        size = self.preprocess.image_size
        mode = self.preprocess.interpolation if self.preprocess.interpolation in ("bilinear", "bicubic", "nearest") else "bicubic"
        out: list[Any] = [None] * len(images)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(tuple(img.shape[-2:]), []).append(i)
        for (height, width), same_shape in by_shape.items():
            new_w, new_h, left, top = crop_geometry(width, height, self.preprocess)
            per_call = max(1, BATCH_PIXELS // max(height * width, new_h * new_w))
            for start in range(0, len(same_shape), per_call):
                members = same_shape[start : start + per_call]
                batch = torch.stack([images[i] for i in members])
                if (new_h, new_w) != (height, width):
                    kwargs = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
                    batch = F.interpolate(batch.float(), size=(new_h, new_w), mode=mode, **kwargs).round_().clamp_(0, 255).to(torch.uint8)
                batch = batch[..., top : top + size, left : left + size]
                for j, i in enumerate(members):
                    out[i] = batch[j]
        return out


def assemble_batch(meta, pixels, jpegs, decoder, device):
    """One uint8 batch in ``meta`` order from a collated batch of ``embed``'s decoding workers.

    Args:
        meta: (index, hash, kind, error) per item; kind "pixels", "jpeg" or None (nothing to embed).
        pixels: the rows decoded on the CPU, in order, or None.
        jpegs: (buffer, sizes, pixel_counts), the JPEG bytes to decode on the device, in order, or None.
        decoder: a ``DeviceJpegDecoder`` (unused when ``jpegs`` is None).

    Returns:
        (meta, batch): meta as (index, hash, decoded, error); batch None when nothing decoded.
    """
    import torch

    if jpegs is None:
        return [(i, h, kind is not None, err) for i, h, kind, err in meta], pixels
    buffer, sizes, pixel_counts = jpegs
    decoded = iter(decoder.decode(list(buffer.split(sizes)), pixel_counts))
    cpu_rows = iter(range(len(pixels) if pixels is not None else 0))
    rows, out_meta = [], []
    for i, digest, kind, err in meta:
        if kind == "jpeg":
            image = next(decoded)
            if isinstance(image, Exception):
                kind, err = None, str(image)
            else:
                rows.append(image)
        elif kind == "pixels":
            rows.append(pixels[next(cpu_rows)].to(device, non_blocking=True))
        out_meta.append((i, digest, kind is not None, err))
    return out_meta, torch.stack(rows) if rows else None

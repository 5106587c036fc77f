"""JPEG decoding on the model's device (``--decode device``): exercised here with torchvision on the CPU,
which runs the same code as nvJPEG on CUDA apart from the decoder itself."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from vecmetric._device_decode import DeviceJpegDecoder, device_decodable
from vecmetric.errors import InputError
from vecmetric.images import ImageDecodeError, decode_and_preprocess
from vecmetric.store import embed_directory, embeddings_to_numpy, open_store


def photo(size=(400, 300), seed=0, mode="RGB"):
    """A smooth, photo-like RGB picture (gradients plus blobs), as a PIL image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([(x / w) * 200 + 30, (y / h) * 180 + 40, ((x + y) / (w + h)) * 160 + 50], axis=-1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        arr[mask] = rng.uniform(0, 255, size=3)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert(mode)


def jpeg_bytes(img, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=92, **save)
    return out.getvalue()


def blob(data: bytes):
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def test_which_files_go_to_the_device():
    good = jpeg_bytes(photo())
    assert device_decodable(good) == 400 * 300  # its pixel count, for batching by memory
    assert device_decodable(jpeg_bytes(photo(mode="L")))
    assert not device_decodable(jpeg_bytes(photo(), progressive=True))  # nvJPEG's hardware path is baseline only
    assert not device_decodable(jpeg_bytes(photo(mode="CMYK")))
    assert not device_decodable(good[: len(good) // 2])  # truncated: Pillow must report it
    assert not device_decodable(jpeg_bytes(photo(size=(900, 40))))  # thin: the CPU path resizes only its crop box
    png = io.BytesIO()
    photo().save(png, format="PNG")
    assert not device_decodable(png.getvalue())
    assert not device_decodable(b"")


def test_device_geometry_matches_the_cpu_path(tiny_encoder):
    """Same resize and centre crop as ``resize_and_crop``; pixels within JPEG-decoder rounding."""
    preprocess = tiny_encoder.preprocess
    decoder = DeviceJpegDecoder(tiny_encoder.device, preprocess)
    shapes = [(400, 300), (300, 400), (333, 257), (160, 160), (400, 300)]  # a repeated size shares a resize
    datas = [jpeg_bytes(photo(size, seed=i)) for i, size in enumerate(shapes)]
    out = decoder.decode([blob(d) for d in datas])
    for data, got in zip(datas, out):
        want = torch.from_numpy(decode_and_preprocess(data, preprocess))
        assert got.shape == want.shape == (3, preprocess.image_size, preprocess.image_size)
        diff = (got.int() - want.int()).abs().float()
        assert diff.mean() < 2.0, diff.mean()
        assert np.percentile(diff.numpy(), 99) <= 12


def test_large_photos_are_decoded_in_parts_with_the_same_result(tiny_encoder, monkeypatch):
    import vecmetric._device_decode as device_decode

    assert device_decode._chunks([10, 10, 10, 40, 5], 25) == [[0, 1], [2], [3], [4]]
    decoder = DeviceJpegDecoder(tiny_encoder.device, tiny_encoder.preprocess)
    datas = [jpeg_bytes(photo(size, seed=i)) for i, size in enumerate([(400, 300), (400, 300), (333, 257), (400, 300)])]
    whole = decoder.decode([blob(d) for d in datas])
    monkeypatch.setattr(device_decode, "BATCH_PIXELS", 150_000)  # one photo per nvJPEG call and per resize
    parts = decoder.decode([blob(d) for d in datas], [device_decodable(d) for d in datas])
    assert all(bool((a == b).all()) for a, b in zip(whole, parts))


def test_a_bad_blob_fails_alone_with_pillows_reason(tiny_encoder):
    decoder = DeviceJpegDecoder(tiny_encoder.device, tiny_encoder.preprocess)
    good = jpeg_bytes(photo())
    bad = good[:2] + b"\x00" * 300 + good[-2:]  # SOI, garbage, EOI
    out = decoder.decode([blob(good), blob(bad), blob(good)])
    assert isinstance(out[1], ImageDecodeError)
    size = tiny_encoder.preprocess.image_size
    assert out[0].shape == out[2].shape == (3, size, size)
    assert bool((out[0] == out[2]).all())


def test_device_decoding_embeds_like_cpu_decoding(tmp_path, tiny_model):
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    for i in range(7):
        photo((640, 480), seed=i).save(folder / "a" / f"p{i}.jpg", quality=90)
    photo(seed=20, mode="L").save(folder / "a" / "grey.jpg", quality=90)
    photo(seed=21).save(folder / "a" / "progressive.jpg", quality=90, progressive=True)
    photo(seed=22).save(folder / "a" / "lossless.png")
    whole = (folder / "a" / "p0.jpg").read_bytes()
    (folder / "a" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    runs = {}
    for decode in ("cpu", "device"):
        result = embed_directory(folder, tmp_path / decode, model=tiny_model, device="cpu", precision="fp32", workers=1, batch_size=4, decode=decode)
        assert result.embedded == 10
        assert [Path(s["path"]).name for s in result.skipped] == ["truncated.jpg"]
        assert "truncated" in result.skipped[0]["reason"]
        table = open_store(tmp_path / decode).read_table()
        runs[decode] = dict(zip(table.column("path").to_pylist(), embeddings_to_numpy(table.column("embedding"))))
    assert runs["cpu"].keys() == runs["device"].keys()
    cosines = [float(runs["cpu"][p] @ runs["device"][p]) for p in runs["cpu"]]
    assert min(cosines) > 0.99, cosines


def test_decode_option_is_checked(image_folder, tmp_path, tiny_model, monkeypatch):
    with pytest.raises(InputError, match="--decode must be auto, cpu or device"):
        embed_directory(image_folder, tmp_path / "s", model=tiny_model, device="cpu", decode="gpu")
    import vecmetric.engines.local as engine_module

    monkeypatch.setattr(engine_module, "device_decode_available", lambda device: False)
    with pytest.raises(InputError, match="cannot decode JPEGs on cpu"):
        embed_directory(image_folder, tmp_path / "s", model=tiny_model, device="cpu", decode="device")
    # auto on a CPU decodes in the workers, whatever torchvision can do
    result = embed_directory(image_folder, tmp_path / "s", model=tiny_model, device="cpu", workers=0, decode="auto")
    assert result.embedded == 12


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs CUDA")
def test_nvjpeg_matches_pillow_and_auto_uses_it(tmp_path, tiny_model, tiny_encoder, monkeypatch):
    import torch

    from vecmetric._device_decode import device_decode_available

    assert device_decode_available(torch.device("cuda"))
    decoder = DeviceJpegDecoder(torch.device("cuda"), tiny_encoder.preprocess)
    datas = [jpeg_bytes(photo(size, seed=i)) for i, size in enumerate([(1024, 768), (640, 480), (333, 257)])]
    for data, got in zip(datas, decoder.decode([blob(d) for d in datas])):
        assert got.is_cuda
        diff = (got.cpu().int() - torch.from_numpy(decode_and_preprocess(data, tiny_encoder.preprocess)).int()).abs().float()
        assert diff.mean() < 3.0, diff.mean()
    folder = tmp_path / "photos" / "a"
    folder.mkdir(parents=True)
    for i, data in enumerate(datas):
        (folder / f"p{i}.jpg").write_bytes(data)
    cpu = embed_directory(folder.parent, tmp_path / "cpu", model=tiny_model, device="cpu", precision="fp32", workers=0)
    decoded = []
    real_decode = DeviceJpegDecoder.decode
    monkeypatch.setattr(DeviceJpegDecoder, "decode", lambda self, blobs: decoded.extend(blobs) or real_decode(self, blobs))
    gpu = embed_directory(folder.parent, tmp_path / "gpu", model=tiny_model, device="cuda", workers=2)  # decode=auto
    assert cpu.embedded == gpu.embedded == 3 and gpu.skipped == []
    assert len(decoded) == 3  # every JPEG went through nvJPEG
    a, b = (open_store(tmp_path / s).read_table().sort_by("path") for s in ("cpu", "gpu"))
    cosines = (embeddings_to_numpy(a.column("embedding")) * embeddings_to_numpy(b.column("embedding"))).sum(axis=1)
    assert cosines.min() > 0.99, cosines

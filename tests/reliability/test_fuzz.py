"""Fuzzed and damaged images: decoding returns a tensor or raises ImageDecodeError, nothing else;
``embed`` skips and lists every bad file, ``search`` refuses a bad query in one line, ``train``
skips them; a slow decode is cut off by the per-image time limit.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import pytest
from _reliability import draw, embed_args, rows_by_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecmetric.encoders import PreprocessConfig
from vecmetric.images import ImageDecodeError, decode_and_preprocess

PRE = PreprocessConfig(image_size=32, crop_pct=1.0)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def encoded(fmt: str, mode: str = "RGB", size=(24, 20), **save) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(len(fmt) + len(mode))
    img = Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


SEEDS = {
    "png": encoded("PNG"),
    "jpeg": encoded("JPEG", quality=80),
    "progressive-jpeg": encoded("JPEG", progressive=True),
    "gif": encoded("GIF", "P"),
    "webp": encoded("WEBP"),
    "tiff": encoded("TIFF", compression="tiff_lzw"),
    "bmp": encoded("BMP"),
}


def outcome(data: bytes) -> str:
    """"ok" or "skip"; anything else (another exception, a wrong array) fails the test."""
    try:
        pixels = decode_and_preprocess(data, PRE, seconds=10)
    except ImageDecodeError as exc:
        assert str(exc)  # a reason to report
        return "skip"
    assert pixels.shape == (3, 32, 32) and str(pixels.dtype) == "uint8"
    return "ok"


# --- property-based ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    outcome(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_truncated_images(fmt, data):
    seed = SEEDS[fmt]
    outcome(seed[: data.draw(st.integers(0, len(seed) - 1), label="length")])


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_bit_flips_in_headers(fmt, data):
    seed = bytearray(SEEDS[fmt])
    header = min(len(seed), 128)
    for _ in range(data.draw(st.integers(1, 6), label="flips")):
        pos = data.draw(st.integers(0, header - 1), label="byte")
        seed[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    outcome(bytes(seed))


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_overwritten_spans_anywhere(fmt, data):
    seed = bytearray(SEEDS[fmt])
    start = data.draw(st.integers(0, len(seed) - 1), label="start")
    junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
    seed[start : start + len(junk)] = junk
    outcome(bytes(seed))


# --- a corpus of damaged and unusual files ------------------------------------------------------------


def png_with_header(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit greyscale) with ``payload`` as pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


def thin_png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 90).save(buf, "PNG")
    return buf.getvalue()


def animated(fmt: str) -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (20, 20), c) for c in ((200, 10, 10), (10, 200, 10), (10, 10, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def palette_with_transparency() -> bytes:
    from PIL import Image

    img = Image.new("P", (20, 20), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (5, 5, 15, 15))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    return buf.getvalue()


def sixteen_bit_png() -> bytes:
    import numpy as np
    from PIL import Image

    arr = (np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 97).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")  # mode I;16
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    return data


def good_files() -> dict[str, bytes]:
    """Unusual but valid: each must be embedded."""
    return {
        "cmyk.jpg": encoded("JPEG", "CMYK"),
        "grey16.png": sixteen_bit_png(),
        "palette-transparent.png": palette_with_transparency(),
        "rgba.png": encoded("PNG", "RGBA"),
        "la.png": encoded("PNG", "LA"),
        "one-bit.bmp": encoded("BMP", "1"),
        "animated.gif": animated("GIF"),
        "animated.webp": animated("WEBP"),
        "float.tiff": encoded("TIFF", "F"),
        "png-without-IEND.png": SEEDS["png"][:-12],  # every pixel there: decoding may use it
        "png-named.jpg": SEEDS["png"],  # wrong extension, right content
        "jpeg-named.gif": SEEDS["jpeg"],
        "thin-1x20000.png": thin_png(1, 20_000),  # 1:20000: only the centre crop is resized
        "wide-20000x1.png": thin_png(20_000, 1),
    }


def bad_files() -> dict[str, bytes]:
    """Each must be skipped, with a reason, never crash or hang the run."""
    png, jpeg = SEEDS["png"], SEEDS["jpeg"]
    files = {
        "zero-byte.png": b"",
        "text.png": b"not an image at all\n",
        "random.jpg": bytes(range(256)) * 8,
        "bomb-100000x100000.png": png_with_header(100_000, 100_000),
        "bomb-header-only.png": png_with_header(60_000, 60_000)[:33],
        "zero-width.png": png_with_header(0, 10),
        "html.webp": b"<html><body>404</body></html>",
        "signature-flipped.png": bytes([png[0] ^ 0x01]) + png[1:],
        "jpeg-soi-flipped.jpg": b"\xff\xd9" + jpeg[2:],
        "gif-version-flipped.gif": b"GIF80a" + SEEDS["gif"][6:],
    }
    for offset in (1, 8, 16, 33, 41, len(png) // 2, len(png) - 40):
        files[f"png-cut-at-{offset}.png"] = png[:offset]
    for offset in (2, 20, 150, len(jpeg) // 3):
        files[f"jpeg-cut-at-{offset}.jpg"] = jpeg[:offset]
    for fmt in ("webp", "tiff", "gif"):
        files[f"{fmt}-cut-in-half.{fmt}"] = SEEDS[fmt][: len(SEEDS[fmt]) // 2]
    return files


@pytest.mark.parametrize("name,data", sorted(good_files().items()))
def test_unusual_valid_images_decode(name, data):
    assert outcome(data) == "ok"


@pytest.mark.parametrize("name,data", sorted(bad_files().items()))
def test_damaged_images_are_refused_with_a_reason(name, data):
    assert outcome(data) == "skip"


def test_thin_image_is_cheap_at_the_full_model_size():
    """A 470-byte 1 x 200000 PNG once needed ~50 GB to resize at 224 px (the process was OOM-killed)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    for data in (thin_png(1, 200_000), thin_png(200_000, 1)):
        assert tuple(decode_and_preprocess(data, PreprocessConfig()).shape) == (3, 224, 224)
    assert time.monotonic() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_corpus_through_embed_search_and_verify(cli, model32, tmp_path):
    images = tmp_path / "corpus"
    good = {**good_files(), **{f"plain-{i}.png": draw(tmp_path / f"p{i}.png", 70 + i).read_bytes() for i in range(3)}}
    bad = bad_files()
    for name, data in {**good, **bad}.items():
        (images / ("good" if name in good else "bad")).mkdir(parents=True, exist_ok=True)
        (images / ("good" if name in good else "bad") / name).write_bytes(data)
    store = tmp_path / "store"
    done = cli.run(*embed_args(images, store, model32), timeout=300)
    assert done.code == 0, done.err
    assert "Traceback" not in done.err
    assert f"{len(good)} embedded" in done.out and f"{len(bad)} skipped" in done.out
    assert f"{len(bad)} files skipped (and {len(bad) - 10} more); all listed in {store / '_errors.jsonl'}" in done.err
    assert sorted(Path(p).name for p in rows_by_path(store)) == sorted(good)
    errors = [json.loads(line) for line in (store / "_errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in errors) == sorted(bad)
    assert all(e["reason"] for e in errors)

    for name in ("zero-byte.png", "png-cut-at-41.png", "bomb-100000x100000.png", "text.png"):
        query = cli.run("search", images / "bad" / name, "--store", store, "--k", "1")
        assert query.code == 3, query.err
        lines = query.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: cannot use {images / 'bad' / name}: "), query.err
    ok = cli.run("search", images / "good" / "cmyk.jpg", "--store", store, "--k", "1", "--json", "--keep-query-images")
    assert ok.code == 0 and json.loads(ok.out.splitlines()[0])["path"] == str(images / "good" / "cmyk.jpg")


def test_train_skips_damaged_images(cli, tmp_path):
    data = tmp_path / "data"
    for c in range(6):
        for i in range(3):
            draw(data / f"class_{c}" / f"img_{i}.png", seed=300 + c * 10 + i, size=36)
    bad = bad_files()
    names = ["zero-byte.png", "bomb-100000x100000.png", "png-cut-at-41.png", "random.jpg", "jpeg-cut-at-150.jpg"]
    for c, name in enumerate(names):
        (data / f"class_{c}" / name).write_bytes(bad[name])
    args = ["train", data, "--out", tmp_path / "run", "--model", "timm:test_efficientnet@random", "--image-size", "32",
            "--batch-size", "4", "--m-per-class", "2", "--epochs", "1", "--val-classes", "class_4,class_5", "--device", "cpu",
            "--workers", "0", "--json"]
    done = cli.run(*args, timeout=300)
    assert done.code == 0, done.err
    assert "Traceback" not in done.err
    assert f"skipped {len(names)} unreadable image(s)" in done.err, done.err
    assert (tmp_path / "run" / "model.safetensors").is_file()


# --- the per-image time limit ---------------------------------------------------------------------


def test_time_limit_cuts_a_slow_decoder(monkeypatch):
    import vecmetric.images as images

    def slow(data, min_size=0, max_pixels=images.MAX_PIXELS):
        time.sleep(30)

    monkeypatch.setattr(images, "decode_image", slow)
    started = time.monotonic()
    with pytest.raises(ImageDecodeError, match="decoding took longer than 0.3 s"):
        images.decode_and_preprocess(SEEDS["png"], PRE, seconds=0.3)
    assert time.monotonic() - started < 5


def test_slow_image_is_skipped_by_embed_and_the_rest_embedded(monkeypatch, model32, tmp_path):
    import functools

    from _reliability import embed_in_process

    import vecmetric.engines.local as engine_module
    import vecmetric.images as images

    folder = tmp_path / "images"
    paths = [draw(folder / f"img_{i}.png", 400 + i) for i in range(4)]
    slow_bytes = paths[2].read_bytes()
    real = images.decode_image

    def sometimes_slow(data, *args, **kwargs):
        if data == slow_bytes:
            time.sleep(30)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(images, "decode_image", sometimes_slow)
    monkeypatch.setattr(engine_module, "decode_and_preprocess", functools.partial(images.decode_and_preprocess, seconds=0.5))
    started = time.monotonic()
    result = embed_in_process(folder, tmp_path / "store", model32)
    assert time.monotonic() - started < 29  # the slow decode (30 s) was cut: the bound is the point
    assert result.embedded == 3
    assert result.skipped == [{"path": str(paths[2]), "reason": "decoding took longer than 0.5 s"}]

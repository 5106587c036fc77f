"""Decoding every kind of input: good formats become RGB, bad ones a clear ImageDecodeError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vecmetric import images
from vecmetric.encoders import PreprocessConfig
from vecmetric.errors import InputError
from vecmetric.images import ImageDecodeError, decode_image, is_image_path, load_image_array, resize_and_crop


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gradient(size=(40, 30)) -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR chunk claiming ``width`` x ``height``, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + iend


# --- good inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "PPM"])
def test_common_formats_decode_to_rgb(fmt):
    img = decode_image(encode(gradient(), fmt))
    assert img.mode == "RGB" and img.size == (40, 30)
    # Lossy formats too keep the picture: the red channel still runs left to right.
    arr = np.asarray(img).astype(int)
    assert arr[:, -1, 0].mean() - arr[:, 0, 0].mean() > 200


def test_pgm_greyscale():
    grey = Image.fromarray(np.full((12, 10), 77, dtype=np.uint8), "L")
    img = decode_image(encode(grey, "PPM"))  # Pillow writes mode L as PGM (P5)
    assert encode(grey, "PPM")[:2] == b"P5"
    assert img.mode == "RGB" and img.size == (10, 12)
    assert np.asarray(img)[0, 0].tolist() == [77, 77, 77]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode_image(data)
    assert img.mode == "RGB"
    r, g, b = np.asarray(img)[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped():
    arr = np.zeros((8, 8), dtype=np.uint16)
    arr[:, 4:] = 1000  # far below 65535: a naive 8-bit conversion would clip or crush this
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = decode_image(data)
    out = np.asarray(img)
    assert img.mode == "RGB"
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 7].tolist() == [255, 255, 255]


def test_palette_with_transparency_composited_on_white():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    for x in range(4):
        for y in range(8):
            pal.putpixel((x, y), 1)
    data = encode(pal, "PNG", transparency=0)  # index 0 (black) is transparent
    img = decode_image(data)
    assert img.mode == "RGB"
    out = np.asarray(img)
    assert out[0, 0].tolist() == [255, 0, 0]  # opaque red kept
    assert out[0, 7].tolist() == [255, 255, 255]  # transparent -> white, not black


def test_rgba_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img = decode_image(encode(rgba, "PNG"))
    assert np.asarray(img)[0, 0].tolist() == [255, 255, 255]


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).n_frames == 3
    r, g, b = np.asarray(decode_image(data))[5, 5].tolist()
    assert r > 200 and g < 50 and b < 50


def test_large_jpeg_draft_decoded_at_reduced_size():
    data = encode(gradient((800, 600)), "JPEG")
    img = decode_image(data, min_size=100)
    assert min(img.size) >= 100  # never below what the network needs
    assert img.size[0] < 800  # but decoded at a reduced scale
    assert decode_image(data).size == (800, 600)


# --- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture\n" * 3, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, ""),
    ],
    ids=["zero-byte", "text", "png-signature-garbage", "jpeg-signature-garbage"],
)
def test_not_images_are_refused(data, reason):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert reason in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_files_are_refused(fmt):
    data = encode(gradient((64, 64)), fmt)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


def test_png_header_helper_is_a_real_png():
    assert Image.open(io.BytesIO(png_header_only(4, 3))).size == (4, 3)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "side",
    [10_000, 100_000],
    ids=["over-our-limit-under-pillows-error", "over-pillows-error-limit"],
)
def test_decompression_bomb_header_is_refused_without_decoding(side):
    data = png_header_only(side, side)  # 10^8 or 10^10 pixels claimed, 45 bytes on disk
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(data)


def test_max_pixels_limit():
    data = encode(gradient((40, 30)), "PNG")
    with pytest.raises(ImageDecodeError, match="decompression bomb: 40x30 pixels is over the 1000 limit"):
        decode_image(data, max_pixels=1000)
    assert decode_image(data, max_pixels=1200).size == (40, 30)


def test_image_suffixes():
    for name in ["a.jpg", "b.JPEG", "c.png", "d.webp", "e.gif", "f.bmp", "g.tif", "h.tiff", "i.pgm", "j.ppm"]:
        assert is_image_path(name), name
    for name in ["notes.txt", "a.jpg.txt", "model.pt", "noext"]:
        assert not is_image_path(name), name


# --- preprocessing ----------------------------------------------------------------------------


def test_resize_and_crop_shape_and_centre():
    pre = PreprocessConfig(image_size=32, crop_pct=1.0)
    # A wide image: left third red, middle green, right third blue -> centre crop is mostly green.
    arr = np.zeros((30, 90, 3), dtype=np.uint8)
    arr[:, :30, 0] = 255
    arr[:, 30:60, 1] = 255
    arr[:, 60:, 2] = 255
    out = resize_and_crop(Image.fromarray(arr), pre)
    assert tuple(out.shape) == (3, 32, 32) and str(out.dtype) == "uint8"
    assert out[1, 16, 16] == 255 and out[0, 16, 16] == 0


def test_load_image_array_errors_name_the_file(tmp_path):
    pre = PreprocessConfig(image_size=16)
    good = tmp_path / "ok.png"
    gradient().save(good)
    assert tuple(load_image_array(good, pre).shape) == (3, 16, 16)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match="bad.jpg: empty file"):
        load_image_array(bad, pre)
    with pytest.raises(InputError, match="cannot read"):
        load_image_array(tmp_path / "missing.png", pre)


def test_module_limit_is_pillows():
    assert images.MAX_PIXELS == Image.MAX_IMAGE_PIXELS

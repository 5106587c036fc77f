"""Thumbnails: size, modes, unreadable input, and huge JPEGs never decoded at full size."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from vecmetric.images import ImageDecodeError
from vecmetric.present import encode_thumbnail, make_thumbnail, thumbnail_bytes
from vecmetric.present import thumbnails as thumbnails_module


def _png(img) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("source_size, size, expected", [((400, 300), 100, (100, 75)), ((300, 400), 100, (75, 100)), ((40, 30), 100, (40, 30))])
def test_fits_the_box_keeps_aspect_and_never_enlarges(source_size, size, expected):
    thumb = make_thumbnail(_png(Image.new("RGB", source_size, (10, 200, 30))), size)
    assert thumb.size == expected
    assert thumb.mode == "RGB"
    assert thumb.getpixel((thumb.width // 2, thumb.height // 2)) == (10, 200, 30)


def test_every_mode_becomes_rgb(tmp_path):
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent: composited on white
    grey16 = Image.new("I;16", (64, 64), 1000)
    for name, img in {"rgba": rgba, "grey16": grey16, "palette": Image.new("P", (64, 64), 3)}.items():
        path = tmp_path / f"{name}.png"
        img.save(path)
        assert make_thumbnail(path, 32).mode == "RGB", name
    assert make_thumbnail(tmp_path / "rgba.png", 32).getpixel((5, 5)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (50, 50), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    assert make_thumbnail(out.getvalue(), 20).getpixel((10, 10)) == (255, 0, 0)


@pytest.mark.parametrize("data, reason", [(b"", "empty"), (b"not an image at all", "not an image"), (_png(Image.new("RGB", (80, 80)))[:60], "corrupt")])
def test_unreadable_bytes_raise_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        make_thumbnail(data, 32)


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read the file"):
        make_thumbnail(tmp_path / "nope.png", 32)


def test_pixel_cap_refuses_before_decoding():
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        make_thumbnail(_png(Image.new("RGB", (100, 100))), 32, max_pixels=9_999)


def test_encoded_formats_round_trip():
    img = Image.new("RGB", (30, 20), (0, 0, 255))
    assert Image.open(io.BytesIO(encode_thumbnail(img, "png"))).format == "PNG"
    assert Image.open(io.BytesIO(encode_thumbnail(img, "jpg"))).format == "JPEG"
    assert Image.open(io.BytesIO(thumbnail_bytes(_png(img), 10, "PNG"))).size == (10, 7)
    with pytest.raises(ValueError, match="JPEG, PNG"):
        encode_thumbnail(img, "gif")


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory):
    """12000 x 7000 (84 MP, under decode_image's 89.5 MP cap): 252 MB as RGB at full size."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("L", (12000, 7000), 90).save(path, quality=50)
    return path


def test_huge_jpeg_is_draft_decoded_at_an_eighth(huge_jpeg, monkeypatch):
    decoded = []
    real = thumbnails_module.decode_image

    def spy(*args, **kwargs):
        img = real(*args, **kwargs)
        decoded.append(img.size)
        return img

    monkeypatch.setattr(thumbnails_module, "decode_image", spy)
    thumb = make_thumbnail(huge_jpeg, 256)
    assert thumb.size == (256, 149)
    assert decoded == [(1500, 875)]  # JPEG's smallest DCT scale, 1/8, still >= 256 px on the short side


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
def test_huge_jpeg_thumbnail_peak_memory_is_far_below_a_full_decode(huge_jpeg):
    # Pillow allocates image memory outside tracemalloc's sight, so measure the process's peak RSS:
    # VmHWM, which starts afresh at exec (ru_maxrss would carry over pytest's own peak).
    script = textwrap.dedent(
        f"""
        from vecmetric.present import make_thumbnail

        def peak_kb():
            return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])

        before = peak_kb()
        make_thumbnail({str(huge_jpeg)!r}, 256)
        print((peak_kb() - before) / 1024)
        """
    )
    grown_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert grown_mb < 60, f"peak grew by {grown_mb:.0f} MB; a full-size RGB decode needs 252 MB"


def test_present_never_imports_torch(tmp_path):
    script = (
        "import sys, vecmetric.present as p; from PIL import Image; "
        f"Image.new('RGB', (20, 20)).save({str(tmp_path / 'x.png')!r}); p.make_thumbnail({str(tmp_path / 'x.png')!r}, 8); "
        "print(sorted(m for m in ('torch', 'timm', 'open_clip', 'vecmetric.train') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "[]"

"""DecodeGuard: byte cap, pixel cap, a time limit that kills the decode, a bound on concurrent decodes.

Slow decodes are simulated with a worker function that never returns, so every outcome is
decided by the guard, not by timing luck.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from _present_helpers import echo_length, wait_forever
from PIL import Image

from vecmetric._fsutil import pid_alive
from vecmetric.images import ImageDecodeError
from vecmetric.present import DecodeGuard


def _jpeg(size=(300, 200), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def _wait_for_file(path, seconds=60.0) -> str:
    """Wait until a worker has written its pid (a state, polled with a bounded deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture
def guard():
    with DecodeGuard(workers=1, seconds=60) as g:
        yield g


def test_thumbnail_in_a_worker_process(guard):
    thumb = Image.open(io.BytesIO(guard.thumbnail(_jpeg(), 60, "PNG")))
    assert thumb.format == "PNG" and thumb.size == (60, 40)
    assert thumb.getpixel((30, 20))[:3] == pytest.approx((200, 30, 30), abs=3)


def test_byte_cap_refuses_before_decoding():
    with DecodeGuard(max_bytes=1000) as g:
        with pytest.raises(ImageDecodeError, match="over the 1000 byte limit"):
            g.thumbnail(b"x" * 1001, 64)
        assert g._live == set()  # no worker was even started


def test_pixel_cap_refuses_a_bomb():
    with DecodeGuard(max_pixels=10_000, seconds=60) as g:
        with pytest.raises(ImageDecodeError, match=r"decompression bomb: 300x200 pixels"):
            g.thumbnail(_jpeg(), 64)


def test_reasons_are_one_line(guard):
    with pytest.raises(ImageDecodeError) as info:
        guard.thumbnail(b"this is not an image", 64)
    assert "\n" not in str(info.value) and "not an image" in str(info.value)


def test_time_limit_kills_the_decode_then_the_next_call_gets_a_fresh_worker(tmp_path):
    pid_file = tmp_path / "pid"
    with DecodeGuard(workers=1, seconds=0.5) as g:
        with pytest.raises(ImageDecodeError, match=r"^decoding took longer than 0.5 s$"):
            g.run(wait_forever, b"data", str(pid_file))
        stuck = int(pid_file.read_text())
        assert not pid_alive(stuck)  # killed and reaped, not merely abandoned
        assert g.run(echo_length, b"12345") == 5


def test_time_limit_holds_off_the_main_thread(tmp_path):
    pid_file, outcome = tmp_path / "pid", []
    with DecodeGuard(workers=1, seconds=0.5) as g:

        def in_a_thread():
            try:
                g.run(wait_forever, b"data", str(pid_file))
            except ImageDecodeError as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join(timeout=120)
    assert outcome == ["decoding took longer than 0.5 s"]


def test_concurrent_decodes_are_bounded(tmp_path):
    pid_file, outcome = tmp_path / "pid", []
    g = DecodeGuard(workers=1, seconds=300, wait_seconds=0.2)

    def occupy():
        try:
            g.run(wait_forever, b"data", str(pid_file))
        except ImageDecodeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=occupy)
    thread.start()
    try:
        pid = int(_wait_for_file(pid_file))  # the only worker is now busy
        with pytest.raises(ImageDecodeError, match="busy: 1 decodes already running"):
            g.thumbnail(_jpeg(), 64)
    finally:
        g.close()  # kills the busy worker: the blocked call ends with an error
        thread.join(timeout=120)
    assert not pid_alive(pid)
    assert len(outcome) == 1 and "died" in outcome[0]
    with pytest.raises(ImageDecodeError, match="closed"):
        g.thumbnail(_jpeg(), 64)

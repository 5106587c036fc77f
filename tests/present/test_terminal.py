"""Terminal previews: detection from the environment, and the exact escape-code framing."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from vecmetric.present import detect_protocol, inline_image, iterm2_sequence, kitty_sequence, preview_line, preview_unavailable


class _Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


TTY = _Stream(True)


@pytest.mark.parametrize(
    "env, protocol",
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "3"}, "kitty"),
        ({"TERM": "xterm-ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "iterm2"),
        ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, "iterm2"),  # iTerm2 over ssh
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "iterm2"),
        ({"TERM": "xterm-256color"}, None),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"}, None),
        ({}, None),
        ({"TERM": "tmux-256color", "KITTY_WINDOW_ID": "3"}, None),
        ({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-0/default,1,0"}, None),
    ],
)
def test_detection_from_the_environment(env, protocol):
    assert detect_protocol(TTY, env) == protocol
    reason = preview_unavailable(TTY, env)
    assert (reason is None) == (protocol is not None)


def test_reasons_say_why():
    assert preview_unavailable(_Stream(False), {"TERM": "xterm-kitty"}) == "standard output is not a terminal"
    assert detect_protocol(_Stream(False), {"TERM": "xterm-kitty"}) is None
    assert detect_protocol(io.StringIO(), {"TERM": "xterm-kitty"}) is None  # no real isatty: not a TTY
    assert "tmux" in preview_unavailable(TTY, {"TERM": "screen-256color"})
    assert "TERM=xterm-256color" in preview_unavailable(TTY, {"TERM": "xterm-256color"})
    assert "TERM=unset" in preview_unavailable(TTY, {})


_KITTY = re.compile(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\")


@pytest.mark.parametrize("n_bytes, n_chunks", [(10, 1), (3072, 1), (3073, 2), (9216, 3), (10_000, 4)])
def test_kitty_chunks_and_final_flag(n_bytes, n_chunks):
    data = bytes(range(256)) * (n_bytes // 256) + bytes(n_bytes % 256)
    sequence = kitty_sequence(data)
    escapes = _KITTY.findall(sequence)
    assert "".join(f"\x1b_G{k};{p}\x1b\\" for k, p in escapes) == sequence  # nothing outside the escapes
    assert len(escapes) == n_chunks
    keys = [k for k, _ in escapes]
    assert keys[0] == f"a=T,f=100,q=2,m={int(n_chunks > 1)}"
    assert keys[1:] == ["m=1"] * (n_chunks - 2) + ["m=0"] * (n_chunks > 1)
    payloads = [p for _, p in escapes]
    assert all(len(p) == 4096 for p in payloads[:-1]) and 0 < len(payloads[-1]) <= 4096
    assert base64.standard_b64decode("".join(payloads)) == data


def test_kitty_columns_and_empty_data():
    assert kitty_sequence(b"png", columns=12).startswith("\x1b_Ga=T,f=100,q=2,c=12,m=0;")
    with pytest.raises(ValueError):
        kitty_sequence(b"")


def test_iterm2_sequence():
    data = b"\x89PNG fake bytes"
    sequence = iterm2_sequence(data, name="café.png", width=8)
    match = re.fullmatch(r"\x1b\]1337;File=([^:]*):([A-Za-z0-9+/=]*)\x07", sequence)
    assert match
    args = dict(arg.split("=", 1) for arg in match.group(1).split(";"))
    assert args == {"size": str(len(data)), "inline": "1", "name": base64.b64encode("café.png".encode()).decode(), "width": "8"}
    assert base64.b64decode(match.group(2)) == data
    assert inline_image(data, "iterm2") == iterm2_sequence(data)
    with pytest.raises(ValueError, match="kitty, iterm2"):
        inline_image(data, "sixel")


def test_preview_line_shows_a_png_thumbnail_or_the_reason(tmp_path):
    path = tmp_path / "red.jpg"
    Image.new("RGB", (400, 200), (255, 0, 0)).save(path)
    line = preview_line(str(path), "#1  0.1000  cats", "kitty", size=64)
    escapes = _KITTY.findall(line)
    png = base64.standard_b64decode("".join(p for _, p in escapes))
    thumb = Image.open(io.BytesIO(png))
    assert thumb.format == "PNG" and thumb.size == (64, 32)
    assert line.endswith("\x1b\\ #1  0.1000  cats")
    assert preview_line(str(tmp_path / "gone.jpg"), "cap", "kitty").startswith("[cannot show: cannot read the file")

"""Inline thumbnails in terminals that speak the kitty graphics or the iTerm2 image protocol.

Detection reads the environment only (no query sent to the terminal, so nothing can hang):
kitty (``TERM=xterm-kitty`` or ``KITTY_WINDOW_ID``) and Ghostty (``TERM=xterm-ghostty`` or
``TERM_PROGRAM=ghostty``) get the kitty protocol; iTerm2 (``TERM_PROGRAM=iTerm.app`` or
``LC_TERMINAL=iTerm2``, which survives ssh) and WezTerm (``TERM_PROGRAM=WezTerm``) get iTerm2's
``OSC 1337 File=``, WezTerm's most complete image protocol (its kitty support is partial).
Inside tmux or screen no preview is attempted: they drop these sequences unless configured.
"""

from __future__ import annotations

import base64
import os
import sys
from typing import IO, Mapping

from ..images import ImageDecodeError
from .thumbnails import encode_thumbnail, make_thumbnail

KITTY = "kitty"
ITERM2 = "iterm2"
KITTY_CHUNK = 4096  # the protocol's limit on base64 bytes per escape code


def _detect(stream: IO | None, environ: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    stream = sys.stdout if stream is None else stream
    env = os.environ if environ is None else environ
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return None, "standard output is not a terminal"
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return None, "inside tmux or screen, which do not pass inline images through"
    if term in ("xterm-kitty", "xterm-ghostty") or env.get("KITTY_WINDOW_ID") or program == "ghostty":
        return KITTY, None
    if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return ITERM2, None
    return None, f"this terminal (TERM={term or 'unset'}) is not one known to show images (kitty, Ghostty, iTerm2, WezTerm)"


def detect_protocol(stream: IO | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """``"kitty"``, ``"iterm2"`` or None: the image protocol the terminal behind ``stream`` speaks.

    Args:
        stream: where images would be written (default ``sys.stdout``); must be a TTY.
        environ: the environment to read (default ``os.environ``).
    """
    return _detect(stream, environ)[0]


def preview_unavailable(stream: IO | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why no inline preview is possible (one line for a notice), or None when it is."""
    return _detect(stream, environ)[1]


def kitty_sequence(png: bytes, columns: int | None = None) -> str:
    """Escape codes that transmit and show a PNG with the kitty graphics protocol.

    The base64 payload is split into chunks of at most 4096 bytes; the first escape carries
    the keys (``a=T`` transmit and display, ``f=100`` PNG, ``q=2`` no replies on stdin, ``c``
    columns if given), every later one only ``m``; ``m=1`` on all but the last, which has ``m=0``.
    """
    if not png:
        raise ValueError("no image data")
    payload = base64.standard_b64encode(png).decode("ascii")
    chunks = [payload[i : i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)]
    first = "a=T,f=100,q=2" + (f",c={int(columns)}" if columns else "")
    out = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        out.append(f"\x1b_G{first + ',' if n == 0 else ''}m={more};{chunk}\x1b\\")
    return "".join(out)


def iterm2_sequence(data: bytes, name: str | None = None, width: int | str | None = None) -> str:
    """iTerm2's ``OSC 1337 ; File=[args] : base64 BEL`` for an inline image.

    Args:
        data: the image file's bytes (PNG, JPEG, GIF...).
        name: shown by iTerm2 (sent base64-encoded, as the protocol asks).
        width: in cells (``12``), pixels (``"96px"``) or percent (``"20%"``); default: the image's own.
    """
    if not data:
        raise ValueError("no image data")
    args = [f"size={len(data)}", "inline=1"]
    if name:
        args.append("name=" + base64.b64encode(name.encode("utf-8")).decode("ascii"))
    if width:
        args.append(f"width={width}")
    return f"\x1b]1337;File={';'.join(args)}:{base64.b64encode(data).decode('ascii')}\x07"


def inline_image(png: bytes, protocol: str, columns: int | None = None) -> str:
    """The escape codes showing ``png`` in a terminal of ``protocol`` (``"kitty"`` or ``"iterm2"``)."""
    if protocol == KITTY:
        return kitty_sequence(png, columns)
    if protocol == ITERM2:
        return iterm2_sequence(png, width=columns)
    raise ValueError(f"unknown image protocol {protocol!r}; choose one of: {KITTY}, {ITERM2}")


def preview_line(path: str, caption: str, protocol: str, size: int = 96, columns: int | None = None) -> str:
    """A thumbnail of ``path`` inline, then ``caption``; an unreadable image gives its reason instead.

    Returns:
        One line for the terminal, without the newline.
    """
    try:
        png = encode_thumbnail(make_thumbnail(path, size), "PNG")
    except ImageDecodeError as exc:
        return f"[cannot show: {exc}] {caption}"
    return f"{inline_image(png, protocol, columns)} {caption}"

"""Shared by the presentation tests; the decode guard's worker processes import these functions by name."""

import os
import threading

COLOURS = [(230, 20, 20), (20, 180, 40), (30, 40, 220), (240, 200, 0), (150, 0, 160)]


def wait_forever(data: bytes, pid_file: str) -> None:
    """Say which process this is, then never return: a decode that only a kill can stop."""
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    threading.Event().wait()


def echo_length(data: bytes) -> int:
    return len(data)

"""What the libraries under vecmetric say (open_clip, timm, huggingface_hub, torch, Ray): quiet by default.

vecmetric reports in its own words (one ``Error:`` line, warnings about the input); the log lines
and Python warnings of the libraries it calls would repeat or contradict that (a failed download
logged before the error, retry warnings with URLs). ``vecmetric --verbose COMMAND`` shows them,
each prefixed with the name of the library that said it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["configure_logging"]

_QUIET_ENV = {
    "HF_HUB_VERBOSITY": "error",  # huggingface_hub has a handler of its own: it must be told before it is imported
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",
}


def configure_logging(verbose: bool) -> None:
    """Route library logging and warnings: swallowed unless ``verbose``, then printed to stderr with their source."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vecmetric", False):
            root.removeHandler(handler)
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        for name, value in _QUIET_ENV.items():
            os.environ.setdefault(name, value)
        handler = logging.NullHandler()  # stands in for logging's last-resort stderr handler
        root.setLevel(logging.CRITICAL)
    handler._vecmetric = True  # type: ignore[attr-defined]
    root.addHandler(handler)

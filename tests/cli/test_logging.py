"""One line means one line: what the libraries underneath log stays out of the way unless --verbose."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _helpers import one_error_line

LIBRARY_NOISE = """
import sys
from vecmetric.cli._logging import configure_logging
configure_logging(sys.argv[1] == "verbose")
import logging, warnings
from huggingface_hub.utils import logging as hub_logging
hub_logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 8s [Retry 5/5].")
logging.getLogger("timm.models._builder").warning("timm says something")
logging.error("open_clip logs on the root logger")
warnings.warn("torch warns")
print("done")
"""


def run_noise(mode: str, env=None):
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "HF_HUB_VERBOSITY"}
    return subprocess.run([sys.executable, "-c", LIBRARY_NOISE, mode], capture_output=True, text=True, env={**full_env, **(env or {})}, timeout=120)


def test_library_logs_and_warnings_are_quiet_by_default():
    done = run_noise("quiet")
    assert done.returncode == 0 and done.stdout == "done\n"
    assert done.stderr == ""


def test_verbose_shows_them_with_their_source():
    done = run_noise("verbose")
    assert done.returncode == 0
    for line in ("Retrying in 8s [Retry 5/5].", "timm.models._builder: timm says something", "root: open_clip logs on the root logger", "torch warns"):
        assert line in done.stderr, done.stderr


@pytest.mark.parametrize(
    "spec, needles",
    [
        ("open_clip:ViT-B-32@openai", ["the weights of open_clip:ViT-B-32@openai cannot be downloaded", "'open_clip:ARCH@random'"]),
        ("timm:resnet18.a1_in1k", ["could not load pretrained weights for timm:resnet18.a1_in1k", "'timm:resnet18.a1_in1k@random'"]),
    ],
)
def test_offline_pretrained_model_is_one_error_line(run_vecmetric, image_folder, spec, needles):
    """As a new user without network would see it (HF_HUB_OFFLINE=1 from conftest): one line, exit 4,
    no library log line before or after it."""
    done = run_vecmetric("embed", str(image_folder), "--store", "s", "--model", spec)
    one_error_line(done, 4, *needles)
    assert "WARNING" not in done.stderr and "ERROR:root" not in done.stderr

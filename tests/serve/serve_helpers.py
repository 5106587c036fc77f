"""What the serve tests share besides fixtures: bundled characters, stores made of them, a server on loopback.

A module of its own (not conftest): test modules import from it, and ``from conftest import`` would find
whichever conftest.py came first on sys.path when several test folders run together.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from _helpers import TINY_MODEL

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = REPO_ROOT / "examples" / "data" / "omniglot" / "test"


def copy_characters(target: Path, classes: int = 4, per_class: int = 5, skip: int = 0) -> list[Path]:
    """Copy ``per_class`` drawings of ``classes`` bundled Omniglot characters into ``target/<class>/``."""
    copied = []
    for folder in sorted(p for p in BUNDLED.iterdir() if p.is_dir())[skip : skip + classes]:
        for image in sorted(folder.glob("*.png"))[:per_class]:
            (target / folder.name).mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(image, target / folder.name / image.name)))
    return copied


def build_store(root: Path, **kwargs) -> Path:
    """``root/images`` (bundled characters) embedded into ``root/store`` with the tiny model, indexed."""
    from vecmetric.index import build_index
    from vecmetric.runtime import model_dir
    from vecmetric.store import embed_directory, open_store

    copy_characters(root / "images", **kwargs)
    embed_directory(root / "images", root / "store", model=TINY_MODEL, device="cpu", precision="fp32", workers=0)
    build_index(open_store(root / "store"))
    assert (model_dir(root / "store") / "export.json").is_file()  # the server must not need torch
    return root / "store"


def wait_for(condition, timeout: float = 120.0, what: str = "a condition"):
    """Poll ``condition()`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LoopbackServer:
    """The app under uvicorn in a thread, on 127.0.0.1 and a free port; ``stop()`` ends it."""

    def __init__(self, app):
        import uvicorn

        from vecmetric.serve import listen

        self.app = app
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

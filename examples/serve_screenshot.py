"""Make docs/serve.png, the README's picture of the ``vecmetric serve`` page with results.

Embeds the bundled Omniglot test alphabets with the default model (or takes ``--store``, e.g. the
``demo-out/store`` that ``make demo`` builds), serves the store on 127.0.0.1, uploads a held-out query
image in headless Chromium (Debian's ``chromium``, driven by Playwright) and saves the page.

    python examples/serve_screenshot.py
    python examples/serve_screenshot.py --store demo-out/store --out /tmp/serve.png
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
QUERY = REPO_ROOT / "examples" / "queries" / "Greek__character05_0398_20.png"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, default=None, help="serve this store (default: embed examples/data/omniglot/test into a temporary one)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "serve.png", help="the PNG to write (default: docs/serve.png)")
    p.add_argument("--k", type=int, default=12, help="results on the page (default: 12)")
    return p.parse_args(argv)


def bundled_store(folder: Path) -> Path:
    """The bundled test alphabets embedded with the default model and indexed, in ``folder``."""
    from vecmetric.index import build_index
    from vecmetric.store import embed_directory, open_store

    embed_directory(REPO_ROOT / "examples" / "data" / "omniglot" / "test", folder, model="default", device="cpu")
    build_index(open_store(folder))
    return folder


def serve(store: Path):
    """The app under uvicorn in a thread on a free loopback port; returns ``(url, server, thread)``."""
    import uvicorn

    from vecmetric.serve import create_app, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(store, thumbnails_on_disk=False), log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def wait_healthy(url: str, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} was not ready in {timeout:.0f} s")


def screenshot(url: str, out: Path, k: int) -> None:
    """Upload the query on the page, wait for every thumbnail, save the page."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1100, "height": 760}, device_scale_factor=1).new_page()
        page.goto(f"{url}/?k={k}")
        page.set_input_files("#file", str(QUERY))
        page.wait_for_function(
            "k => { const imgs = [...document.querySelectorAll('#results figure img')];"
            " return imgs.length === k && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            arg=k,
            timeout=120_000,
        )
        page.focus("#results figure")  # show the keyboard focus on the first result
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vm-serve-shot-") as tmp:
        store = args.store or bundled_store(Path(tmp) / "store")
        url, server, thread = serve(store)
        try:
            wait_healthy(url)
            screenshot(url, args.out, args.k)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()

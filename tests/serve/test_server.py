"""The server for real, on loopback: ``vecmetric serve`` without torch and stopped by Ctrl-C; a store that
grows, shrinks and gets a new index generation while the server answers, with no failed request."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import LoopbackServer, copy_characters, wait_for


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see what the server process loaded")
def test_vecmetric_serve_imports_no_torch_and_stops_on_ctrl_c(served_store):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vecmetric", "serve", "--store", str(served_store), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        url = wait_for(lambda: next((m.group(0) for m in map(re.compile(r"http://127\.0\.0\.1:\d+/").search, lines) if m), None), what="the URL")
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for(lambda: client.get("/healthz").status_code == 200, what="/healthz")
            picture = sorted((served_store.parent / "images").rglob("*.png"))[2]
            found = client.post("/search/image", files={"image": ("q.png", picture.read_bytes(), "image/png")}, data={"k": "2"})
            assert found.status_code == 200 and found.json()["results"][0]["path"] == str(picture)
            assert client.post("/search", json={"terms": [{"id": 1}], "k": 2}).status_code == 200
            assert client.get("/thumbs/1").status_code == 200
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "onnxruntime" in maps and "libtorch" not in maps and "/torch/" not in maps  # the export ran the query
        workers = children_of(proc.pid)
        assert workers  # the decode guard's processes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        reader.join(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert "Traceback" not in text and text.rstrip().endswith("stopped"), text
    assert not any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in workers)


class Prober(threading.Thread):
    """Asks the server the same two questions over and over until stopped (at most ``limit`` rounds), keeping every answer."""

    def __init__(self, url: str, picture: bytes, row: int, limit: int = 5000):
        super().__init__(daemon=True)
        self.url, self.picture, self.row, self.limit = url, picture, row, limit
        self.answers: list[tuple[float, int, dict]] = []
        self.halt = threading.Event()

    def run(self):
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for _ in range(self.limit):
                if self.halt.is_set():
                    return
                for answer in (
                    client.post("/search/image", files={"image": ("q.png", self.picture, "image/png")}, data={"k": "3"}),
                    client.post("/search", json={"terms": [{"id": self.row}], "k": 5}),
                ):
                    self.answers.append((time.monotonic(), answer.status_code, answer.json()))

    def latest_top(self) -> str | None:
        image_answers = [a for a in self.answers if a[1] == 200 and a[2]["results"] and a[2]["results"][0]["query"] == "upload"]
        return image_answers[-1][2]["results"][0]["path"] if image_answers else None


def test_answers_follow_embed_and_index_with_no_failed_request(own_store, client_for, run_vecmetric):
    from vecmetric.serve import create_app
    from vecmetric.store import open_store

    images = own_store.parent / "images"
    added = copy_characters(own_store.parent / "incoming", classes=2, per_class=4, skip=5)
    rows = open_store(own_store).read_table(["id", "path"]).to_pylist()
    gone, gone_id = Path(rows[0]["path"]), rows[0]["id"]
    server = LoopbackServer(create_app(own_store, thumbnails_on_disk=False))
    prober = Prober(server.url, added[-1].read_bytes(), row=rows[-1]["id"])
    try:
        wait_for(lambda: httpx.get(server.url + "/healthz").status_code == 200, what="/healthz")
        prober.start()
        wait_for(lambda: len(prober.answers) >= 4, what="answers before the embed")
        assert prober.latest_top() != str(images / added[-1].parent.name / added[-1].name)
        # The embed adds 8 images two rows at a time and drops a deleted file's row, while the server answers.
        for path in added:
            (images / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, images / path.parent.name / path.name)
        gone.unlink()
        started = time.monotonic()
        embed = run_vecmetric("embed", str(images), "--store", str(own_store), timeout=600, env={**os.environ, "VECMETRIC_FLUSH_ROWS": "2"})
        assert embed.returncode == 0, embed.stderr  # the server never held the writer's lock
        during = [a for a in prober.answers if started <= a[0] <= time.monotonic()]
        target = str(images / added[-1].parent.name / added[-1].name)
        wait_for(lambda: prober.latest_top() == target, what="the new image in the answers")
        session = server.app.state.vecmetric.session
        assert len(session.index.tail_ids) == 8 and not session.index.has(gone_id)
        before = session.index.index.sidecar["generation"]
        started = time.monotonic()
        indexed = run_vecmetric("index", "--store", str(own_store), timeout=600)
        assert indexed.returncode == 0, indexed.stderr
        during += [a for a in prober.answers if started <= a[0] <= time.monotonic()]
        seen = len(prober.answers)
        wait_for(lambda: len(prober.answers) >= seen + 4, what="answers after the new index")
        assert session.index.index.sidecar["generation"] != before and len(session.index.tail_ids) == 0  # the new generation, nothing left over
        assert prober.latest_top() == target
    finally:
        prober.halt.set()
        prober.join(timeout=60)
        server.stop()
    failed = [(status, body) for _, status, body in prober.answers if status != 200]
    assert not failed, failed[:3]
    assert all(gone_id not in [r["id"] for r in body["results"]] for t, _, body in prober.answers[-4:])
    assert len(during) >= 4  # the server was asked while the embed and the index ran, not only before and after

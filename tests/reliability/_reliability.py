"""Helpers for the reliability tests (the fixtures that use them are in conftest.py).

Killing ``vecmetric`` at every write needs dozens of runs; a fresh ``python -m vecmetric``
spends seconds importing torch each time. ``ForkServer`` therefore runs the CLI's own entry
point (``vecmetric.cli.main``, exactly what ``python -m vecmetric`` calls) in processes forked
from a server that has imported everything once but never ran a torch operation (so forking is
safe). Each child is a separate process with its own pid, environment, working folder, optional
unprivileged user and file-size limit, and is killed or interrupted like any other process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _helpers import TINY_MODEL, one_error_line  # noqa: F401  (re-exported for the reliability tests)

from vecmetric.store import open_store

NOBODY = 65534

# What every test in this folder found, summed up at the end of the session (kill points tried...).
TALLY: dict[str, int] = {}


def tally(key: str, n: int = 1) -> None:
    TALLY[key] = TALLY.get(key, 0) + n


# --- the fork server --------------------------------------------------------------------------

_SERVER = r"""
import json, os, resource, signal, sys, traceback
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
import numpy, PIL.Image, timm, hnswlib, pyarrow.parquet, pyarrow.dataset, pyarrow.compute, safetensors.torch  # noqa
import vecmetric.cli._app, vecmetric.store, vecmetric.index, vecmetric.encoders, vecmetric.verify, vecmetric.train  # noqa
from vecmetric.cli import main

proto = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "run":
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                os.dup2(out, 1)
                os.dup2(err, 2)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                sys.stdin = open(os.devnull)
                os.environ.clear()
                os.environ.update(req["env"])
                if req.get("fsize") is not None:
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
                if req.get("user") is not None:
                    os.setgroups([])
                    os.setgid(req["user"])
                    os.setuid(req["user"])
                os.chdir(req["cwd"])
                sys.argv = ["vecmetric", *req["argv"]]
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 70
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        proto.write(json.dumps({"pid": pid}) + "\n")
        proto.flush()
    elif req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        proto.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        proto.flush()
"""


@dataclass
class Done:
    """A finished CLI run: exit code (negative: killed by that signal), stdout, stderr."""

    code: int
    out: str
    err: str


class Child:
    def __init__(self, server: "ForkServer", pid: int, out: Path, err: Path):
        self.server, self.pid, self._out, self._err = server, pid, out, err
        self.result: Done | None = None

    def exited(self) -> bool:
        """True once the process has ended (a zombie until the server reaps it)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state in ("Z", "X")

    def signal(self, sig: int) -> None:
        if self.result is None:  # not reaped yet, so the pid is still ours
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 120) -> Done:
        if self.result is None:
            deadline = time.monotonic() + timeout
            while not self.exited():
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    self.server.reap(self.pid)
                    pytest.fail(f"vecmetric child {self.pid} did not finish in {timeout} s (a hang)")
                time.sleep(0.01)
            code = self.server.reap(self.pid)
            self.result = Done(code, self._out.read_text(errors="replace"), self._err.read_text(errors="replace"))
        return self.result


class ForkServer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=folder
        )

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def reap(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["status"]

    def start(self, *argv, env: dict | None = None, cwd: Path | None = None, user: int | None = None, fsize: int | None = None) -> Child:
        """Start ``vecmetric ARGV`` in a forked process; returns at once."""
        self.count += 1
        out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
        full_env = dict(os.environ)
        full_env.update(env or {})
        request = {
            "op": "run",
            "argv": [str(a) for a in argv],
            "env": full_env,
            "cwd": str(cwd or os.getcwd()),
            "stdout": str(out),
            "stderr": str(err),
            "user": user,
            "fsize": fsize,
        }
        return Child(self, self._ask(request)["pid"], out, err)

    def run(self, *argv, timeout: float = 120, **kwargs) -> Done:
        """Run ``vecmetric ARGV`` to the end."""
        return self.start(*argv, **kwargs).wait(timeout)

    def close(self) -> None:
        """End the server: it leaves its loop when stdin closes; one still tearing down after a minute
        (a loaded machine, torch's modules) is killed, as nothing it could still do is tested."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- models, images and stores ------------------------------------------------------------------


def draw(path: Path, seed: int, size: int = 40, fmt: str | None = None, mode: str = "RGB") -> Path:
    """A distinct small picture: a coloured shape on seeded noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(120, 255, size=(size, size, 3), dtype=np.uint8), "RGB")
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    off = int(rng.integers(0, size // 4))
    ImageDraw.Draw(img).ellipse((3 + off, 4, size - 4, size - 3 - off), fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path, format=fmt)
    return path


def make_gallery(root: Path, classes: int = 3, per_class: int = 4, seed: int = 0) -> list[Path]:
    return [draw(root / f"class_{c}" / f"img_{i:02d}.png", seed * 10_000 + c * 100 + i) for c in range(classes) for i in range(per_class)]


def embed_in_process(folder, store, model, **kwargs):
    """The library call behind ``vecmetric embed`` (same batch size and precision as the CLI runs)."""
    from vecmetric.store import embed_directory

    kwargs = {"device": "cpu", "precision": "fp32", "batch_size": 4, "workers": 0, **kwargs}
    return embed_directory(folder, store, model, **kwargs)


def embed_args(folder, store, model, *extra) -> list[str]:
    return ["embed", str(folder), "--store", str(store), "--model", model, "--batch-size", "4", "--workers", "0", "--precision", "fp32", "--device", "cpu", "--quiet", *extra]


@dataclass
class Gallery:
    images: Path  # the image folder
    reference: Path  # the store of an uninterrupted embed of it
    count: int


def rows_by_path(store_path) -> dict[str, dict]:
    """path -> {id, hash, vector} of a store's live rows; fails on duplicate paths or ids."""
    import numpy as np

    from vecmetric.store import embeddings_to_numpy

    table = open_store(store_path).read_table()
    paths = table.column("path").to_pylist()
    ids = table.column("id").to_pylist()
    assert len(set(paths)) == len(paths), "duplicate paths in the store"
    assert len(set(ids)) == len(ids), "duplicate ids in the store"
    vectors = embeddings_to_numpy(table.column("embedding"))
    hashes = table.column("content_hash").to_pylist()
    return {p: {"id": i, "hash": h, "vector": np.asarray(v)} for p, i, h, v in zip(paths, ids, hashes, vectors)}


def assert_same_store(store_path, reference_path) -> None:
    """Same paths, content hashes and vectors as the reference; no duplicate paths or ids."""
    import numpy as np

    got, want = rows_by_path(store_path), rows_by_path(reference_path)
    assert sorted(got) == sorted(want)
    for path, row in want.items():
        assert got[path]["hash"] == row["hash"], path
        np.testing.assert_allclose(got[path]["vector"], row["vector"], atol=1e-5, err_msg=path)


def assert_readable(store_path: Path) -> int:
    """The store as a killed process left it: readable by vecmetric and by pandas; returns its rows.

    A process killed before its first manifest was in place leaves no store at all (and no part).
    """
    import pandas as pd

    if not (store_path / "_manifest.json").exists():
        assert not list(store_path.glob("part-*.parquet")), "parts without a manifest"
        return 0
    store = open_store(store_path)
    table = store.read_table()
    rows_by_path(store_path)  # unique paths and ids
    if store.parts():
        frame = pd.read_parquet(store_path)  # pyarrow skips the _ files: exactly the live rows
        assert len(frame) == table.num_rows
        assert sorted(frame["id"]) == sorted(table.column("id").to_pylist())
    return table.num_rows


def image_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """mtime_ns and bytes of every file under ``folder``: images must never be written."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            p = os.path.join(root, name)
            if os.path.islink(p):
                continue
            try:
                with open(p, "rb") as fh:
                    out[p] = (os.stat(p).st_mtime_ns, fh.read())
            except OSError:
                continue
    return out


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


# --- an unprivileged user --------------------------------------------------------------------


def open_path_to(path: Path) -> list[tuple[Path, int]]:
    """Let an unprivileged user reach ``path``: add o+x to its ancestors; returns what to restore."""
    changed = []
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode & 0o7777
        if not mode & 0o001:
            changed.append((parent, mode))
            parent.chmod(mode | 0o001)
    return changed


def package_folders() -> list[Path]:
    """Where the CLI's lazily imported modules come from: vecmetric itself and the installed packages."""
    import sysconfig

    import vecmetric

    return [Path(vecmetric.__file__).resolve().parent, Path(sysconfig.get_paths()["purelib"]).resolve()]


def closed_to_others(*paths: Path) -> Path | None:
    """The first folder on the way to one of ``paths`` that users other than its owner cannot enter, or None.

    A child that dropped to another user imports modules lazily from these paths; a clone inside a
    private folder (mode 0700, like root's home) would make those imports fail, whatever the test checks.
    """
    for path in paths:
        for folder in [path, *path.parents]:
            if not folder.stat().st_mode & 0o001:
                return folder
    return None


@dataclass
class Unprivileged:
    """Who runs the permission tests: ``uid`` for the fork server (None: this user), ``env`` for its HOME."""

    uid: int | None
    env: dict
    changed: list

    def reach(self, *paths) -> None:
        """Let the user traverse to each path (o+x on its ancestors; undone after the test)."""
        if self.uid is not None:
            for path in paths:
                self.changed += open_path_to(Path(path))


def give_to(path: Path, uid: int | None) -> None:
    """Make ``path`` (recursively) owned by ``uid`` (no-op when not root)."""
    if uid is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def readable_by_all(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def wait_until(predicate, child, timeout: float = 120, what: str = "the state waited for") -> None:
    """Poll ``predicate`` (a state: a file, a count) until it holds; fail if ``child`` ends first or it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if child.exited():
            pytest.fail(f"the process ended before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.002)

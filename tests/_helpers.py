"""Helpers that tests import (``from _helpers import ...``): pytest puts ``tests/`` on ``sys.path``
because ``tests/conftest.py`` lives there (rootdir-relative "prepend" import mode).

Fixtures live in the conftest files; plain functions and constants live here.
"""

from __future__ import annotations

import re
from pathlib import Path

from vecmetric.progress import Reporter

#: A deterministic untrained timm model: 256-d embeddings at 160 px, fast on a CPU.
TINY_MODEL = "timm:test_efficientnet@random"
#: Another tiny model, for "store made by another model" checks.
OTHER_TINY_MODEL = "timm:test_resnet@random"


def one_error_line(result, code: int, *needles: str, pattern: str | None = None) -> str:
    """Assert a finished command exited ``code`` with exactly one line on stderr, an ``Error:`` line
    holding every needle (and matching ``pattern``), and no traceback; return that line.

    vecmetric's own ``Warning: `` lines about the input (skipped files) may come before it; any
    other line (a library's log output, a second error) fails.

    ``result`` is a typer ``CliRunner`` result, a ``subprocess.CompletedProcess`` or the reliability
    suite's fork-server result.
    """
    exit_code = next(getattr(result, name) for name in ("exit_code", "returncode", "code") if hasattr(result, name))
    err = next(getattr(result, name) for name in ("stderr", "err") if hasattr(result, name))
    assert exit_code == code, f"exit {exit_code}, wanted {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("Warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    if pattern is not None:
        assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def make_class_folders(root: Path, classes: int = 6, per_class: int = 4, size: int = 40, seed: int = 0) -> Path:
    """Write ``classes`` folders of ``per_class`` PNGs: a class-specific shape and colour with jitter."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir()
        colour = ((c * 67) % 256, (c * 131 + 40) % 256, (c * 29 + 90) % 256)
        for i in range(per_class):
            img = Image.new("RGB", (size, size), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            dx, dy = rng.randint(-3, 3), rng.randint(-3, 3)
            box = (8 + dx + c, 8 + dy, 30 + dx, 30 + dy - c % 3)
            if c % 3 == 0:
                draw.ellipse(box, fill=colour)
            elif c % 3 == 1:
                draw.rectangle(box, fill=colour)
            else:
                draw.line(box, fill=colour, width=4)
            img.save(folder / f"img_{i:02d}.png")
    return root


def make_tinted_noise_classes(root: Path, classes: int = 12, per_class: int = 16, size: int = 40, seed: int = 0) -> Path:
    """Classes an untrained encoder cannot tell apart but a trained one can: grey noise, lightly tinted
    by the class's hue (its neighbours' hues overlap a little)."""
    import colorsys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(0, 256, size=(size, size, 1)).repeat(3, axis=2).astype(np.float32)
            tint = np.array(colorsys.hsv_to_rgb((c + rng.uniform(-0.15, 0.15)) / classes, 0.9, 0.9), dtype=np.float32) * 255
            alpha = rng.uniform(0.15, 0.3)
            Image.fromarray((noise * (1 - alpha) + tint * alpha).clip(0, 255).astype(np.uint8)).save(folder / f"img_{i:02d}.png")
    return root


def fast_options(**overrides):
    """Training options that finish in seconds on a CPU: tiny model, 32 px, 2 steps per epoch."""
    from vecmetric.train import TrainOptions

    values = dict(
        model=TINY_MODEL,
        image_size=32,
        batch_size=8,
        m_per_class=2,
        epochs=1,
        val_classes="class_04,class_05",
        workers=0,
        device="cpu",
        lr=1e-3,
        export=False,  # a few seconds per run; tests of the export ask for it
    )
    values.update(overrides)
    return TrainOptions(**values)


class RecordingReporter(Reporter):
    """Collects warnings, log lines and epoch records; can interrupt after a given epoch like Ctrl-C would."""

    def __init__(self, interrupt_after: int | None = None):
        self.warnings: list[str] = []
        self.records: list[dict] = []
        self.logs: list[str] = []
        self.interrupt_after = interrupt_after

    def warn(self, message):
        self.warnings.append(message)

    def log(self, message):
        self.logs.append(message)

    def finished(self, task, summary):
        if task != "epoch":
            return
        self.records.append(summary)
        if self.interrupt_after is not None and summary["epoch"] == self.interrupt_after:
            raise KeyboardInterrupt


#: The planted duplicates' ``plant_duplicates`` threshold for the 32 px tiny model (``small_model``): on
#: 16 images from ``make_images(classes=16, per_class=1, size=64)`` its copies lie within 0.012 of their
#: originals and distinct images at least 0.076 apart.
PLANTED_THRESHOLD = 0.04


def plant_duplicates(originals: list[Path], near: tuple[int, ...] = (0, 3, 6, 11), exact: tuple[int, ...] = (2,), copies_to: Path | None = None) -> list[list[str]]:
    """Add copies of some of ``originals`` and return the true groups (paths as strings, the original first).

    ``near`` originals get a resized PNG (7/8 size) and a JPEG (quality 85) beside them; ``exact``
    originals a byte-identical copy under ``copies_to`` (default: a ``copies`` folder beside their
    class folder). Originals are made the oldest files (mtimes a day apart), so ``--keep oldest``
    keeps them.
    """
    import os
    import shutil

    from PIL import Image

    base = 1_600_000_000_000_000_000
    for i, path in enumerate(originals):
        os.utime(path, ns=(base + i, base + i))
    groups = []
    for i in near:
        src = originals[i]
        with Image.open(src) as im:
            small = src.with_name(src.stem + "-small.png")
            im.resize((im.width * 7 // 8, im.height * 7 // 8)).save(small)
            jpeg = src.with_name(src.stem + ".jpg")
            im.convert("RGB").save(jpeg, quality=85)
        groups.append([str(src), str(small), str(jpeg)])
    for i in exact:
        src = originals[i]
        folder = copies_to or src.parent.parent / "copies"
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{src.parent.name} {src.name}"
        shutil.copyfile(src, copy)
        groups.append([str(src), str(copy)])
    for n, group in enumerate(groups, start=1):
        for copy in group[1:]:
            os.utime(copy, ns=(base + n * 86_400 * 10**9,) * 2)
    return groups


def parquet_rows(store: Path):
    """Every row of a store sorted by id, read straight from its Parquet files (not through vecmetric); None when it has none."""
    import pyarrow.parquet as pq

    parts = sorted(Path(store).glob("part-*.parquet"))
    return pq.read_table([str(p) for p in parts]).sort_by("id") if parts else None


def file_snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def fake_store(path, fake_encoder, write_rows, metric="cosine", spec=None, dim=8, seed=0):
    """A store of 40 random rows (``fake_encoder``, ``write_rows`` are the fixtures), rows 0 and 1 near copies;
    ``spec`` overrides the model spec it records (``default`` for the default model's threshold)."""
    import numpy as np

    from vecmetric.store import create_store

    encoder = fake_encoder(dim, metric=metric)
    if spec is not None:
        described = encoder.describe()
        described["spec"] = spec
        encoder.describe = lambda: dict(described)
    store = create_store(path, encoder)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(40, dim)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01
    write_rows(store, range(40), vectors)
    return store
#: The addresses a loopback-only Ray may use (IPv4, and IPv4 seen through an IPv6 socket).
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def descendants(pid: int | None = None) -> list:
    """A process (default: this one) and every process it started: Ray's servers, agents and workers
    all descend from the process that called ``ray.init``."""
    import psutil

    me = psutil.Process(pid)
    return [me, *me.children(recursive=True)]


def processes_named(processes, fragment: str) -> list:
    """The processes of ``processes`` whose name holds ``fragment``; those gone meanwhile (Ray's idle workers
    come and go) are left out rather than failing the lookup."""
    import psutil

    found = []
    for proc in processes:
        try:
            if fragment in proc.name():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def sockets_of(processes) -> tuple[set[str], list[tuple[str, object]]]:
    """(process names, [(name, psutil connection)]) of every inet socket of ``processes`` that are alive."""
    import psutil

    names, sockets = set(), []
    for proc in processes:
        try:
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        names.add(name)
        sockets += [(name, c) for c in conns]
    return names, sockets


def assert_loopback_only(sockets, min_listening: int = 4) -> None:
    """Every socket bound to loopback and, when connected, connected to loopback; Ray's servers listening."""
    import psutil

    listening = [c for _, c in sockets if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= min_listening, f"the GCS, the raylet and the workers' gRPC servers listen: {listening}"
    outside = [(name, c) for name, c in sockets if c.laddr.ip not in LOOPBACK or (c.raddr and c.raddr.ip not in LOOPBACK)]
    assert outside == []


def shard_generations(store) -> list[str]:
    """Each shard's generation as the store's index sidecar names them (one for an unsharded index)."""
    import json

    side = json.loads((store.index_dir / "index.json").read_text())
    return [e["generation"] for e in side.get("shards", [side])]


def shard_ids(store) -> list[list[int]]:
    """The row ids each shard's id file holds, as the sidecar names them."""
    import numpy as np

    return [sorted(np.load(store.index_dir / f"ids-{g}.npy").tolist()) for g in shard_generations(store)]

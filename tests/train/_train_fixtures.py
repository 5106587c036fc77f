"""Helpers shared by the train and eval tests (imported by conftest and by tests/cli): generated class folders, fast options, a recording reporter."""

from __future__ import annotations

from pathlib import Path

TINY_MODEL = "timm:test_efficientnet@random"


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
    )
    values.update(overrides)
    return TrainOptions(**values)


class RecordingReporter:
    """Collects warnings and epoch records; can interrupt after a given epoch like Ctrl-C would."""

    def __init__(self, interrupt_after: int | None = None):
        self.warnings: list[str] = []
        self.records: list[dict] = []
        self.interrupt_after = interrupt_after

    def warn(self, message):
        self.warnings.append(message)

    def log(self, message):
        pass

    def start_epoch(self, epoch, epochs, steps):
        pass

    def advance(self, loss):
        pass

    def start_eval(self, images):
        pass

    def end_epoch(self, record):
        self.records.append(record)
        if self.interrupt_after is not None and record["epoch"] == self.interrupt_after:
            raise KeyboardInterrupt

    def close(self):
        pass

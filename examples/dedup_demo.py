"""A small photo folder with planted near duplicates, for trying ``vecmetric dedup`` (and for README's picture).

    python examples/dedup_demo.py --out demo-out/dedup              # writes demo-out/dedup/photos/
    vecmetric embed demo-out/dedup/photos --store demo-out/dedup/store
    vecmetric dedup --store demo-out/dedup/store --html demo-out/dedup/sheet.html

    python examples/dedup_demo.py --out demo-out/dedup --png docs/dedup.png   # also embeds, dedups, draws the sheet

The pictures are generated here (no downloaded data): seven of different kinds (a Julia set, plasma,
Voronoi cells, waves, rings, shapes, a checkerboard), which the default model puts 0.58 to 0.88 apart
(cosine distance), about as far as distinct photos (the closest two on the real-photo benchmark are
0.40 apart). Five get copies of the kinds a photo
library collects: smaller, re-saved as JPEG, cropped, mirrored, brightened, and one byte-identical
file. The originals are the oldest files, so ``--keep oldest`` keeps them.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

SIZE = 256
# (picture, folder, [(copy name, what is done to it), ...]); copies land in photos/edits/ unless named with a folder
LIBRARY = [
    ("julia", "2023", [("edits/julia-small.png", "small"), ("edits/julia-mirrored.png", "flip")]),
    ("plasma", "2023", [("inbox/IMG_0412.png", "bytes")]),
    ("rings", "2023", []),
    ("shapes", "2023", [("edits/shapes-crop.png", "crop"), ("inbox/shapes.jpg", "jpeg")]),
    ("voronoi", "2024", [("edits/voronoi-brighter.png", "bright")]),
    ("waves", "2024", [("inbox/waves.jpg", "jpeg")]),
    ("checker", "2024", []),
]


def _palette(t, phase):
    import numpy as np

    t = np.clip(t, 0, 1)[..., None]
    return ((0.5 + 0.5 * np.cos(2 * np.pi * (t + np.asarray(phase)))) * 255).astype(np.uint8)


def draw(kind: str, seed: int = 0):
    """One generated picture (a PIL image, SIZE x SIZE) of the given kind."""
    import numpy as np
    from PIL import Image, ImageDraw

    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    phase = r.uniform(0, 1, 3)
    if kind == "julia":
        c = complex(r.uniform(-0.8, 0.4), r.uniform(-0.7, 0.7))
        z, n = (xx - 0.5) * 3 + 1j * (yy - 0.5) * 3, np.zeros(xx.shape)
        for _ in range(60):
            inside = np.abs(z) < 4
            z[inside] = z[inside] ** 2 + c
            n[inside] += 1
        return Image.fromarray(_palette(n / 60, phase))
    if kind == "plasma":
        t = sum(np.asarray(Image.fromarray(r.normal(size=(2**o + 1, 2**o + 1)).astype(np.float32)).resize((SIZE, SIZE), Image.BICUBIC)) / o for o in range(1, 6))
        return Image.fromarray(_palette((t - t.min()) / np.ptp(t), phase))
    if kind == "voronoi":
        points = r.uniform(0, 1, (int(r.integers(8, 30)), 2))
        colours = r.integers(0, 256, (len(points), 3))
        nearest = ((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2).argmin(-1)
        return Image.fromarray(colours[nearest].astype(np.uint8))
    if kind == "waves":
        t = sum(np.sin(2 * np.pi * r.uniform(4, 20) * (xx * np.cos(a) + yy * np.sin(a))) for a in r.uniform(0, np.pi, 3))
        return Image.fromarray(_palette((t + 3) / 6, phase))
    if kind == "rings":
        cx, cy = r.uniform(0.2, 0.8, 2)
        return Image.fromarray(_palette(np.sin(2 * np.pi * r.uniform(8, 30) * np.hypot(xx - cx, yy - cy)) * 0.5 + 0.5, phase))
    if kind == "checker":
        k, a = r.integers(4, 16), r.uniform(-0.5, 0.5)
        t = (np.floor((xx * np.cos(a) - yy * np.sin(a)) * k) + np.floor((xx * np.sin(a) + yy * np.cos(a)) * k)) % 2
        return Image.fromarray(_palette(t * 0.6 + 0.2, phase))
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in r.integers(0, 256, 3)))
    pen = ImageDraw.Draw(image)
    for _ in range(int(r.integers(5, 15))):
        x0, y0 = r.integers(-20, SIZE, 2)
        w, h = r.integers(10, 120, 2)
        shape = pen.ellipse if r.integers(0, 2) else pen.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=tuple(int(v) for v in r.integers(0, 256, 3)), outline=(0, 0, 0), width=2)
    return image


def _copy(image, source: Path, target: Path, how: str) -> None:
    from PIL import ImageEnhance, ImageOps

    target.parent.mkdir(parents=True, exist_ok=True)
    if how == "bytes":
        shutil.copyfile(source, target)
    elif how == "small":
        image.resize((SIZE * 3 // 4, SIZE * 3 // 4)).save(target)
    elif how == "jpeg":
        image.convert("RGB").save(target, quality=75)
    elif how == "crop":
        image.crop((20, 20, SIZE - 20, SIZE - 20)).resize((SIZE, SIZE)).save(target)
    elif how == "flip":
        ImageOps.mirror(image).save(target)
    elif how == "bright":
        ImageEnhance.Brightness(image).enhance(1.2).save(target)


def make_library(photos: Path) -> list[list[Path]]:
    """Write the folder; returns the planted groups (original first)."""
    groups = []
    day = 86_400 * 10**9
    for n, (kind, folder, copies) in enumerate(LIBRARY):
        image = draw(kind, seed=100 * n)
        original = photos / folder / f"{kind}.png"
        original.parent.mkdir(parents=True, exist_ok=True)
        image.save(original)
        os.utime(original, ns=(1_600_000_000 * 10**9 + n * day,) * 2)
        paths = [original]
        for name, how in copies:
            _copy(image, original, photos / name, how)
            os.utime(photos / name, ns=(1_700_000_000 * 10**9 + n * day,) * 2)
            paths.append(photos / name)
        if len(paths) > 1:
            groups.append(paths)
    return groups


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo-out/dedup"), help="folder for photos/ (and store/ with --png)")
    p.add_argument("--png", type=Path, default=None, help="also embed with the default model, find the duplicates at the default threshold and draw them here")
    args = p.parse_args(argv)
    photos = args.out / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    groups = make_library(photos)
    print(f"{sum(len(g) for g in groups) - len(groups)} copies of {len(groups)} of {len(LIBRARY)} pictures planted in {photos}")
    if args.png is not None:
        from vecmetric.dedup import dedup_store
        from vecmetric.present import dedup_sheet, write_png_sheet
        from vecmetric.store import embed_directory

        store = args.out / "store"
        shutil.rmtree(store, ignore_errors=True)
        embed_directory(photos, store, model="default", workers=0)
        found = dedup_store(store)
        write_png_sheet(dedup_sheet(found.groups, title=f"vecmetric dedup: threshold {found.threshold:g} (the default model's default)"), args.png, size=120)
        print(f"{len(found.groups)} groups found; sheet written to {args.png}")


if __name__ == "__main__":
    main()

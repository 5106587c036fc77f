"""The near-duplicate benchmark set: real photos, transformed copies, ground truth by construction.

Nothing here is committed as data: the photos are read at run time from public repositories
(a git snapshot or checkout of each, see ``DEDUP_DATA.md`` for sources and licences), checked
against the git blob ids recorded below, and written with their copies to a git-ignored folder::

    python benchmarks/dedup_data.py                       # -> benchmarks/.data/dedup/
    python benchmarks/dedup_data.py --sources /path/to/snapshots --out /tmp/dedup-set

``--sources DIR`` holds one folder per repository, named ``owner+name`` (a checkout, or a git
directory as ``fetch`` leaves it under ``owner+name/repo``); ``--source NAME=PATH`` points one
source elsewhere. Default: ``$VECMETRIC_DEDUP_SOURCES``, else ``/work/.mirror``.

The set: every photo is decoded to RGB, shrunk to at most 1024 px on its long side and written
as ``<name>.jpg`` (quality 92). ``ORIGINALS`` photos also get ``COPIES`` transformed copies each
(kinds in ``KINDS``, taken in turn so each kind is used equally often; parameters drawn from a
seeded generator), the ``DISTRACTORS`` none. ``truth.json`` lists the duplicate groups (an
original and its copies) and the distractors. File times: originals are the oldest files, so
the ``oldest`` keeper policy should keep every original.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / ".data" / "dedup"
SET_VERSION = 1  # bump when the recipe changes, so an old folder is rebuilt
MAX_SIDE = 1024
BASE_TIME = 1_577_836_800  # 2020-01-01 UTC: originals from here, copies a year later

# name -> (repository, commit); the files are read at exactly this commit when it is a git directory.
SOURCES = {
    "kodak": ("MohamedBakrAli/Kodak-Lossless-True-Color-Image-Suite", "dd2e1105fe8d9afe1120cd7e4c0e5e41f509a81b"),
    "imagededup": ("idealo/imagededup", "57a7e855eb00cbe824b63c265bc2ecc4dbee89dd"),
    "rclip": ("yurijmikhalevich/rclip", "2a23e2b7defc4e15cc7ed86bb043e139ce7cd102"),
    "skimage": ("scikit-image/scikit-image", "cd0a3d22b9f359f05618d75d5c7a29b91b4951ca"),
}

# (name, source, path in the repository, first 12 hex digits of the file's git blob id)
PHOTOS = [
    *[(f"kodak-{i:02d}", "kodak", f"PhotoCD_PCD0992/{i:02d}.png", blob) for i, blob in enumerate(
        "14317f0301e7 20c720617e08 d57e8bd2ceb8 de0991c65ee4 400e4cfc91db 949d1e298421 d04374d24676 d628801b140b "
        "1d471889b4c5 2e4b18b6febe 3c66526c04ba 55db018bb61e b35c9d39b44b e7b328346a6e 9c5eacf7682c 54b0d0dec817 "
        "5e4583e82048 48097fcfa7dc e359a32a4833 86e2837b0bfa ccd4c3f69aac 52bcd47b74f1 ff22e8373729 85bd64fb8ac6".split(), start=1)],
    *[(f"ukbench-{n}", "imagededup", f"tests/data/base_images/ukbench{n}.jpg", blob) for n, blob in [
        ("00120", "130c97889a38"), ("01380", "a68e4e6f3629"), ("08976", "185ebbb93db4"), ("08996", "e68b164b56b0"),
        ("09012", "81d8411a2992"), ("09040", "2cb1eca6effe"), ("09060", "84508a68d1fc"), ("09268", "1dcc8deaf540"),
        ("09348", "c8028c64add4"), ("09380", "328513f1df63")]],
    *[(f"rclip-{file.rsplit('.', 1)[0].lower().replace(' ', '-')}", "rclip", f"tests/e2e/images/{file}", blob) for file, blob in [
        ("bee.jpg", "518c6a0d061c"), ("black cat at night.jpg", "463a6e9ab82b"),
        ("black cat sleeping on a chair.JPG", "82c58ddf7237"), ("black kitty.jpeg", "8decfc34ea91"),
        ("boats on a lake.png", "b40e6eac4081"), ("books.jpg", "2772b85c7578"), ("cake.jpg", "7a2f331aa406"),
        ("camera lens.jpg", "93e84aa42813"), ("camera.jpg", "b50b5d46960e"), ("cat.jpg", "6da1c5678a25"),
        ("cautious cat.jpg", "94e753141b22"), ("chess-knight.tiff", "4ea66464407f"), ("chess-pawns.bmp", "262a5b1aba3f"),
        ("chess-queen.gif", "97e8ba6c5bc3"), ("chessboard with rocks.JPG", "e83465a60adf"), ("duck.jp2", "8d02eb13823e"),
        ("kookaburras.pnm", "15f20c5b0704"), ("parrot-and-flowers.pgm", "25ea66aff814"),
        ("parrot-looks-into-the-camera.ppm", "0d71e10be60b"), ("tree.webp", "adf57b1fb2d6")]],
    ("rclip-birds", "rclip", "tests/e2e/images unicode/\u9ce5\u9ce5.png", "f23894c0af4a"),
    *[(f"skimage-{file.rsplit('.', 1)[0].replace('_', '-')}", "skimage", f"src/_skimage2/data/{file}", blob) for file, blob in [
        ("astronaut.png", "834cda001247"), ("camera.png", "cdb3405d0086"), ("chelsea.png", "fae212d2befa"),
        ("coffee.png", "f8350bf7e6e2"), ("coins.png", "f0bebd64c6d8"), ("hubble_deep_field.jpg", "50c1b81aea1d"),
        ("motorcycle_left.png", "e3436ec20682"), ("moon.png", "6a6f077e78df"), ("retina.jpg", "f7a8a15333ef"),
        ("rocket.jpg", "32bdd33960c6"), ("brick.png", "79941ecd6605"), ("grass.png", "ad94f989fb34"),
        ("gravel.png", "bfc8579aea31")]],
]

# Photos without copies. Several look like photos that do have copies (more black cats, the
# same chess set, a second sailing boat and lighthouse, textures): hard negatives.
DISTRACTORS = {
    "kodak-10", "kodak-21", "ukbench-09348", "ukbench-09380", "rclip-black-kitty", "rclip-cautious-cat",
    "rclip-black-cat-sleeping-on-a-chair", "rclip-chess-pawns", "rclip-chess-queen", "rclip-camera-lens",
    "rclip-parrot-and-flowers", "skimage-moon", "skimage-hubble-deep-field", "skimage-brick", "skimage-grass",
    "skimage-gravel",
}
ORIGINALS = [name for name, *_ in PHOTOS if name not in DISTRACTORS]
KINDS = ["resize", "crop", "jpeg", "brightness-contrast", "rotate", "hflip", "text", "png", "webp", "exact"]
COPIES = 5
CAPTIONS = ["holiday 2019", "(c) photo club", "IMG_4031", "summer", "for sale", "draft", "family album", "sample"]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def source_root(name: str, sources_dir: Path, overrides: dict[str, Path]) -> Path:
    if name in overrides:
        return overrides[name]
    folder = sources_dir / SOURCES[name][0].replace("/", "+")
    return folder / "repo" if (folder / "repo").is_dir() else folder


def read_photo(root: Path, source: str, path: str, blob: str) -> bytes:
    """The bytes of ``path`` from a checkout (the file) or a git directory (at the recorded commit), checked."""
    if (root / path).is_file():
        data = (root / path).read_bytes()
    else:
        spec = f"{SOURCES[source][1]}:{path}"
        done = subprocess.run(["git", "-C", str(root), "cat-file", "blob", spec], capture_output=True)
        if done.returncode:
            sys.exit(f"cannot read {path} from {root} ({SOURCES[source][0]} @ {SOURCES[source][1][:12]}): "
                     f"{done.stderr.decode(errors='replace').strip()}; see benchmarks/DEDUP_DATA.md")
        data = done.stdout
    if not git_blob_id(data).startswith(blob):
        sys.exit(f"{root / path} is not the file recorded ({SOURCES[source][0]} blob {blob}): another version?")
    return data


def _load_rgb(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.seek(0)
    img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return img


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def transform(img, kind: str, rng: random.Random):
    """``(image, format, save options, parameters)`` for one kind of copy."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageOps

    w, h = img.size
    if kind == "resize":
        s = rng.uniform(0.35, 0.75)
        return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS), "JPEG", {"quality": 90}, {"scale": round(s, 3)}
    if kind == "crop":
        cut = rng.uniform(0.10, 0.30)  # share of the area removed; the aspect ratio is kept
        side = math.sqrt(1 - cut)
        cw, ch = round(w * side), round(h * side)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return img.crop((x, y, x + cw, y + ch)), "JPEG", {"quality": 90}, {"area_removed": round(cut, 3)}
    if kind == "jpeg":
        q = rng.randint(30, 90)
        return img, "JPEG", {"quality": q}, {"quality": q}
    if kind == "brightness-contrast":
        b, c = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
        out = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(b)).enhance(c)
        return out, "JPEG", {"quality": 90}, {"brightness": round(b, 3), "contrast": round(c, 3)}
    if kind == "rotate":
        angle = rng.choice([-1, 1]) * rng.uniform(3, 10)
        out = img.rotate(angle, resample=Image.BICUBIC)
        m = math.ceil(math.sin(math.radians(abs(angle))) * max(w, h) / 2)  # cut off the empty corners
        return out.crop((m, m, w - m, h - m)), "JPEG", {"quality": 90}, {"degrees": round(angle, 2)}
    if kind == "hflip":
        return ImageOps.mirror(img), "JPEG", {"quality": 90}, {}
    if kind == "text":
        out = img.copy()
        size = max(12, round(h * rng.uniform(0.06, 0.10)))
        caption = rng.choice(CAPTIONS)
        draw = ImageDraw.Draw(out)
        y = rng.choice([round(h * 0.04), h - round(size * 1.6)])
        draw.text((round(w * 0.05), y), caption, font=_font(size), fill="white", stroke_width=max(1, size // 12), stroke_fill="black")
        return out, "JPEG", {"quality": 90}, {"caption": caption, "px": size}
    if kind == "png":
        return img, "PNG", {}, {}
    if kind == "webp":
        return img, "WEBP", {"quality": 80}, {"quality": 80}
    raise ValueError(kind)


SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def _fingerprint(seed: int, copies: int) -> str:
    recipe = json.dumps([SET_VERSION, seed, copies, PHOTOS, sorted(DISTRACTORS), KINDS, CAPTIONS, MAX_SIDE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def materialise(out: Path, sources_dir: Path, overrides: dict[str, Path] | None = None, seed: int = 0, copies: int = COPIES) -> dict:
    """Write the set to ``out/images`` and its ground truth to ``out/truth.json``; returns the truth.

    A folder already holding this recipe's set (same fingerprint, every file present) is reused.
    """
    out = Path(out)
    truth_path = out / "truth.json"
    fingerprint = _fingerprint(seed, copies)
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("fingerprint") == fingerprint and all((out / "images" / f).is_file() for f in truth["files"]):
            return truth
    images = out / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    rng = random.Random(seed)
    groups, distractors, files, provenance = [], [], [], {}
    for n, (name, source, path, blob) in enumerate(PHOTOS):
        data = read_photo(source_root(source, sources_dir, overrides or {}), source, path, blob)
        provenance[name] = {"repository": SOURCES[source][0], "commit": SOURCES[source][1], "path": path}
        img = _load_rgb(data)
        original = f"{name}.jpg"
        img.save(images / original, "JPEG", quality=92)
        os.utime(images / original, (BASE_TIME + n, BASE_TIME + n))
        files.append(original)
        if name in DISTRACTORS:
            distractors.append(original)
            continue
        k = ORIGINALS.index(name)
        members = [{"file": original, "kind": "original"}]
        for j in range(copies):
            kind = KINDS[(k * copies + j) % len(KINDS)]
            if kind == "exact":
                target, params = f"{name}__exact.jpg", {}
                shutil.copyfile(images / original, images / target)
            else:
                copy, fmt, options, params = transform(img, kind, rng)
                target = f"{name}__{kind}{SUFFIX[fmt]}"
                copy.save(images / target, fmt, **options)
            when = BASE_TIME + 365 * 86400 + n * 100 + j
            os.utime(images / target, (when, when))
            files.append(target)
            members.append({"file": target, "kind": kind, **({"params": params} if params else {})})
        groups.append({"original": original, "members": members})
    truth = {"fingerprint": fingerprint, "seed": seed, "copies": copies, "groups": groups,
             "distractors": distractors, "files": sorted(files), "provenance": provenance}
    truth_path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")
    return truth


def truth_pairs(truth: dict) -> set[frozenset[str]]:
    """Every unordered pair of files that are duplicates of each other (file names)."""
    pairs = set()
    for group in truth["groups"]:
        names = [m["file"] for m in group["members"]]
        pairs.update(frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1 :])
    return pairs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_sources = os.environ.get("VECMETRIC_DEDUP_SOURCES", "/work/.mirror")
    p.add_argument("--sources", type=Path, default=Path(default_sources), help=f"folder of owner+name snapshots (default: {default_sources})")
    p.add_argument("--source", action="append", default=[], metavar="NAME=PATH", help=f"one source elsewhere; NAME in {', '.join(SOURCES)}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the set goes (default: {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the copies' parameters (default: 0)")
    p.add_argument("--copies", type=int, default=COPIES, help=f"copies per original (default: {COPIES})")
    args = p.parse_args(argv)
    args.overrides = {k: Path(v) for k, _, v in (s.partition("=") for s in args.source)}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    truth = materialise(args.out, args.sources, args.overrides, args.seed, args.copies)
    n_copies = sum(len(g["members"]) - 1 for g in truth["groups"])
    print(f"{len(truth['files'])} files in {args.out / 'images'}: {len(truth['groups'])} originals with {n_copies} copies, "
          f"{len(truth['distractors'])} distractors; {len(truth_pairs(truth))} duplicate pairs; truth in {args.out / 'truth.json'}")


if __name__ == "__main__":
    main()

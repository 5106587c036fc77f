"""ONNX export and the torch-free query runtime (issue 10, "search in a blink").

For each model: the export's own time, exporter and agreement with torch; onnxruntime against
torch images/s on the same uint8 batch, same thread count, the two alternating (best of
``--repeats``); and, in fresh processes that never import torch, what a query costs: importing
the runtime, ``load_export``, the first image (session creation with the graph's sha256 check,
decode, run) and the next one.

    python benchmarks/onnx_runtime.py
    python benchmarks/onnx_runtime.py --models default --clip --batch 32 --repeats 3 --runs 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_info, machine_tag, make_photos, median, print_table, report, usable_cores

MODELS = "default,timm:test_efficientnet@random,timm:test_resnet@random,timm:test_vit@random"
CLIP = "open_clip:ViT-S-32-alt@random"

QUERY = """
import json, sys, time
marks = [time.perf_counter()]
from vecmetric.runtime import load_export
marks.append(time.perf_counter())
import numpy, onnxruntime, PIL.Image
marks.append(time.perf_counter())
encoder = load_export(sys.argv[1])
marks.append(time.perf_counter())
encoder.prepare("image")
marks.append(time.perf_counter())
encoder.embed_paths([sys.argv[2]])
marks.append(time.perf_counter())
encoder.embed_paths([sys.argv[2]])
marks.append(time.perf_counter())
heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "open_clip", "torchvision")]
names = ["import", "libs", "load", "session", "first", "next"]
print(json.dumps({**{n: b - a for n, a, b in zip(names, marks, marks[1:])}, "heavy": heavy}))
"""
PHASES = ["import", "libs", "load", "session", "first", "next", "wall"]


def measure_model(spec: str, folder: Path, photo: Path, batch_size: int, repeats: int) -> dict:
    import torch

    from vecmetric.encoders import load_encoder
    from vecmetric.encoders._export_check import natural_images, throughput
    from vecmetric.encoders.export import export_encoder
    from vecmetric.runtime import load_export

    encoder = load_encoder(spec, device="cpu")
    info = export_encoder(encoder, folder)
    row = {"spec": spec, "dim": encoder.dim, "precision": encoder.precision, "export_s": info.seconds, "status": info.status}
    if not info.ok:
        return {**row, "reason": info.reason}
    image = info.towers["image"]
    onnx = load_export(folder)
    batch = natural_images(encoder.preprocess, count=batch_size, seed=1)
    rates = throughput(onnx.embed_tensors, encoder.embed_tensors, batch, rounds=repeats, budget_s=float("inf"))
    if encoder.precision != "fp32":  # also torch in fp32 (auto picked bf16 on this CPU)
        encoder.precision, auto = "fp32", encoder.precision
        fp32 = throughput(onnx.embed_tensors, encoder.embed_tensors, batch, rounds=repeats, budget_s=float("inf"))
        encoder.precision = auto
        rates["torch_fp32_images_per_s"] = fp32["torch_images_per_s"]
    raw = (folder / image["file"]).read_bytes()
    hash_s = median([_timed(lambda: hashlib.sha256(raw).hexdigest()) for _ in range(5)])
    one = load_export(folder)
    one.embed_paths([photo])
    one_image_s = median([_timed(lambda: one.embed_paths([photo])) for _ in range(15)])
    return {
        **row,
        "exporter": image["exporter"],
        "graph_mb": len(raw) / 1e6,
        "min_cosine": image["check"]["min_cosine"],
        "threads": torch.get_num_threads(),
        **rates,
        "export_bench": info.benchmark,
        "hash_s": hash_s,
        "one_image_s": one_image_s,
        "ratio": rates["onnxruntime_images_per_s"] / max(rates["torch_images_per_s"], rates.get("torch_fp32_images_per_s", 0)),
    }


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh_queries(folder: Path, photo: Path, runs: int) -> dict:
    """Median phase times of ``runs`` fresh processes that import only the runtime."""
    phases = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", QUERY, str(folder), str(photo)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        result["wall"] = time.perf_counter() - start
        if result["heavy"]:
            raise SystemExit(f"the query process imported {result['heavy']}")
        phases.append(result)
    return {k: median([p[k] for p in phases]) for k in PHASES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS, help=f"comma-separated specs (default {MODELS})")
    parser.add_argument("--clip", action="store_true", help=f"also {CLIP} (image tower timed; about a minute to export)")
    parser.add_argument("--batch", type=int, default=32, help="images per timed batch (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per runtime, best kept (default 3)")
    parser.add_argument("--runs", type=int, default=5, help="fresh query processes per model (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(usable_cores())
    info = machine_info()
    specs = [s for s in args.models.split(",") if s] + ([CLIP] if args.clip else [])
    rows, query_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        photo = make_photos(Path(tmp) / "photos", 1)[0]
        for i, spec in enumerate(specs):
            folder = Path(tmp) / f"export-{i}"
            print(f"{spec} ...", file=sys.stderr, flush=True)
            row = measure_model(spec, folder, photo, args.batch, args.repeats)
            rows.append(row)
            if row["status"] == "ok":
                query_rows.append((spec, fresh_queries(folder, photo, args.runs), row))
    throughput_table = print_table(
        f"onnxruntime against torch, batch {args.batch} uint8 images, {usable_cores()} threads each, best of {args.repeats}",
        ["model", "dim", "graph MB", "export s", "exporter", "1 - min cosine", "onnxruntime img/s", "torch img/s (auto)", "torch fp32 img/s", "ratio to best torch", "at export: ort / torch auto (batch 16)"],
        [
            (
                r["spec"], r["dim"], r.get("graph_mb", float("nan")), r["export_s"], r.get("exporter", r["status"]),
                f"{1 - r['min_cosine']:.1e}" if "min_cosine" in r else "n/a", r.get("onnxruntime_images_per_s", float("nan")),
                f"{r.get('torch_images_per_s', float('nan'))} ({r['precision']})",
                r.get("torch_fp32_images_per_s", r.get("torch_images_per_s", float("nan"))), r.get("ratio", float("nan")),
                _export_bench(r.get("export_bench")),
            )
            for r in rows
        ],
    )
    query_table = print_table(
        f"a query without torch: fresh processes, median of {args.runs} (seconds)",
        ["model", "import vecmetric.runtime", "import numpy, onnxruntime, Pillow", "load_export", "session (read, sha256, create)",
         "first image (decode, run)", "next image", "process wall", "sha256 of the graph (in memory)"],
        [(spec, *(q[k] for k in PHASES), r["hash_s"]) for spec, q, r in query_rows],
    )
    report(f"ONNX export and torch-free queries ({machine_tag('cpu')})", [throughput_table, query_table], info, write=not args.no_write)


def _export_bench(bench: dict | None) -> str:
    if not bench:
        return "n/a"
    return f"{bench['onnxruntime_images_per_s']:.0f} / {bench['torch_images_per_s']:.0f}"


if __name__ == "__main__":
    main()

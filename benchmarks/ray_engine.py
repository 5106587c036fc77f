"""The ray engine against the local engine on one machine, same folder, one run; and one actor's speed.

1. One actor's embedding function without Ray (what each Ray actor runs: ``_EmbedWorker`` on
   decoded uint8 batches), on ``--device``: images/s per actor. On a GPU box this is the figure to
   take (Ray itself need not be installed there).
2. Unless ``--actor-only``: a loopback-only Ray instance (its start timed), then ``vecmetric embed
   --json`` into fresh stores, alternating ``--engine local`` and ``--engine ray --address`` (a
   driver joining the running instance, as on a cluster), ``--repeats`` times each, plus one
   ``--engine ray`` run that starts and stops its own instance. images/s is the command's own
   figure (files embedded / seconds of ``embed_directory``: scan, model load, decode, embed, write;
   not the Python start). Overhead = local / ray - 1 (target: under 30%).

    python benchmarks/ray_engine.py                                   # 400 JPEGs 640x480, default model
    python benchmarks/ray_engine.py --actor-only --device cuda --images 4000   # on a GPU box
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import machine_info, machine_tag, make_photos, print_table, report, usable_cores, vecmetric_command

TARGET = 0.30


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=400, help="JPEGs in the folder (default: 400)")
    p.add_argument("--image-size", default="640x480", help="WxH of the JPEGs (default: 640x480)")
    p.add_argument("--model", default="default", help="model spec (default: default)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--device", default="cpu", help="device of the actor measurement (default: cpu)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each engine, alternated (default: 2)")
    p.add_argument("--actor-only", action="store_true", help="measure only one actor's embedding function (no Ray needed)")
    p.add_argument("--data-dir", type=Path, help="keep the JPEGs here and reuse them (default: a temporary folder)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def actor_speed(files, args) -> tuple[float, int, str]:
    """(images/s, torch threads, precision) of ``_EmbedWorker`` on pre-decoded batches, best of 2 passes."""
    import numpy as np

    from vecmetric.encoders import load_encoder
    from vecmetric.engines.ray import MAX_THREADS, _decode_batch, _EmbedWorker, _KnownHashes

    preprocess = load_encoder(args.model, device="cpu", precision="fp32").preprocess
    decoded = _decode_batch({"index": np.arange(len(files)), "path": np.array([f.path for f in files])}, preprocess, _KnownHashes([]))
    threads = min(MAX_THREADS, usable_cores())
    model = {"spec": args.model, "device": args.device, "precision": "auto", "fingerprint": None, "allow_pickle_files": False, "threads": threads}
    worker = _EmbedWorker(model)
    batches = [{k: v[i : i + args.batch_size] for k, v in decoded.items()} for i in range(0, len(files), args.batch_size)]
    worker(batches[0])  # warm-up
    best = 0.0
    for _ in range(2):
        started = time.perf_counter()
        for batch in batches:
            worker(batch)
        if args.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        best = max(best, len(files) / (time.perf_counter() - started))
    return best, threads, worker.encoder.precision


def start_ray(root: Path) -> tuple[str, float]:
    """A loopback-only Ray instance as ``vecmetric`` starts one; (its address, seconds to start)."""
    from vecmetric._ray_session import import_ray

    os.environ["HOME"] = str(root)  # its auth token goes here; the drivers read it from the same HOME
    ray = import_ray(None)
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=str(root / "t"), configure_logging=False)
    return ray.get_runtime_context().gcs_address, time.perf_counter() - started


def embed(folder: Path, store: Path, args, *extra: str) -> dict:
    command = [*vecmetric_command(), "embed", str(folder), "--store", str(store), "--model", args.model]
    command += ["--batch-size", str(args.batch_size), "--quiet", "--json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    assert result["embedded"] == args.images, result
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    width, height = (int(v) for v in args.image_size.split("x"))
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="vmr-") as tmp:
        folder = args.data_dir or Path(tmp) / "photos"
        make_photos(folder, args.images, size=(width, height))
        from vecmetric.store import scan_folder

        files = scan_folder(folder).files
        per_actor, threads, precision = actor_speed(files, args)
        print(f"one actor ({args.device}, {threads} threads, {precision}): {per_actor:.1f} images/s", flush=True)
        actor_table = print_table(
            f"one embedding actor's function without Ray ({args.device})",
            ["device", "torch threads", "precision", "batch", "images/s"],
            [[args.device, threads, precision, args.batch_size, per_actor]],
        )
        blocks = [actor_table]
        if not args.actor_only:
            blocks += engines(folder, Path(tmp), args)
    title = f"Ray engine, {machine_tag(args.device)}"
    report(title, blocks, info, write=not args.no_write)


def engines(folder: Path, tmp: Path, args) -> list[str]:
    address, startup = start_ray(tmp)
    local, ray_runs = [], []
    for i in range(args.repeats):
        local.append(embed(folder, tmp / f"local-{i}", args, "--engine", "local")["images_per_second"])
        ray_runs.append(embed(folder, tmp / f"ray-{i}", args, "--engine", "ray", "--address", address)["images_per_second"])
        print(f"run {i + 1}: local {local[-1]:.1f} images/s, ray {ray_runs[-1]:.1f} images/s", flush=True)
    import ray

    ray.shutdown()
    own = embed(folder, tmp / "ray-own", args, "--engine", "ray")
    local_ips, ray_ips = statistics.median(local), statistics.median(ray_runs)
    overhead = local_ips / ray_ips - 1
    rows = [
        ["local", f"{local_ips:.1f}", " / ".join(f"{v:.1f}" for v in local)],
        ["ray, joining a running instance (--address)", f"{ray_ips:.1f}", " / ".join(f"{v:.1f}" for v in ray_runs)],
        ["ray, starting and stopping its own instance", f"{own['images_per_second']:.1f}", "1 run"],
    ]
    table = print_table(f"engines, {args.images} JPEGs", ["engine", "images/s (median)", "runs"], rows)
    notes = (
        f"{args.images} JPEGs {args.image_size}, model `{args.model}`, precision auto, batch {args.batch_size}; "
        f"{args.repeats} alternated runs of each as `vecmetric embed --json` subprocesses into fresh stores "
        f"(images/s = embedded / seconds of `embed_directory`: scan, model load, decode, embed, write; not the Python start). "
        f"Starting the loopback Ray instance took {startup:.1f} s. "
        f"**Overhead local / ray - 1 = {overhead:+.0%}** (target under {TARGET:.0%})."
    )
    print(notes)
    return [table, notes]


if __name__ == "__main__":
    main()

"""Start-up latency of the CLI: ``vecmetric --help``, and what ``search`` adds to the unavoidable cost.

Every figure is the median wall time of several fresh subprocesses (the measured commands
run alternately, so a busy machine slows them alike):

- ``vecmetric --help`` (target < 0.3 s): the CLI must not import torch to print help;
- ``vecmetric search q.jpg --json`` on a small store whose index is current;
- the unavoidable cost: a Python process that imports torch and timm, loads the same model
  with ``load_encoder`` and embeds the one query image, and nothing else.

Target (issue 2): search - unavoidable < 0.3 s.

    python benchmarks/cli_latency.py
    python benchmarks/cli_latency.py --device cuda --runs 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, machine_info, machine_tag, make_photos, median, print_table, report, vecmetric_command

HELP_TARGET = 0.3
SEARCH_TARGET = 0.3

UNAVOIDABLE = """
import sys, torch, timm
from vecmetric.encoders import load_encoder
from vecmetric.images import load_image_tensor
encoder = load_encoder(sys.argv[1], device=sys.argv[2])
encoder.embed_tensors(load_image_tensor(sys.argv[3], encoder.preprocess)[None])
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs of each command; the median is reported (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    p.add_argument("--images", type=int, default=64, help="images in the store searched (default: 64)")
    p.add_argument("--model", default="default", help="model spec of the store (default: default)")
    p.add_argument("--device", default="auto", help="device for search and the baseline (default: auto)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p.parse_args(argv)


def wall(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run of ``cmd``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO_ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it here, so its rusage is its own
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.read().decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def timed(commands: dict[str, list[str]], runs: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    for _ in range(warmup):  # warm the page cache and Python's bytecode cache
        for name, cmd in commands.items():
            w, _c = wall(cmd)
            print(f"warm-up  {w:6.2f} s  {name}", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            w, c = wall(cmd)
            times[name].append(w)
            cpu[name].append(c)
            print(f"run      {w:6.2f} s  {name}", file=sys.stderr, flush=True)
    return times, cpu


def import_self_times(cmd: list[str]) -> dict[str, float]:
    """Seconds of import time per module (``-X importtime`` self time) for one run of ``cmd``."""
    cmd = [sys.executable, "-X", "importtime", *(cmd[1:] if cmd[0] == sys.executable else ["-m", "vecmetric", *cmd[len(vecmetric_command()) :]])]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT, text=True)
    out: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            self_us, _, name = line[len("import time:") :].split("|")
            try:
                out[name.strip()] = int(self_us) / 1e6
            except ValueError:
                continue
    return out


def extra_imports(search_cmd: list[str], base_cmd: list[str]) -> list[tuple[str, float, int]]:
    """Packages ``search`` imports that the unavoidable baseline does not: (package, seconds, modules)."""
    search, base = import_self_times(search_cmd), import_self_times(base_cmd)
    by_package: dict[str, list[float]] = {}
    for name, seconds in search.items():
        if name not in base:
            by_package.setdefault(name.split(".")[0], []).append(seconds)
    rows = [(pkg, sum(v), len(v)) for pkg, v in by_package.items()]
    return sorted(rows, key=lambda r: -r[1])


def main(argv=None) -> None:
    from vecmetric.index import build_index
    from vecmetric.store import embed_directory, open_store

    args = parse_args(argv)
    info = machine_info()
    cli = vecmetric_command()
    with tempfile.TemporaryDirectory(prefix="vm-bench-cli-") as tmp:
        tmp = Path(tmp)
        make_photos(tmp / "images", args.images, size=(640, 480), quality=90)
        query = make_photos(tmp / "queries", 1, size=(640, 480), quality=90, seed=1)[0]
        store = tmp / "store"
        embed_directory(tmp / "images", store, model=args.model, device=args.device, workers=0)
        build_index(open_store(store))

        commands = {
            "vecmetric --help": [*cli, "--help"],
            "python -c 'import torch, timm'": [sys.executable, "-c", "import torch, timm"],
            "unavoidable: import torch+timm, load_encoder, embed 1 image": [sys.executable, "-c", UNAVOIDABLE, args.model, args.device, str(query)],
            "vecmetric search q.jpg --json": [*cli, "search", str(query), "--store", str(store), "--json", "--k", "5", "--device", args.device],
        }
        times, cpu = timed(commands, args.runs, args.warmup)

        extra = extra_imports(commands["vecmetric search q.jpg --json"], commands["unavoidable: import torch+timm, load_encoder, embed 1 image"])

    med = {name: median(t) for name, t in times.items()}
    help_s = med["vecmetric --help"]
    base_s = med["unavoidable: import torch+timm, load_encoder, embed 1 image"]
    search_s = med["vecmetric search q.jpg --json"]
    added = search_s - base_s
    cpu_med = {name: median(t) for name, t in cpu.items()}
    cpu_added = cpu_med["vecmetric search q.jpg --json"] - cpu_med["unavoidable: import torch+timm, load_encoder, embed 1 image"]
    rows = [[name, med[name], min(t), max(t), cpu_med[name]] for name, t in times.items()]
    rows.append(["search - unavoidable (added by vecmetric)", added, "", "", cpu_added])
    table = print_table(
        f"seconds (median of {args.runs} fresh processes each)", ["command", "wall median", "wall min", "wall max", "CPU (user+sys) median"], rows
    )
    top = [r for r in extra if r[1] >= 0.005][:10]
    extra_table = print_table(
        "what search imports beyond the unavoidable baseline (one run with -X importtime; self time by package)",
        ["package", "import s", "modules"],
        [[pkg, round(sec, 3), n] for pkg, sec, n in top] + [["all extra", round(sum(r[1] for r in extra), 3), sum(r[2] for r in extra)]],
    )
    verdicts = [
        f"`vecmetric --help`: **{help_s:.3f} s** (target < {HELP_TARGET} s: {'met' if help_s < HELP_TARGET else 'missed'}).",
        f"`search` adds **{added:.3f} s** to the unavoidable {base_s:.3f} s "
        f"(target < {SEARCH_TARGET} s: {'met' if added < SEARCH_TARGET else 'missed'}); in CPU time it adds {cpu_added:.3f} s.",
        f"Store: {args.images} JPEGs of 640x480 embedded with `{args.model}`, index current (built before timing); "
        f"device `{args.device}`; CLI run as `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cli))}`.",
    ]
    report(
        f"CLI latency ({machine_tag(args.device)})",
        [table, extra_table, "\n".join(f"- {v}" for v in verdicts)],
        info,
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()

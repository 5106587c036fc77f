"""Shared by the benchmark scripts: the machine's description, synthetic images, tables, RESULTS.md.

Each script owns one ``## <title>`` section of ``benchmarks/RESULTS.md`` per kind of machine
(the title ends with a short machine tag such as ``2-core CPU`` or ``NVIDIA H200``), and
replaces only that section, so figures from other machines and other authors' sections stay.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
RESULTS_HEADER = (
    "# Benchmarks\n\n"
    "Figures written by the scripts in `benchmarks/` (each replaces only its own section).\n"
    "Re-run one with the command shown under its section; `benchmarks/run_all.sh` runs them all\n"
    "at the full sizes.\n"
)

if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))


# --- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def cpu_flags() -> str:
    """The flags that decide CPU inference speed (bf16 units)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no GPU, whatever the reason
        pass
    return None


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("vecmetric", "torch", "timm", "hnswlib", "pyarrow", "pillow", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            if pkg == "vecmetric":
                import vecmetric

                versions[pkg] = vecmetric.__version__
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "load": round(load, 2),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": usable_cores(),
        "ram_gib": round(ram_gib(), 1),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_tag(device: str = "auto") -> str:
    """A short name for the kind of machine a result belongs to (part of the section title)."""
    gpu = gpu_name()
    if gpu and device != "cpu":
        return f"{gpu}, {usable_cores()} cores"
    return f"{usable_cores()}-core CPU"


def machine_lines(info: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    flags = f" ({info['cpu_flags']})" if info["cpu_flags"] else ""
    return [
        f"- Machine: {info['cpu']}{flags}, {info['cores']} cores, {info['ram_gib']} GiB RAM; GPU: {info['gpu'] or 'none'}; "
        f"load average {info['load']} when the run started (other work on the machine skews the figures)",
        f"- Software: Python {info['python']}, {versions}",
    ]


def command_line() -> str:
    """The command that produced this run, as one would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = str(script)
    return shlex.join(["python", script_text, *sys.argv[1:]])


# --- tables and RESULTS.md ------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[fmt(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Print a titled markdown table; return it with its title, for RESULTS.md."""
    text = markdown_table(headers, rows)
    print(f"\n{title}\n{text}", flush=True)
    return f"{title[0].upper()}{title[1:]}:\n\n{text}"


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise writers of RESULTS.md (run_all.sh or people may run scripts side by side)."""
    import fcntl

    lock_path = path.with_name("." + path.name + ".lock")
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def replace_section(text: str, title: str, body: str) -> str:
    """``text`` with the ``## title`` section replaced by ``body`` (appended when absent).

    A section runs from its ``## `` heading to the next ``## `` heading (or the end);
    every other section, and anything before the first heading, is kept as it was.
    """
    heading = f"## {title}"
    lines = text.splitlines()
    new_block = [heading, "", *body.strip("\n").splitlines(), ""]
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        out = lines + ([""] if lines else []) + new_block
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        out = lines[:start] + new_block + lines[end:]
    return "\n".join(out).rstrip("\n") + "\n"


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or add) the ``## title`` section of RESULTS.md, atomically."""
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_HEADER
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(replace_section(text, title, body), encoding="utf-8")
        os.replace(tmp, path)
    print(f"\nwrote section '## {title}' of {path}", file=sys.stderr)


def report(title: str, blocks: Sequence[str], info: dict[str, Any] | None = None, write: bool = True) -> None:
    """Write a section: the blocks (tables, notes), then the machine and the exact command."""
    info = info or machine_info()
    body = "\n\n".join(b.strip("\n") for b in blocks if b)
    body += "\n\n" + "\n".join(
        [
            *machine_lines(info),
            f"- Run: `{command_line()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        ]
    )
    if write:
        write_section(title, body)


# --- timing -----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- synthetic photos ---------------------------------------------------------------------------


def _make_photo(args: tuple[str, int, int, int, int]) -> int:
    """One natural-looking JPEG: smooth colour fields (a few blobs and gradients) plus sensor noise."""
    import numpy as np
    from PIL import Image

    path, width, height, quality, seed = args
    rng = np.random.default_rng(seed)
    # A coarse random colour grid upsampled bicubically gives smooth gradients and soft edges.
    grid = rng.integers(0, 256, size=(rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    img = Image.fromarray(grid, "RGB").resize((width, height), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.integers(-12, 13, size=(height, width, 1), dtype=np.int16)  # luminance grain
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr, "RGB").save(path, "JPEG", quality=quality)
    return os.path.getsize(path)


def make_photos(
    folder: Path, count: int, size: tuple[int, int] = (1024, 768), quality: int = 90, per_folder: int = 100, processes: int | None = None, seed: int = 0
) -> list[Path]:
    """Write ``count`` JPEGs under ``folder/class_XXXX/`` (reusing any already there with the same name)."""
    from multiprocessing import get_context

    folder = Path(folder)
    jobs, paths = [], []
    for i in range(count):
        sub = folder / f"class_{i // per_folder:04d}"
        path = sub / f"img_{i:06d}_{size[0]}x{size[1]}.jpg"
        paths.append(path)
        if not path.exists():
            sub.mkdir(parents=True, exist_ok=True)
            jobs.append((str(path), size[0], size[1], quality, seed * 1_000_003 + i))
    if jobs:
        started = time.perf_counter()
        procs = processes or usable_cores()
        if procs > 1 and len(jobs) > 8:
            with get_context("fork").Pool(procs) as pool:
                list(pool.imap_unordered(_make_photo, jobs, chunksize=8))
        else:
            for job in jobs:
                _make_photo(job)
        print(f"made {len(jobs)} {size[0]}x{size[1]} JPEGs in {time.perf_counter() - started:.1f} s under {folder}", file=sys.stderr)
    return paths


def vecmetric_command() -> list[str]:
    """How to run the CLI: the console script beside this Python if there is one, else ``python -m vecmetric``."""
    script = Path(sys.executable).parent / "vecmetric"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "vecmetric"]

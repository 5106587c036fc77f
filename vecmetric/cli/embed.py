"""``vecmetric embed DIR``: embed an image folder into a Parquet store."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from ._common import AllowPickleOption, DeviceOption, JsonOption, StoreOption, escape, handle_errors, print_json, stderr, stdout, store_path
from ._logging import quiet_native_logs
from ._progress import RichReporter

MAX_LISTED_SKIPS = 10


@handle_errors
def embed_command(
    folder: Path = typer.Argument(..., help="Image folder, walked recursively (JPEG, PNG, WebP, GIF, BMP, TIFF, PGM/PPM)."),
    store: Path = StoreOption,
    model: str = typer.Option(
        None, "--model", "-m", help="Model spec: default, timm:NAME, open_clip:ARCH@TAG or a checkpoint folder. (default: the store's model, or 'default' for a new store)", show_default=False
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per forward pass."),
    workers: int = typer.Option(
        None,
        "--workers",
        "-w",
        min=0,
        help="Local engine: decoding processes, 0 decodes in this process (default: one per core, at most 8 on CPU, 32 with a GPU; half the cores when the GPU decodes JPEGs). Ray engine: embedding actors at most (default: one per --gpus-per-worker of the cluster's GPUs, else one per 8 CPUs).",
        show_default=False,
    ),
    device: str = DeviceOption,
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA and bf16-capable CPUs), fp32 or bf16."),
    decode: str = typer.Option(
        "auto", "--decode", help="Where JPEGs are decoded: auto (the GPU when the model runs on CUDA), cpu (the workers) or device (the model's device)."
    ),
    engine: str = typer.Option("local", "--engine", help="local (this machine) or ray (decode and embed on a Ray cluster; needs pip install 'vecmetric[ray]')."),
    address: str = typer.Option(
        None, "--address", help="Ray cluster to run on, e.g. auto or HEAD:6379; FOLDER must be readable at the same path on every node. (default: a Ray instance on this machine, loopback only)", show_default=False
    ),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0.0, help="Ray engine: GPUs per embedding actor (0.5: two actors share a GPU); 0 embeds on CPUs."),
    runtime: str = typer.Option(
        "auto", "--runtime", help="A new store's runtime: auto (onnxruntime on a CPU when it measures faster than torch), onnxruntime or torch. A store keeps its own."
    ),
    json_out: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    allow_pickle_files: bool = AllowPickleOption,
) -> None:
    """Embed every image under FOLDER into the store: incremental and resumable.

    Unchanged files are skipped, changed files re-embedded, renamed or duplicate files
    reuse their vectors, and rows of deleted files are dropped. Bad files are skipped,
    listed in STORE/_errors.jsonl and summarised. Stop it at any time: the next run continues.

    With --engine ray, files are read and decoded in Ray tasks and embedded by Ray actors (one
    model each); this process plans and writes the store as the local engine does.
    """
    from ..store import embed_directory

    native_logs = quiet_native_logs() if engine == "ray" else contextlib.nullcontext()
    with native_logs, RichReporter(unit="images", quiet=quiet) as reporter:
        result = embed_directory(
            folder,
            store_path(store),
            model=model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            workers=workers,
            reporter=reporter,
            allow_pickle_files=allow_pickle_files,
            decode=decode,
            runtime=runtime,
            engine=engine,
            address=address,
            gpus_per_worker=gpus_per_worker,
        )
    if json_out:
        print_json(result.to_dict())
    else:
        stdout.print(
            f"{result.embedded} embedded, {result.reused} reused, {result.unchanged} unchanged, "
            f"{result.removed} removed, {len(result.skipped)} skipped; the store holds {result.rows} rows "
            f"({result.images_per_second:.1f} images/s, {result.seconds:.1f} s)"
        )
    if result.skipped:
        for item in result.skipped[:MAX_LISTED_SKIPS]:
            stderr.print(f"[yellow]skipped[/yellow] {escape(item['path'])}: {escape(item['reason'])}", highlight=False, soft_wrap=True)
        more = len(result.skipped) - MAX_LISTED_SKIPS
        tail = f" (and {more} more)" if more > 0 else ""
        log = escape(str(Path(result.store) / "_errors.jsonl"))
        stderr.print(f"[yellow]{len(result.skipped)} files skipped{tail}; all listed in {log}[/yellow]", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed_command)

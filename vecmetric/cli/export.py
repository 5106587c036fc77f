"""``vecmetric export``: write (or rewrite) the ONNX export that lets searches run without torch."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import AllowPickleOption, JsonOption, StoreOption, handle_errors, print_json, stdout, store_path, warn


@handle_errors
def export_command(
    store: Path = StoreOption,
    model: str = typer.Option(
        None, "--model", "-m", help="Export this model instead of a store's: a run folder gets RUN_DIR/_model, any other spec the per-user cache.", show_default=False
    ),
    json_out: bool = JsonOption,
    allow_pickle_files: bool = AllowPickleOption,
) -> None:
    """Export a store's model (or a model) to ONNX, checked against torch on real images.

    A store keeps its export in STORE/_model; embed writes it when it creates a store, so this is
    for older stores, a damaged export, or a model without a store. Searches then load the model
    with onnxruntime in a fraction of a second, without torch. A model that cannot be exported is
    recorded with the reason and searches go on with torch.
    """
    from ..encoders import load_encoder
    from ..encoders.export import export_encoder
    from ..runtime import export_dir, model_dir
    from ..store import export_store_model

    if model is not None:
        encoder = load_encoder(model, device="cpu", precision="fp32", allow_pickle_files=allow_pickle_files)
        folder = model_dir(encoder.spec) if Path(encoder.spec).is_dir() else export_dir(encoder.fingerprint)
        info = export_encoder(encoder, folder)
    else:
        info = export_store_model(store_path(store), allow_pickle_files=allow_pickle_files)
    summary = {
        "folder": str(info.folder),
        "status": info.status,
        "reason": info.reason,
        "towers": sorted(info.towers),
        "min_cosine": min((tower.get("check", {}).get("min_cosine", 1.0) for tower in info.towers.values()), default=None),
        "seconds": round(info.seconds, 2),
        "benchmark": info.benchmark,
    }
    if json_out:
        print_json(summary)
    elif info.ok:
        bench = info.benchmark or {}
        speed = (
            f"; onnxruntime {bench['onnxruntime_images_per_s']:.0f} vs torch {bench['torch_images_per_s']:.0f} images/s here"
            if bench.get("onnxruntime_images_per_s") and bench.get("torch_images_per_s")
            else ""
        )
        stdout.print(f"exported {', '.join(sorted(info.towers))} to {info.folder} (cosine to torch >= {summary['min_cosine']:.6f}{speed})")
    else:
        warn(f"the model cannot be exported to ONNX: {info.reason}")
    if not info.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)

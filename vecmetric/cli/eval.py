"""``vecmetric eval DATA_DIR --model SPEC``: retrieval metrics on a labelled folder or store."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import DeviceOption, JsonOption, handle_errors, print_json, stdout
from ._progress import RichReporter

_ROWS = (
    ("precision_at_1", "precision@1"),
    ("r_precision", "R-precision"),
    ("mean_average_precision_at_r", "MAP@R"),
    ("recall_at_1", "recall@1"),
    ("recall_at_5", "recall@5"),
    ("recall_at_10", "recall@10"),
)


@handle_errors
def eval_command(
    data_dir: Path = typer.Argument(None, help="Folder with one subfolder of images per class (not needed with --store).", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="Encoder: default, timm:NAME, open_clip:ARCH@TAG or a checkpoint folder (e.g. a train RUN_DIR)."),
    store: Path = typer.Option(None, "--store", "-s", help="Evaluate the labelled rows of this store instead of embedding DATA_DIR.", show_default="none"),
    metric: str = typer.Option(None, "--metric", help="cosine, l2 or ip.", show_default="the model's (or the store's), else cosine"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward pass."),
    image_size: int = typer.Option(None, "--image-size", help="Embed at this image size instead of the model's own.", show_default="the model's"),
    workers: int = typer.Option(None, "--workers", "-w", help="DataLoader worker processes decoding images.", show_default="CPUs - 1, at most 8"),
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Report precision@1, R-precision, MAP@R and recall@1/5/10 of leave-one-out retrieval.

    Every image queries all the others with exact nearest-neighbour search; an image whose
    class has no other image is not a query. Metrics as in "A Metric Learning Reality Check"
    (Musgrave et al. 2020), computed by pytorch-metric-learning's AccuracyCalculator.
    """
    from ..evaluate import evaluate

    with RichReporter(unit="images", transient=True) as reporter:
        result = evaluate(
            data_dir,
            model,
            store=store,
            metric=metric,
            batch_size=batch_size,
            device=device,
            workers=workers,
            image_size=image_size,
            reporter=reporter,
        )
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    source = f"store {store}" if store is not None else f"{data_dir} with {model}"
    table = Table(title=f"{source}: {result['num_queries']} queries, {result['num_classes']} classes", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in _ROWS:
        table.add_row(label, f"{result[key]:.4f}")
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)

"""``vecmetric train DATA_DIR --out RUN_DIR``: metric-learning fine-tuning on class folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import INTERRUPTED_EXIT_CODE
from ._common import DeviceOption, JsonOption, handle_errors, print_json, stderr, stdout
from ._progress import RichReporter


def _fmt(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _history_table(history: list[dict[str, Any]], best_epoch: int):
    from rich.table import Table

    from ..train.loop import VAL_LABELS

    table = Table(title="training", title_justify="left")
    for name in ("epoch", "loss", "active", *[label for _, label in VAL_LABELS], "img/s"):
        table.add_column(name, justify="right")
    for row in history:
        mark = " *" if row["epoch"] == best_epoch else ""
        table.add_row(
            f"{row['epoch']}{mark}",
            _fmt(row.get("loss")),
            _fmt(row.get("active_triplets"), 3),
            *[_fmt(row.get(key)) for key, _ in VAL_LABELS],
            _fmt(row.get("train_images_per_s"), 1),
        )
    return table


@handle_errors
def train_command(
    data_dir: Path = typer.Argument(..., help="Folder with one subfolder of images per class.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: best model (a valid --model spec), last state, metrics.csv, curves.png.", show_default=False),
    model: str = typer.Option("default", "--model", "-m", help="Encoder to fine-tune: default, timm:NAME, open_clip:ARCH@TAG or a checkpoint folder."),
    embedding_dim: int = typer.Option(None, "--embedding-dim", help="Add a linear projection head to this size.", show_default="keep the backbone's size, no head"),
    loss: str = typer.Option(None, "--loss", help="triplet, multi-similarity, contrastive, proxy-anchor, normalized-softmax or supcon (README: which to pick).", show_default="multi-similarity; triplet for l2, supcon if hyperbolic"),
    metric: str = typer.Option(None, "--metric", help="cosine (L2-normalised embeddings) or l2 (raw, Euclidean); used for loss, validation and indexes. Not with --geometry hyperbolic.", show_default="cosine"),
    geometry: str = typer.Option("euclidean", "--geometry", help="euclidean, or hyperbolic: a Poincare-ball head, measured by the Poincare distance everywhere (triplet, contrastive, supcon)."),
    curvature: float = typer.Option(None, "--curvature", help="c > 0 of the Poincare ball: radius 1/sqrt(c), Gaussian curvature -c (hyperbolic only).", show_default="0.1"),
    margin: float = typer.Option(None, "--margin", help="Margin of triplet (scale it to the norms for l2), contrastive (negatives') or proxy-anchor.", show_default="0.2; 0 (cosine) or 1; 0.1"),
    miner: str = typer.Option(None, "--miner", help="triplet: semihard, hard, all, batch-hard; multi-similarity: multi-similarity, all; contrastive: all, batch-hard.", show_default="the first"),
    temperature: float = typer.Option(None, "--temperature", help="Temperature of supcon (0.2 on the Poincare ball, as Hyp-ViT) and normalized-softmax.", show_default="0.1; 0.05"),
    proxy_lr: float = typer.Option(None, "--proxy-lr", help="Learning rate of the proxies of proxy-anchor and normalized-softmax.", show_default="100 x --lr"),
    m_per_class: int = typer.Option(4, "--m-per-class", help="Images of each class in a batch (every training class needs at least this many)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Images per batch on each device; a multiple of --m-per-class."),
    val_classes: str = typer.Option("0.2", "--val-classes", help="Classes held out for validation: a fraction (0 for none) or comma-separated class names."),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training images."),
    lr: float = typer.Option(1e-4, "--lr", help="Backbone learning rate (AdamW)."),
    head_lr: float = typer.Option(None, "--head-lr", help="Projection head learning rate.", show_default="10 x --lr"),
    warmup: float = typer.Option(0.05, "--warmup", help="Fraction of the steps with a linear learning-rate warm-up, followed by cosine decay."),
    freeze_backbone_epochs: int = typer.Option(0, "--freeze-backbone-epochs", help="Train only the head for this many first epochs (needs --embedding-dim)."),
    freeze_bn: bool = typer.Option(True, "--freeze-bn/--train-bn", help="Keep BatchNorm layers on their pretrained running statistics (their scale and shift still train); --train-bn updates them from the small per-class batches."),
    image_size: int = typer.Option(None, "--image-size", help="Training and evaluation image size; smaller is faster. Saved with the model.", show_default="the encoder's"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips (turn off for text, digits, characters)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the class split, batches, augmentations and head."),
    workers: int = typer.Option(None, "--workers", "-w", help="DataLoader worker processes decoding images.", show_default="CPUs - 1, at most 8"),
    cache: str = typer.Option("auto", "--cache", help="Keep the decoded training images in memory: auto (when they fit in a quarter of the free memory), ram (whenever they fit) or off. Results are identical either way."),
    device: str = DeviceOption,
    devices: int = typer.Option(1, "--devices", help="Processes (GPUs) per node; above 1 trains with DDP."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes for multi-node DDP."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 mixed precision on GPUs that have it, fp32 on CPU), fp32 or bf16."),
    export: bool = typer.Option(True, "--export/--no-export", help="Write an ONNX export of the best model into RUN_DIR/_model, so searches and CPU embedding with it need no torch."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out with the same options; the result equals an uninterrupted run.", show_default="off"),
    json_out: bool = JsonOption,
) -> None:
    """Fine-tune an encoder with a metric-learning loss so that images of a class are close together.

    Classes, not images, are split into training and validation, so the validation metrics
    measure retrieval among classes the model never saw. Each epoch logs loss, the fraction of
    active triplets, precision@1, R-precision and MAP@R; the best epoch by MAP@R is saved in
    --out, which then works as --model for embed, search and eval.
    """
    from ..train import TrainOptions, train
    from ..train.loop import VAL_LABELS

    options = TrainOptions(
        model=model,
        embedding_dim=embedding_dim,
        loss=loss,
        metric=metric,
        geometry=geometry,
        curvature=curvature,
        margin=margin,
        miner=miner,
        temperature=temperature,
        proxy_lr=proxy_lr,
        m_per_class=m_per_class,
        batch_size=batch_size,
        val_classes=val_classes,
        epochs=epochs,
        lr=lr,
        head_lr=head_lr,
        warmup=warmup,
        freeze_backbone_epochs=freeze_backbone_epochs,
        freeze_bn=freeze_bn,
        image_size=image_size,
        flip=flip,
        seed=seed,
        workers=workers,
        cache=cache,
        device=device,
        devices=devices,
        num_nodes=num_nodes,
        precision=precision,
        resume=resume,
        export=export,
    )
    reporter = RichReporter(unit="images", transient=True)
    try:
        result = train(data_dir, out, options, reporter)
    except KeyboardInterrupt:
        reporter.close()
        stderr.print(
            f"[bold red]Interrupted:[/bold red] the last finished epoch is kept in {out}/last; "
            "run the same command with --resume to continue."
        )
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    finally:
        reporter.close()
    if not result.is_main:  # another DDP process: rank zero prints the summary
        return
    before = next((row for row in result.history if row["epoch"] == 0), {})
    summary = {
        "run_dir": str(result.run_dir),
        "best_epoch": result.best_epoch,
        "epochs": result.last.get("epoch", 0),
        **{f"before_{key}": before.get(key) for key, _ in VAL_LABELS},
        **{key: result.best.get(key) for key, _ in VAL_LABELS},
        "train_images_per_s": result.train_images_per_s,
    }
    if json_out:
        print_json(summary)
        return
    stderr.print(_history_table(result.history, result.best_epoch))
    from rich.table import Table

    table = Table(title=f"{result.run_dir} (best epoch {result.best_epoch}, marked *)", title_justify="left")
    table.add_column("validation")
    table.add_column("before", justify="right")
    table.add_column("best", justify="right")
    for key, label in VAL_LABELS:
        table.add_row(label, _fmt(before.get(key)), _fmt(result.best.get(key)))
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)

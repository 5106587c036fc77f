"""The training loop: Lightning Fabric, a metric-learning loss (with its miner), validation on unseen classes.

Speed on the hot path: images arrive as uint8 from persistent DataLoader workers (which crop
them from decoded copies kept in memory when they fit, see ``image_cache``), are normalised on
the device, and run channels_last; bf16 autocast on GPUs that support it.
On CPUs fp32 is the default: measured on an AMX Xeon, bf16 training of EfficientNet-Lite0
ran 2-5x slower than fp32 (its backward pass has no fast bf16 kernels), while bf16
inference is 3.7x faster, so validation still embeds in bf16 there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._system import loader_workers
from ..errors import TrainError
from ..evaluate import SampleError, embed_batches, retrieval_metrics
from ..progress import Reporter, SilentReporter
from .checkpoint import save_last_state, write_metrics_csv, write_run
from .losses import active_triplet_counts, build_loss, build_miner
from .optim import build_optimizer, lr_lambda
from .options import TrainOptions
from .sampler import MPerClassBatchSampler
from .setup import RunPlan, build_training_model, launch_fabric, make_loaders, plan_run

__all__ = ["TrainResult", "TrainSession", "VAL_LABELS", "train", "epoch_line"]

#: The validation metrics of every epoch, with their short labels.
VAL_LABELS = (("precision_at_1", "P@1"), ("r_precision", "R-prec"), ("mean_average_precision_at_r", "MAP@R"))
VAL_KEYS = tuple(key for key, _ in VAL_LABELS)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        run_dir: the run folder (a valid ``--model`` spec).
        best_epoch: the epoch whose weights are in ``run_dir`` (best validation MAP@R; the last without validation).
        best: that epoch's record; ``last``: the final epoch's record.
        history: one record per epoch (epoch 0: validation before training).
        train_images_per_s: mean training throughput over the epochs run in this call.
        is_main: whether this process is DDP's global rank zero (the one that wrote the run folder).
    """

    run_dir: Path
    best_epoch: int
    best: dict[str, Any]
    last: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_images_per_s: float = 0.0
    resumed_from_epoch: int = 0
    is_main: bool = True


def epoch_line(record: dict[str, Any]) -> str:
    """One line summing up an epoch's record (epoch 0: before training)."""
    parts = [f"epoch {record['epoch']}"]
    if record.get("loss") is not None:
        parts.append(f"loss {record['loss']:.4f}  active {record['active_triplets']:.3f}")
    else:
        parts.append("before training")
    parts += [f"{label} {record[key]:.4f}" for key, label in VAL_LABELS if record.get(key) is not None]
    if record.get("train_images_per_s"):
        parts.append(f"{record['train_images_per_s']:.1f} img/s")
    return "  ".join(parts)


def _batches(loader):
    """Iterate a DataLoader of training samples; a sample that could not be read stops the run with one line."""
    for batch in loader:
        if isinstance(batch, SampleError):
            raise TrainError(f"cannot read {batch.path} during training (changed since the scan?): {batch.reason}")
        yield batch


def _batchnorm_eval(module) -> None:
    """Keep BatchNorm layers on their pretrained running statistics (their scale and shift still train)."""
    from torch import nn

    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class TrainSession:
    """One run's model, optimizer, schedule, data and loss on a launched Fabric, stepped an epoch at a time."""

    def __init__(self, plan: RunPlan, options: TrainOptions, fabric, reporter: Reporter):
        import torch

        from ..encoders import Normalizer, resolve_precision

        self.plan, self.options, self.fabric, self.reporter = plan, options, fabric, reporter
        self.is_main = fabric.is_global_zero
        self.net, self.architecture = build_training_model(plan.encoder, options)
        self.loss_fn = _build_loss(options, len(plan.train_set.class_names), self.net.dim).to(fabric.device)
        self.miner = build_miner(options.miner, options.metric, options.margin, loss=options.loss, curvature=options.curvature)
        # Active triplets: those violating the triplet margin; for the other losses, those ranked the wrong way round.
        self.active_margin = options.margin if options.loss == "triplet" else 0.0
        optimizer = build_optimizer(self.net, options, self.loss_fn)
        self.sampler = MPerClassBatchSampler(
            plan.train_set.labels, options.m_per_class, options.batch_size, options.seed, fabric.global_rank, fabric.world_size
        )
        self.steps_per_epoch = len(self.sampler)
        total = self.steps_per_epoch * options.epochs
        warmup = max(1, round(options.warmup * total)) if options.warmup else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, warmup))
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.best_epoch, self.best_score = 1, 0, -1.0
        if plan.saved is not None:
            self.net.load_state_dict(plan.saved["model"])
            _load_loss_state(self.loss_fn, plan.saved.get("loss") or {}, plan.run_dir)
        self.model, self.optimizer = fabric.setup(self.net, optimizer)
        if plan.saved is not None:
            self._restore(plan.saved)
        self.normalizer = Normalizer(plan.preprocess, fabric.device)
        self.inference_precision = resolve_precision(fabric.device, "auto")
        pin = fabric.device.type == "cuda"
        self.loader, self.val_loader = make_loaders(plan, options, self.sampler, pin, reporter)

    def _restore(self, saved: dict[str, Any]) -> None:
        """Continue from a saved state: after ``fabric.setup``, so the moments land on the parameters' device."""
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.history = saved["history"]
        self.start_epoch = int(saved["epoch"]) + 1
        self.best_epoch, self.best_score = int(saved["best_epoch"]), float(saved["best_score"])
        self.reporter.log(f"resuming {self.plan.run_dir} after epoch {saved['epoch']}")

    def validate(self) -> dict[str, float]:
        """Retrieval metrics on the held-out classes ({} without validation)."""
        import torch

        from ..encoders import inference_autocast

        if self.val_loader is None:
            return {}
        self.reporter.start(f"validating {len(self.plan.val_set)} images", None)
        was_training = self.net.training
        self.net.eval()

        def embed(images):
            with torch.inference_mode(), inference_autocast(self.fabric.device, self.inference_precision):
                return self.net(self.normalizer(images)).float().cpu().numpy()

        try:
            embeddings, labels = embed_batches(embed, self.val_loader)
        finally:
            self.net.train(was_training)
        scores = retrieval_metrics(embeddings, labels, self.options.metric, curvature=self.options.curvature)
        return {key: scores[key] for key in VAL_KEYS}

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch (every random draw derived from ``(seed, epoch)``), then validate; returns its record."""
        import torch
        from lightning_fabric.utilities.seed import seed_everything

        options, fabric, net = self.options, self.fabric, self.net
        seed_everything(options.seed * 100_003 + epoch, verbose=False)
        self.sampler.set_epoch(epoch)
        frozen = epoch <= options.freeze_backbone_epochs
        net.backbone.requires_grad_(not frozen)
        self.model.train()
        net.backbone.train(not frozen)
        if options.freeze_bn:
            _batchnorm_eval(net.backbone)
        self.reporter.start(f"epoch {epoch}/{options.epochs}", self.steps_per_epoch)
        loss_sum = torch.zeros((), device=fabric.device)
        active = torch.zeros(2, device=fabric.device)
        step = (epoch - 1) * self.steps_per_epoch
        started = time.perf_counter()
        for images, labels in _batches(self.loader):
            labels = labels.to(fabric.device)
            embeddings = self.model(self.normalizer(images)).float()
            triplets = self.miner(embeddings, labels) if self.miner is not None else None
            loss = self.loss_fn(embeddings, labels, triplets)
            self.optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if fabric.world_size > 1:
                _average_loss_gradients(self.loss_fn, fabric)
            self.optimizer.step()
            self.scheduler.step()
            step += 1
            # Over every valid triplet of the batch, not just the mined ones: semi-hard mining keeps only
            # margin violators, so the mined fraction would always be 1.
            count, total = active_triplet_counts(embeddings, labels, None, self.loss_fn.distance, self.active_margin)
            active += torch.stack([count, total])
            loss_sum += loss.detach()
            # Reading the loss waits for the device: only every 10th step.
            self.reporter.advance(1, **({"loss": float(loss.detach())} if step % 10 == 1 else {}))
        seconds = time.perf_counter() - started
        loss_mean = fabric.all_reduce(loss_sum / self.steps_per_epoch, reduce_op="mean")
        active = fabric.all_reduce(active, reduce_op="sum")
        return {
            "epoch": epoch,
            "step": step,
            "loss": float(loss_mean),
            "active_triplets": float(active[0] / active[1]) if active[1] > 0 else 0.0,
            **self.validate(),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "train_images_per_s": self.steps_per_epoch * options.batch_size * fabric.world_size / seconds,
            "seconds": seconds,
        }

    def record(self, record: dict[str, Any]) -> None:
        """Keep an epoch's record; on rank zero write the best model, metrics.csv and ``last/``, and report it."""
        from ..encoders import save_checkpoint

        self.history.append(record)
        epoch = record["epoch"]
        improved = epoch > 0 and record.get("mean_average_precision_at_r", float(epoch)) > self.best_score
        if improved:
            self.best_epoch, self.best_score = epoch, record.get("mean_average_precision_at_r", float(epoch))
        if not self.is_main:
            return
        if epoch > 0:
            run_dir, options = self.plan.run_dir, self.options
            extra = {"training": {**self.plan.identity, "epoch": epoch, "metrics": record}}
            if improved:
                save_checkpoint(run_dir, self.net, self.architecture, self.plan.preprocess, options.metric, extra=extra)
            write_metrics_csv(run_dir, self.history)
            state = {
                "epoch": epoch,
                "step": record["step"],
                "best_epoch": self.best_epoch,
                "best_score": self.best_score,
                "history": self.history,
            }
            save_last_state(
                run_dir, self.net, self.architecture, self.plan.preprocess, options.metric, self.optimizer, self.scheduler, state, extra,
                loss=self.loss_fn,
            )
        self.reporter.log(epoch_line(record))
        self.reporter.finished("epoch", record)

    def result(self, throughputs: list[float]) -> TrainResult:
        """The run's outcome, from the records kept so far."""
        by_epoch = {row["epoch"]: row for row in self.history}
        last = self.history[-1] if self.history else {}
        return TrainResult(
            run_dir=self.plan.run_dir,
            best_epoch=self.best_epoch,
            best=by_epoch.get(self.best_epoch, last),
            last=last,
            history=self.history,
            train_images_per_s=sum(throughputs) / len(throughputs) if throughputs else 0.0,
            resumed_from_epoch=self.start_epoch - 1,
            is_main=self.is_main,
        )


def export_run(plan: RunPlan, reporter: Reporter):
    """Export the run's best model into ``RUN_DIR/_model/``, checked on the validation (else training) images."""
    from ..encoders import load_encoder
    from ..encoders.export import export_encoder
    from ..runtime import model_dir

    encoder = load_encoder(str(plan.run_dir), device="cpu", precision="fp32")
    samples = (plan.val_set or plan.train_set).paths[:: max(1, len((plan.val_set or plan.train_set).paths) // 8)][:8]
    info = export_encoder(encoder, model_dir(plan.run_dir), sample_paths=samples)
    if info.ok:
        reporter.log(f"exported the best model to ONNX in {model_dir(plan.run_dir)}")
    else:
        reporter.warn(f"the trained model could not be exported to ONNX (searches will load it with torch): {info.reason}")
    return info


def _build_loss(options: TrainOptions, num_classes: int, embedding_dim: int):
    """The run's loss; a proxy loss's proxies are drawn from the run's seed, so a run is repeatable."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        return build_loss(
            options.metric,
            options.margin,
            loss=options.loss,
            temperature=options.temperature,
            num_classes=num_classes,
            embedding_dim=embedding_dim,
            curvature=options.curvature,
        )


def _load_loss_state(loss_fn, state: dict[str, Any], run_dir: Path) -> None:
    """Put a proxy loss's saved proxies back (in place, so the optimizer keeps pointing at them)."""
    if not list(loss_fn.parameters()):
        return
    try:
        loss_fn.load_state_dict(state, strict=True)
    except RuntimeError:
        raise TrainError(f"cannot resume from {run_dir / 'last'}: the loss's proxies are missing or do not fit", hint="start a new run with another --out") from None


def _average_loss_gradients(loss_fn, fabric) -> None:
    """DDP averages the model's gradients, not the loss's: average a proxy loss's over the processes too."""
    for parameter in loss_fn.parameters():
        if parameter.grad is not None:
            parameter.grad.copy_(fabric.all_reduce(parameter.grad, reduce_op="mean"))


def train(data_dir, out_dir, options: TrainOptions | None = None, reporter: Reporter | None = None) -> TrainResult:
    """Fine-tune an encoder with a metric-learning loss (``options.loss``) so that same-class images are close.

    Args:
        data_dir: a folder with one subfolder per class.
        out_dir: the run folder; holds the best model (a valid ``--model`` spec), ``last/``, metrics and curves.
        options: a ``TrainOptions`` (defaults when None).
        reporter: receives warnings, progress and each epoch's record (default: silent except warnings).

    Returns:
        A ``TrainResult``.

    Raises:
        InputError: ``data_dir`` is missing or holds no class folders with images.
        TrainError: unusable data, options or run folder.
        EncoderError: the model spec or device cannot be used.
    """
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    options = replace(options or TrainOptions())
    # Under DDP every process runs this function (the launcher starts the others with their rank in
    # the environment, which Lightning reads): only global rank zero reports, warnings included.
    reporter = (reporter or Reporter()) if getattr(rank_zero_only, "rank", 0) == 0 else SilentReporter()
    options.validate()
    options.workers = loader_workers(leave_one_cpu=True) if options.workers is None else options.workers
    options.head_lr = 10 * options.lr if options.head_lr is None else options.head_lr

    plan = plan_run(Path(data_dir), Path(out_dir), options, reporter)
    fabric = launch_fabric(options, plan.device)
    if fabric.is_global_zero:
        write_run(plan.run_dir, plan.identity)
    session = TrainSession(plan, options, fabric, reporter)
    if not session.history and session.val_loader is not None:
        session.record({"epoch": 0, "step": 0, **session.validate()})
    throughputs = []
    for epoch in range(session.start_epoch, options.epochs + 1):
        record = session.run_epoch(epoch)
        throughputs.append(record["train_images_per_s"])
        session.record(record)
        fabric.barrier()
    if session.is_main:
        from .curves import plot_curves

        plot_curves(session.history, plan.run_dir / "curves.png", metric=options.metric)
        if options.export:
            export_run(plan, reporter)
        reporter.close()
    return session.result(throughputs)

"""``TrainOptions``: every training setting, with the CLI's defaults, saved with the run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..distances import check_geometry, get_metric
from ..encoders import PRECISIONS
from ..errors import TrainError
from .image_cache import CACHE_MODES
from .losses import DEFAULT_LOSSES, LOSSES, get_loss

__all__ = ["TrainOptions", "PROXY_LR_FACTOR"]

#: Proxies learn at 100 x the backbone's learning rate, as in Proxy Anchor (Kim et al. 2020).
PROXY_LR_FACTOR = 100


@dataclass
class TrainOptions:
    """How to train; the defaults are the CLI's.

    Attributes:
        model: the encoder spec to start from.
        embedding_dim: size of a linear projection head; None keeps the backbone's features (no head).
        loss: ``triplet``, ``multi-similarity``, ``contrastive``, ``proxy-anchor``, ``normalized-softmax`` or
            ``supcon`` (``vecmetric.train.losses.LOSSES``); None: ``DEFAULT_LOSSES`` for the metric
            (multi-similarity for cosine, triplet for l2, supcon on the Poincare ball).
        metric: ``cosine`` (L2-normalised embeddings, cosine similarity) or ``l2`` (raw embeddings, Euclidean);
            None: ``cosine``, or ``poincare`` for hyperbolic geometry (where ``--metric`` is refused).
        geometry: ``euclidean`` or ``hyperbolic`` (a Poincare-ball head and its distance).
        curvature: the ball's ``c > 0`` (radius ``1 / sqrt(c)``, Gaussian curvature ``-c``); default 0.1.
        margin: the loss's margin (triplet, contrastive, proxy-anchor); None: its default.
        miner: the loss's miner (triplet: ``semihard``, ``hard``, ``all``, ``batch-hard``; multi-similarity:
            ``multi-similarity``, ``all``; contrastive: ``all``, ``batch-hard``); None: its default.
        temperature: the loss's temperature (supcon, normalized-softmax); None: its default.
        proxy_lr: the learning rate of a proxy loss's proxies (default 100 x ``lr``, as Proxy Anchor trains them).
        m_per_class: images of each class in a batch.
        batch_size: images per batch on each device.
        val_classes: a fraction of the classes held out for validation, or their names.
        epochs: passes over the training images.
        lr: backbone learning rate (AdamW).
        head_lr: projection head learning rate (default 10 x ``lr``).
        weight_decay: AdamW weight decay.
        warmup: fraction of the training steps with a linear learning-rate warm-up; cosine decay follows.
        freeze_backbone_epochs: first epochs train the head only (needs ``embedding_dim``).
        freeze_bn: keep BatchNorm layers on their pretrained running statistics while training (their scale and
            shift still train): per-class batches are small and skewed, and updating the statistics from them
            cost a third of the validation MAP@R after one Omniglot epoch in our runs.
        image_size: training and evaluation image size (default: the encoder's).
        flip: random horizontal flips (turn off for text, digits, characters).
        seed: seeds the split, the sampler, the augmentations and the head.
        workers: DataLoader worker processes.
        cache: keep the decoded training images in memory: ``auto`` (when they fit in a quarter of the free
            memory), ``ram`` (whenever they fit at all) or ``off``. Results are the same either way.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        devices, num_nodes: DDP processes per node and nodes.
        precision: ``auto`` (bf16 mixed precision on CUDA with bf16, fp32 on CPU, where bf16 training was slower), ``fp32``, ``bf16``.
        resume: continue the run in the output folder.
        export: write an ONNX export of the best model into ``RUN_DIR/_model/`` at the end, so searches
            and ``embed`` on a CPU with the trained model run without torch.
    """

    model: str = "default"
    embedding_dim: int | None = None
    loss: str | None = None
    metric: str | None = None
    geometry: str = "euclidean"
    curvature: float | None = None
    margin: float | None = None
    miner: str | None = None
    temperature: float | None = None
    proxy_lr: float | None = None
    m_per_class: int = 4
    batch_size: int = 32
    val_classes: Any = 0.2
    epochs: int = 10
    lr: float = 1e-4
    head_lr: float | None = None
    weight_decay: float = 1e-4
    warmup: float = 0.05
    freeze_backbone_epochs: int = 0
    freeze_bn: bool = True
    image_size: int | None = None
    flip: bool = True
    seed: int = 0
    workers: int | None = None
    cache: str = "auto"
    device: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    precision: str = "auto"
    resume: bool = False
    export: bool = True

    def validate(self) -> None:
        """Refuse option values no data could make work, then fill in the loss's and geometry's defaults.

        Raises:
            TrainError: naming the option and the valid range or choices.
        """
        self._resolve_loss()
        if self.cache not in CACHE_MODES:
            raise TrainError(f"unknown --cache {self.cache!r}", hint="choose one of: " + ", ".join(CACHE_MODES))
        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown --precision {self.precision!r}", hint="choose one of: " + ", ".join(PRECISIONS))
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 4, f"--batch-size must be at least 4, not {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, not {self.lr}"),
            (self.head_lr is None or self.head_lr > 0, f"--head-lr must be positive, not {self.head_lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, not {self.weight_decay}"),
            (0 <= self.warmup < 1, f"--warmup is a fraction of the steps in [0, 1), not {self.warmup}"),
            (self.embedding_dim is None or self.embedding_dim >= 1, f"--embedding-dim must be positive, not {self.embedding_dim}"),
            (self.image_size is None or self.image_size >= 16, f"--image-size must be at least 16, not {self.image_size}"),
            (self.devices >= 1 and self.num_nodes >= 1, "--devices and --num-nodes must be at least 1"),
            (self.workers is None or self.workers >= 0, f"--workers must be >= 0, not {self.workers}"),
            (
                0 <= self.freeze_backbone_epochs <= self.epochs,
                f"--freeze-backbone-epochs must be between 0 and --epochs ({self.epochs}), not {self.freeze_backbone_epochs}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainError(message)
        if self.freeze_backbone_epochs and not self.embedding_dim:
            raise TrainError(
                "--freeze-backbone-epochs trains only the projection head, and there is none",
                hint="add --embedding-dim N",
            )

    def _resolve_loss(self) -> None:
        """Check ``--loss`` against the metric, geometry, miner, margin, temperature and proxy lr, and fill their defaults.

        Options a loss has no use for are refused rather than ignored, so that a run says what it did.
        """
        if self.loss is not None:
            get_loss(self.loss)  # an unknown name first, whatever else is wrong
        geometry = check_geometry(self.geometry, self.curvature, error=TrainError)
        if geometry.hyperbolic:
            if self.metric not in (None, "poincare"):
                raise TrainError(
                    f"--metric {self.metric} applies to --geometry euclidean",
                    hint="hyperbolic embeddings are compared by the Poincare distance; leave --metric out",
                )
            self.metric, self.curvature = "poincare", geometry.curvature
        else:
            self.metric = get_metric(self.metric or "cosine", error=TrainError, trainable=True).name
        self.loss = self.loss or DEFAULT_LOSSES[self.metric]
        spec = get_loss(self.loss)
        if geometry.hyperbolic and not spec.hyperbolic:
            hyperbolic = ", ".join(name for name, s in LOSSES.items() if s.hyperbolic)
            raise TrainError(f"--loss {spec.name} does not work with --geometry hyperbolic", hint=f"use one of: {hyperbolic}")
        if not geometry.hyperbolic and self.metric not in spec.metrics:
            raise TrainError(f"--loss {spec.name} works with --metric {' or '.join(spec.metrics)}, not {self.metric}")
        if self.miner is not None and not spec.miners:
            raise TrainError(f"--loss {spec.name} takes no --miner", hint="leave --miner out")
        if self.miner is not None and self.miner not in spec.miners:
            raise TrainError(f"unknown --miner {self.miner!r} for --loss {spec.name}", hint="choose one of: " + ", ".join(spec.miners))
        for option, value, default in (("--margin", self.margin, spec.margin), ("--temperature", self.temperature, spec.temperature)):
            if value is not None and default is None:
                raise TrainError(f"--loss {spec.name} has no {option[2:]}", hint=f"leave {option} out")
        if self.proxy_lr is not None and not spec.proxies:
            raise TrainError(f"--loss {spec.name} has no proxies to learn", hint="--proxy-lr applies to proxy-anchor and normalized-softmax")
        for option, value in (("--margin", self.margin), ("--temperature", self.temperature), ("--proxy-lr", self.proxy_lr)):
            if value is not None and not math.isfinite(value):
                raise TrainError(f"{option} must be a finite number, not {value}")
        if self.margin is not None and self.margin < 0:
            raise TrainError(f"--margin must be >= 0, not {self.margin}")
        if self.temperature is not None and self.temperature <= 0:
            raise TrainError(f"--temperature must be positive, not {self.temperature}")
        if self.proxy_lr is not None and self.proxy_lr <= 0:
            raise TrainError(f"--proxy-lr must be positive, not {self.proxy_lr}")
        self.miner = self.miner or (spec.miners[0] if spec.miners else None)
        self.margin = spec.default_margin(self.metric) if self.margin is None else self.margin
        self.temperature = spec.default_temperature(self.metric) if self.temperature is None else self.temperature
        if spec.proxies and self.proxy_lr is None:
            self.proxy_lr = PROXY_LR_FACTOR * self.lr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


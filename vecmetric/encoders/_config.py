"""Configuration dataclasses saved beside everything an encoder produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the tensor the network expects.

    The image is resized so its shorter side is ``image_size / crop_pct``, centre
    cropped to ``image_size`` square, scaled to [0, 1], then normalised.
    """

    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @property
    def resize_size(self) -> int:
        return int(round(self.image_size / self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessConfig":
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bicubic"),
            crop_pct=float(data.get("crop_pct", cls.crop_pct)),
        )


@dataclass(frozen=True)
class ArchitectureConfig:
    """Enough to rebuild a network without its weights.

    Attributes:
        source: ``"timm"`` or ``"open_clip"``.
        name: the timm model name or the open_clip architecture.
        embedding_dim: the size of the projection head, or None for no head.
        normalize: whether outputs are L2-normalised.
        geometry: ``euclidean``, or ``hyperbolic`` for a Poincare-ball head (``vecmetric.distances.Geometry``).
        curvature, clip_r: the ball's ``c > 0`` and the feature clipping radius (hyperbolic only).
    """

    source: str
    name: str
    embedding_dim: int | None = None
    normalize: bool = True
    geometry: str = "euclidean"
    curvature: float | None = None
    clip_r: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.geometry == "euclidean":
            # Left out, so that a Euclidean model's description (and the fingerprint hashed from it) stays
            # what it was before hyperbolic models existed.
            for key in ("geometry", "curvature", "clip_r"):
                data.pop(key)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArchitectureConfig":
        return cls(
            source=data["source"],
            name=data["name"],
            embedding_dim=data.get("embedding_dim"),
            normalize=bool(data.get("normalize", True)),
            geometry=data.get("geometry", "euclidean"),
            curvature=None if data.get("curvature") is None else float(data["curvature"]),
            clip_r=None if data.get("clip_r") is None else float(data["clip_r"]),
        )

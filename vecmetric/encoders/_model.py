"""The network every encoder wraps: a backbone, an optional projection head, then L2 normalisation or a Poincare ball."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class EmbeddingModel(nn.Module):
    """Backbone features, projected to ``embedding_dim`` when a head is asked for, then normalised or put on a ball.

    Args:
        backbone: maps a normalised image batch (N, 3, H, W) to features (N, backbone_dim).
        backbone_dim: the size of the backbone's features.
        embedding_dim: the size of a linear projection head; None keeps the backbone's features.
        normalize: L2-normalise the output (what the cosine metric wants).
        curvature: put the output on the Poincare ball of curvature ``-curvature`` (``c > 0``, Hyp-ViT's
            head: clip the features to norm ``clip_r``, then the exponential map at the origin); None: Euclidean.
        clip_r: the clipping radius of the hyperbolic head.
    """

    def __init__(
        self,
        backbone: nn.Module,
        backbone_dim: int,
        embedding_dim: int | None = None,
        normalize: bool = True,
        curvature: float | None = None,
        clip_r: float | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.backbone_dim = int(backbone_dim)
        self.head = nn.Linear(backbone_dim, embedding_dim) if embedding_dim else None
        self.normalize = normalize
        self.curvature = curvature
        self.clip_r = clip_r

    @property
    def dim(self) -> int:
        return self.head.out_features if self.head is not None else self.backbone_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.head is not None:
            features = self.head(features)
        features = features.float()
        if self.curvature is not None:
            return to_poincare_ball(features, self.curvature, self.clip_r)
        return F.normalize(features, dim=-1) if self.normalize else features


def to_poincare_ball(features: torch.Tensor, curvature: float, clip_r: float | None) -> torch.Tensor:
    """Hyp-ViT's head: clip each feature vector to norm ``clip_r``, map it by ``expmap0`` onto the ball of
    curvature ``-c``, and keep it a little inside the boundary (hyptorch's ``project``, eps 1e-3).

    ``expmap0(u) = tanh(sqrt(c) |u|) u / (sqrt(c) |u|)``.
    """
    sqrt_c = float(curvature) ** 0.5
    norm = features.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    if clip_r is not None:
        features = features * torch.clamp(clip_r / norm, max=1.0)
        norm = features.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    mapped = torch.tanh(sqrt_c * norm) * features / (sqrt_c * norm)
    max_norm = (1.0 - 1e-3) / sqrt_c
    mapped_norm = mapped.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    return mapped * torch.clamp(max_norm / mapped_norm, max=1.0)

"""The network every encoder wraps: a backbone, an optional projection head, L2 normalisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class EmbeddingModel(nn.Module):
    """Backbone features, projected to ``embedding_dim`` when a head is asked for, then normalised.

    Args:
        backbone: maps a normalised image batch (N, 3, H, W) to features (N, backbone_dim).
        backbone_dim: the size of the backbone's features.
        embedding_dim: the size of a linear projection head; None keeps the backbone's features.
        normalize: L2-normalise the output (what the cosine metric wants).
    """

    def __init__(self, backbone: nn.Module, backbone_dim: int, embedding_dim: int | None = None, normalize: bool = True):
        super().__init__()
        self.backbone = backbone
        self.backbone_dim = int(backbone_dim)
        self.head = nn.Linear(backbone_dim, embedding_dim) if embedding_dim else None
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return self.head.out_features if self.head is not None else self.backbone_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.head is not None:
            features = self.head(features)
        features = features.float()
        return F.normalize(features, dim=-1) if self.normalize else features

"""Engines: how ``embed`` turns the files it planned into vectors (the Ray engine lives in ``ray``)."""

from ._outcome import Outcome
from .ray import INSTALL_HINT, ray_embed_outcomes, require_ray

__all__ = ["INSTALL_HINT", "Outcome", "ray_embed_outcomes", "require_ray"]

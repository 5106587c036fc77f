"""How ``embed`` turns files into vectors: the local pipeline, or Ray for clusters.

Both take the planner's files to embed and yield one ``Outcome`` per file, in any order;
the store's one writer turns outcomes into rows. ``engine_outcomes`` picks one. Ray itself is
imported only when the ray engine runs (it is the optional ``ray`` extra).
"""

from ._outcome import ENGINES, Outcome
from ._select import check_engine, driver_device, engine_outcomes
from .ray import INSTALL_HINT, ray_embed_outcomes, require_ray

__all__ = ["ENGINES", "INSTALL_HINT", "Outcome", "check_engine", "driver_device", "engine_outcomes", "ray_embed_outcomes", "require_ray"]

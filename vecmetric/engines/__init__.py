"""How ``embed`` turns files into vectors: the local pipeline, or Ray for clusters.

Both take the planner's files to embed and yield one ``Outcome`` per file, in any order;
the store's one writer turns outcomes into rows.
"""

from ._outcome import ENGINES, Outcome

__all__ = ["ENGINES", "Outcome"]

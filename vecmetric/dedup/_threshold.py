"""Dedup thresholds: checking a given one, the measured default, and ``--auto`` from a store's own distances.

Thresholds are in the units ``search`` prints: 1 - cosine similarity, 1 - inner product, or
squared L2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

#: The default model's (``default``: EfficientNet-Lite0, cosine) threshold, measured by
#: ``benchmarks/dedup_bench.py`` on 328 real photos (benchmarks/RESULTS.md, "Near duplicates"):
#: F1 of duplicate pairs is 0.953 at 0.10, 0.997 at 0.20, 1.0 from 0.25 to 0.35, and falls from
#: 0.40 (the closest distinct photos, two harbour scenes, are 0.397 apart). 0.25 is the low end of
#: the plateau, as distinct photos come closer to each other in a larger library.
DEFAULT_THRESHOLD = 0.25
DEFAULT_MODEL_SPEC = "default"
#: Without a clear valley, ``--auto`` takes this share of the median distance between random pairs.
#: On the benchmark the default model's copies lie within 0.29 of one another (99% within 0.23)
#: while random pairs have a median of 0.80: 0.25 x 0.80 = 0.20 keeps most copies and stays far below
#: any distinct pair. It is scale-free, so it carries over to models whose distances spread otherwise.
FALLBACK_SHARE = 0.25
#: ... and never more than this share, whatever the valley says.
CEILING_SHARE = 0.5
#: A valley counts when its bottom is at most this share of the lower peak ...
MAX_DEPTH = 0.5
#: ... and the mean of the upper class is this many times the lower's. Without duplicates the
#: nearest-neighbour distances form one hump, which Otsu's split cuts into halves whose means
#: differ by 1.2-1.5x, and small samples show shallow dips in it; copies sit 5-20x closer.
MIN_SEPARATION = 3.0


def check_threshold(value: Any, metric: str) -> float:
    """``value`` as a threshold for ``metric``.

    Raises:
        InputError: not a finite number; negative (cosine, l2); above 2 (cosine).
    """
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise InputError(f"the threshold {value!r} is not a number") from None
    if not math.isfinite(threshold):
        raise InputError(f"the threshold {value!r} is not a finite number")
    if metric in ("cosine", "l2") and threshold < 0:
        raise InputError(f"the threshold {threshold:g} is negative", hint=f"{metric} distances are 0 or more")
    if metric == "cosine" and threshold > 2:
        raise InputError(f"the threshold {threshold:g} is above 2", hint="cosine distances (1 - cosine similarity) lie between 0 and 2")
    return threshold


def default_threshold(model: dict[str, Any], metric: str) -> float | None:
    """The measured default for a store's model (its manifest's ``model``), or None when there is none.

    Only the built-in default model under cosine has one; other models use ``--auto``, and an
    inner-product store needs an explicit threshold.
    """
    if metric == "cosine" and model.get("spec") == DEFAULT_MODEL_SPEC:
        return DEFAULT_THRESHOLD
    return None


@dataclass
class AutoThreshold:
    """What ``auto_threshold`` chose and from what."""

    threshold: float
    method: str  # "valley" or "fallback"
    median_random: float
    rows: int
    details: dict[str, Any] = field(default_factory=dict)


def _otsu(x) -> float:
    """The split of ``x`` that maximises the between-class variance (Otsu 1979)."""
    import numpy as np

    xs = np.sort(x)
    n = len(xs)
    csum = np.cumsum(xs)
    k = np.arange(1, n)
    w0, w1 = k / n, (n - k) / n
    m0, m1 = csum[:-1] / k, (csum[-1] - csum[:-1]) / (n - k)
    best = int(np.argmax(w0 * w1 * (m0 - m1) ** 2))
    return float((xs[best] + xs[best + 1]) / 2)


def _valley(nn, bins: int = 64, sigma: float = 1.5):
    """The lowest point of the smoothed histogram of ``nn`` between the two Otsu classes' means.

    Returns ``(threshold, depth, separation)``: depth is the valley's height over the lower of
    the two peaks (0: empty valley, 1: no valley), separation the upper class's mean over the
    lower's; ``(None, 1.0, 1.0)`` when there are not two classes.
    """
    import numpy as np

    if len(nn) < 8 or np.ptp(nn) == 0:
        return None, 1.0, 1.0
    split = _otsu(nn)
    low, high = nn[nn <= split], nn[nn > split]
    if len(low) < 2 or len(high) < 2:
        return None, 1.0, 1.0
    separation = float(high.mean() / max(low.mean(), 1e-12))
    counts, edges = np.histogram(nn, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    offsets = np.arange(-4 * math.ceil(sigma), 4 * math.ceil(sigma) + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    density = np.convolve(counts, kernel / kernel.sum(), mode="same")
    between = np.flatnonzero((centres >= low.mean()) & (centres <= high.mean()))
    if not len(between):
        return None, 1.0, separation
    lowest = density[between].min()
    flat = between[density[between] <= lowest + 1e-9 * max(1.0, lowest)]
    v = int(flat[len(flat) // 2])  # the middle of a flat bottom
    peak = min(density[: v + 1].max(), density[v:].max())
    return float(centres[v]), float(density[v] / peak) if peak > 0 else 1.0, separation


def auto_threshold(index, vectors, ids, content_hashes, metric: str, sample: int = 20000, seed: int = 0) -> AutoThreshold:
    """A threshold from the store's own distance distribution.

    Every row (or ``sample`` of them) gets its nearest neighbour with other bytes (byte-identical
    files are grouped anyway and would pile up at 0). In a store with near duplicates these
    distances are bimodal: copies close to their originals, every other photo
    much further from its nearest neighbour. The threshold is the bottom of the valley between
    the two (a smoothed histogram of the distances, between the means of the two classes of
    Otsu's split), provided the valley is deep (``MAX_DEPTH``) and the two classes far apart
    (``MIN_SEPARATION``).
    Without such a valley it is ``FALLBACK_SHARE`` of the median distance of random pairs;
    either way at most ``CEILING_SHARE`` of that median.

    Args:
        index: the store's open ``HnswIndex`` (labels are row ids).
        vectors, ids, content_hashes: the store's rows.
        metric: the index's metric (``cosine`` or ``l2``; ``ip`` is refused).
        sample: rows looked at, at most (chosen at random, seeded).
        seed: seeds the sample and the random pairs.

    Raises:
        InputError: ``metric`` is ``ip`` (an inner-product store needs an explicit threshold),
            or the store has fewer than two rows.
    """
    import numpy as np

    from ..index import pairwise_distances

    if metric == "ip":
        raise InputError("an inner-product store needs an explicit --threshold", hint="--auto works for cosine and l2 stores")
    vectors = np.asarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise InputError("the store needs at least two rows to choose a threshold")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(ids), size=min(sample, len(ids)), replace=False))
    a, b = rng.integers(0, len(ids), size=(2, min(4096, 4 * len(ids))))
    a, b = a[a != b], b[a != b]
    median_random = float(np.median([pairwise_distances(vectors[i : i + 1], vectors[j : j + 1], metric)[0, 0] for i, j in zip(a[:2000], b[:2000])]))
    nn = _nearest_other(index, vectors[chosen], ids, chosen, content_hashes)
    at, depth, separation = _valley(nn[np.isfinite(nn)])
    ceiling = CEILING_SHARE * median_random
    details = {"valley_depth": round(depth, 3), "separation": round(separation, 2), "sampled": int(len(chosen))}
    if at is not None and depth <= MAX_DEPTH and separation >= MIN_SEPARATION:
        return AutoThreshold(min(at, ceiling), "valley", median_random, len(ids), details)
    return AutoThreshold(FALLBACK_SHARE * median_random, "fallback", median_random, len(ids), details)


def _nearest_other(index, queries, ids, positions, content_hashes, k: int = 8):
    """Distance from each query row to its nearest row with another content hash (inf if none in k)."""
    import numpy as np

    from ._pairs import EF_PER_K

    by_id = dict(zip(ids.tolist(), content_hashes))
    labels, dist = index.query(queries, min(k, index.count), ef=EF_PER_K * k)
    out = np.full(len(queries), np.inf)
    for r, (row_labels, row_dist) in enumerate(zip(labels, dist)):
        own = content_hashes[positions[r]]
        for label, d in zip(row_labels.tolist(), row_dist.tolist()):
            if label != ids[positions[r]] and by_id.get(label) != own:
                out[r] = max(d, 0.0)
                break
    return out

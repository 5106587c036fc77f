"""Retrieval metrics on hand-made vectors with answers worked out by hand."""

import numpy as np
import pytest

from vecmetric.evaluate import METRIC_KEYS, evaluate_embeddings, retrieval_metrics

# Points on a line, ranked by Euclidean distance (no ties). Classes A and B have 3 items (R = 2);
# C has one item, so it is no query, and it lies far from everything.
#   query  neighbours by distance     P@1  R-prec  AP@R  recall@1  recall@5
#   0  A   1A 2.5B 10B 11B 13A         1    1/2    1/2     1         1
#   1  A   0A 2.5B 10B 11B 13A         1    1/2    1/2     1         1
#   2.5 B  1A 0A 10B 11B 13A           0    0      0       0         1
#   10 B   11B 13A 2.5B 1A 0A          1    1/2    1/2     1         1
#   11 B   10B 13A 2.5B 1A 0A          1    1/2    1/2     1         1
#   13 A   11B 10B 2.5B 1A 0A          0    0      0       0         1
LINE = np.array([[0.0], [1.0], [2.5], [10.0], [11.0], [13.0], [100.0]]) * np.array([[1.0, 0.0]])
LINE_LABELS = ["A", "A", "B", "B", "B", "A", "C"]
EXPECTED = {
    "precision_at_1": 4 / 6,
    "r_precision": 2 / 6,
    "mean_average_precision_at_r": 2 / 6,
    "recall_at_1": 4 / 6,
    "recall_at_5": 1.0,
    "recall_at_10": 1.0,
}


def test_metrics_on_points_on_a_line_match_the_hand_computation():
    result = retrieval_metrics(LINE, LINE_LABELS, "l2")
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value), key
    assert (result["num_images"], result["num_classes"], result["num_queries"]) == (7, 3, 6)


def test_average_precision_credits_a_hit_below_a_miss():
    # A: 0, 1, 3.5 (R = 2); B: 2.2, 50 (R = 1).
    #   0 A:   1A 2.2B       AP@R = (1/1 + 0) / 2 = 1/2
    #   1 A:   0A 2.2B       1/2
    #   2.2 B: 1A            0
    #   3.5 A: 2.2B 1A       (0 + 1/2) / 2 = 1/4   (a hit at rank 2 counts with precision 1/2)
    #   50 B:  3.5A          0
    points = np.array([[0.0], [1.0], [2.2], [3.5], [50.0]]) * np.array([[1.0, 0.0]])
    result = retrieval_metrics(points, ["A", "A", "B", "A", "B"], "l2", max_chunk=2)
    assert result["mean_average_precision_at_r"] == pytest.approx((0.5 + 0.5 + 0 + 0.25 + 0) / 5)
    assert result["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0) / 5)
    assert result["precision_at_1"] == pytest.approx(2 / 5)


def test_the_metric_decides_the_neighbours():
    # Cosine sees directions, l2 sees positions: these are all right for one and all wrong for the other.
    points = np.array([[1.0, 0.0], [10.0, 1.0], [1.0, 1.5], [8.0, 12.0]])
    labels = ["A", "A", "B", "B"]
    assert retrieval_metrics(points, labels, "cosine")["precision_at_1"] == 1.0
    assert retrieval_metrics(points, labels, "l2")["precision_at_1"] == 0.0


def test_perfect_clusters_score_one_everywhere():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 10
    points = np.repeat(centres, 4, axis=0) + rng.normal(scale=0.01, size=(20, 16))
    result = retrieval_metrics(points, np.repeat(np.arange(5), 4), "cosine")
    assert all(result[key] == pytest.approx(1.0) for key in METRIC_KEYS)


def test_chunked_knn_gives_the_same_answers():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(257, 8)).astype(np.float32)
    labels = rng.integers(0, 23, size=257)
    whole = retrieval_metrics(points, labels, "cosine")
    chunked = retrieval_metrics(points, labels, "cosine", max_chunk=10, distance_batch=7)
    for key in METRIC_KEYS:
        assert chunked[key] == pytest.approx(whole[key], abs=1e-9), key


def test_lone_items_only_and_empty_sets_give_zero_queries():
    result = retrieval_metrics(np.eye(3), ["a", "b", "c"])
    assert result["num_queries"] == 0 and result["precision_at_1"] == 0.0


def test_evaluate_embeddings_keys_are_the_metrics_and_the_counts():
    result = evaluate_embeddings(LINE, LINE_LABELS, "l2", skipped=2)
    assert list(result) == [*METRIC_KEYS, "num_images", "num_classes", "num_queries", "num_skipped"]
    assert result["num_skipped"] == 2

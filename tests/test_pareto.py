"""Pareto front (accuracy higher-better, FLOPs lower-better) with ties, and the PNG plot."""
from __future__ import annotations

import numpy as np
import pytest

from goldnas_fast.search.pareto import dominates, pareto_front, plot_pareto


def brute_force_front(points: np.ndarray) -> list[int]:
    n = len(points)
    keep = [i for i in range(n) if not any(dominates(points[k], points[i]) for k in range(n) if k != i)]
    return sorted(keep, key=lambda i: (points[i][1], i))


def test_hand_made_front_with_dominated_points() -> None:
    # (accuracy, flops)
    pts = [(90.0, 100.0), (92.0, 150.0), (91.0, 160.0), (89.0, 90.0), (93.0, 300.0), (88.0, 120.0)]
    # 2 is dominated by 1 (less accurate, more FLOPs); 5 by 0.
    assert pareto_front(pts) == [3, 0, 1, 4]


def test_ties_in_flops_keep_only_the_most_accurate() -> None:
    pts = [(90.0, 100.0), (91.0, 100.0), (89.0, 50.0)]
    assert pareto_front(pts) == [2, 1]


def test_ties_in_accuracy_keep_only_the_cheapest() -> None:
    pts = [(90.0, 100.0), (90.0, 80.0), (95.0, 200.0)]
    assert pareto_front(pts) == [1, 2]


def test_exact_duplicates() -> None:
    pts = [(90.0, 100.0), (85.0, 50.0), (90.0, 100.0), (90.0, 120.0)]
    assert pareto_front(pts) == [1, 0, 2]
    assert pareto_front(pts, duplicates="first") == [1, 0]


def test_matches_brute_force_on_random_points_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        pts = np.stack([rng.integers(0, 6, n), rng.integers(0, 6, n)], axis=1).astype(float)
        assert pareto_front(pts) == brute_force_front(pts)


def test_empty_and_bad_input() -> None:
    assert pareto_front([]) == []
    with pytest.raises(ValueError, match="pairs"):
        pareto_front([(1.0, 2.0, 3.0)])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(np.nan, 2.0)])
    with pytest.raises(ValueError, match="duplicates"):
        pareto_front([(1.0, 2.0)], duplicates="last")


def test_plot_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(80, 95, 12), rng.uniform(10, 200, 12)], axis=1)
    bg = (rng.uniform(10, 95, 500), rng.uniform(5, 220, 500))
    out = plot_pareto(pts, None, tmp_path / "sub" / "pareto.png", title="test", background=bg)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    single = plot_pareto([(90.0, 10.0)], [0], tmp_path / "one.png")
    assert single.stat().st_size > 0
    with pytest.raises(ValueError, match="front"):
        plot_pareto(pts, [12], tmp_path / "bad.png")

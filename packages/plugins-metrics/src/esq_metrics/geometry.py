"""Geometry: the Spearman correlation of the Euclidean distances of the same pairs in x and in y.

Not the topological Geometry Score (Khrulkov & Oseledets 2018, "Geometry Score: A Method For
Comparing Generative Adversarial Networks", ICML; that one is ``topological.py``): the previous
tool cited it but computed this rank correlation. Takes ``(x: N×d1, y: N×d2)``, row i of both the
same sample; higher is more similar, 1 for identical inputs.
"""

from __future__ import annotations

from esq_metrics.spearman import SpearmanOfPairs


class Geometry(SpearmanOfPairs):
    """Spearman correlation between the Euclidean distances of the same pairs in x and in y.

    ρ = Spearman({‖xᵢ − xⱼ‖}, {‖yᵢ − yⱼ‖}) over the pairs i < j, with average ranks for ties.
    Distances are ranked as squared distances (the same ranks), computed in float64 as
    ‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ over blocks of rows; identical rows are at distance exactly 0.

    The name is kept for compatibility: the previous tool cited the topological Geometry Score
    (Khrulkov & Oseledets 2018, "Geometry Score: A Method For Comparing Generative Adversarial
    Networks", ICML) but computed this rank correlation, and it drew the samples of X and of Y
    independently, which made every score ≈ 0. Here the pairs are the same samples in both.

    Ranking needs every pair's value at once: 8 bytes per pair for the values, then 24 during the
    sort (values, argsort, sorted copy) while the other input's ranks (4 bytes per pair) wait;
    about 1.4 GB at the default ``max_pairs`` = 5·10⁷ (N ≈ 10,000), which is also the cost above
    it. When N(N − 1)/2 exceeds ``max_pairs`` the statistic is computed exactly on a seeded random
    subset of m rows, m the largest with m(m − 1)/2 ≤ ``max_pairs``: all pairs among them, the same
    rows in x and y. A subset of rows rather than of pairs keeps the work at m² instead of N²
    distances (a uniform sample of pairs needs every distance computed). ``details`` holds
    ``sampled``, ``pairs`` (pairs used), ``rows`` and ``seed``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> Geometry()(x, 3.0 * x + 1.0).value
    1.0
    """

    name = "geometry"
    kind = "squared"  # the ranks of the distances
    undefined = "distance"

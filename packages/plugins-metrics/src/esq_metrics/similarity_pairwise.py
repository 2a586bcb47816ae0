"""Similarity of the pairwise structure of paired features: geometry, RSA, RKD relation, k-NN Jaccard.

Each metric takes ``(x: N×d1, y: N×d2)`` where row i of both describes the same image (for example
original and quantized embeddings), checks them with :func:`esq.validation.paired_features`
(2-D, finite, same number of rows, at least 3) and compares how the N samples relate to one
another in ``x`` and in ``y``. Higher is more similar; identical inputs give 1. The component
returns ``MetricResult(value, details)``; the plain function of the same name returns the float.

- ``geometry``: Spearman correlation of the Euclidean distances of the same pairs in x and y.
- ``rsa``: representational similarity analysis, Kriegeskorte et al. 2008, "Representational
  similarity analysis – connecting the branches of systems neuroscience" (Front. Syst. Neurosci.).
- ``relational``: the distance relation of relational knowledge distillation, Park et al. 2019,
  "Relational Knowledge Distillation" (CVPR).
- ``jaccard_knn``: overlap of the k-nearest-neighbour sets under cosine similarity.

Scale: no N×N matrix is ever held. Pairwise quantities are computed in blocks of rows, each block
of at most about ``memory_budget_mib`` MiB (the upper triangle only where the measure is
symmetric), in float64. The Spearman metrics need the values of all pairs at once to rank them:
``max_pairs`` bounds that (see :class:`Geometry`).

Ties: Spearman uses average ranks (as ``scipy.stats.rankdata(method="average")``); k-NN orders by
similarity, then by smaller index. Ties are between computed float64 values, so they are exact
where the arithmetic is (integer-valued or binary-fraction features give exact squared distances);
a decimal grid such as ``np.round(x, 1)`` is not representable, and two mathematically equal
distances may then differ in the last bit, in this code as in scipy. Identical rows are detected
exactly: their distance (and RSA dissimilarity) is exactly 0, and their k-NN similarities are
computed once, so copies tie exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from esq import ConfigError, DataError, MetricResult
from esq import paired_features

BLOCK_TEMPORARIES = 4  # float64 arrays the size of one block alive at once (product, mask, pairs…)
RANK_CHUNK = 1 << 22  # elements per step when turning sorted positions into ranks
SCREEN_MARGIN = 8  # distinct rows screened in float32 beyond the k + 1 needed (see nearest_neighbours)


def _integer(metric: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{metric}: {name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _budget(metric: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{metric}: memory_budget_mib must be a positive number, got {value!r}")
    return float(value)


def _rows_per_block(memory_budget_mib: float, columns: int) -> int:
    """Rows of a block of ``columns`` float64 columns that keep its temporaries within the budget."""
    return max(1, int(memory_budget_mib * 2**20) // (8 * BLOCK_TEMPORARIES * max(columns, 1)))


def _inputs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = paired_features(x, y, min_rows=3)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def identical_rows(features: np.ndarray) -> np.ndarray:
    """Labels of the rows: equal labels exactly where rows are equal, value by value.

    A wrapping integer hash of each row's bits groups candidates in O(N·d); only rows sharing a
    hash are compared in full. −0.0 and 0.0 count as equal.

    >>> labels = identical_rows(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0]]))
    >>> bool(labels[0] == labels[2]), bool(labels[1] == labels[3]), bool(labels[0] == labels[1])
    (True, True, False)
    """
    bits = (features + 0.0).view(np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=features.shape[1], dtype=np.uint64) | np.uint64(1)
    hashes = (bits * multipliers).sum(axis=1, dtype=np.uint64)
    _, labels, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[labels] > 1)
    if len(shared):
        _, exact = np.unique(features[shared] + 0.0, axis=0, return_inverse=True)
        labels[shared] = len(counts) + exact.ravel()
    _, labels = np.unique(labels, return_inverse=True)
    return labels.ravel()


def pair_blocks(features: np.ndarray, kind: str, rows_per_block: int):
    """The value of every pair i < j, as contiguous float64 tensors: for each block of rows s…e,
    the pairs within it (the upper triangle of its diagonal tile, flattened), then those with the
    rows after it (a rectangle). The order is the same for any two inputs with as many rows. Each
    tensor is overwritten by the next: copy what must be kept.

    ``kind`` "squared" gives squared Euclidean distances ‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ (clipped at 0),
    "distance" their square roots, "dissimilarity" 1 − xᵢ·xⱼ for rows already centred and
    L2-normalised. Pairs of identical rows are exactly 0.

    >>> [block.tolist() for block in pair_blocks(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]), "distance", 2)]
    [[5.0], [[0.0], [5.0]]]
    """
    n = len(features)
    tensor = torch.from_numpy(features)
    norms = (tensor * tensor).sum(dim=1)
    labels = identical_rows(features)
    labels = torch.from_numpy(labels) if labels.max() < n - 1 else None  # None: no two rows alike
    buffer = torch.empty(min(rows_per_block, n) * max(n - rows_per_block, 1), dtype=torch.float64)
    for start in range(0, n - 1, rows_per_block):
        stop = min(start + rows_per_block, n)
        size = stop - start
        for columns in (slice(start, stop), slice(stop, n)):
            width = columns.stop - columns.start
            if width == 0 or (columns.start == start and size == 1):
                continue
            block = buffer[: size * width].view(size, width) if columns.start == stop else None
            if kind == "dissimilarity":
                block = torch.addmm(
                    torch.ones((), dtype=torch.float64), tensor[start:stop], tensor[columns].T, alpha=-1.0, out=block
                )
            else:
                block = torch.addmm(norms[None, columns], tensor[start:stop], tensor[columns].T, alpha=-2.0, out=block)
                block.add_(norms[start:stop, None]).clamp_(min=0.0)
                if kind == "distance":
                    block.sqrt_()
            if labels is not None:
                block[labels[start:stop, None] == labels[None, columns]] = 0.0
            if columns.start == start:
                yield block[torch.ones(size, size, dtype=torch.bool).triu_(1)]
            else:
                yield block


def _pair_values(features: np.ndarray, kind: str, rows_per_block: int) -> np.ndarray:
    """All the values of :func:`pair_blocks` in one float64 vector of N(N − 1)/2."""
    n = len(features)
    values = np.empty(n * (n - 1) // 2)
    position = 0
    for block in pair_blocks(features, kind, rows_per_block):
        values[position : position + block.numel()] = block.reshape(-1).numpy()
        position += block.numel()
    return values


def _monotone_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys in the order of the float64 ``values`` (−0.0 as 0.0): equal exactly where they are."""
    keys = (values + 0.0).view(np.uint64)
    negative = keys >= np.uint64(1 << 63)
    np.invert(keys, out=keys, where=negative)
    np.bitwise_or(keys, np.uint64(1 << 63), out=keys, where=~negative)
    return keys


def stable_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(values, kind="stable")`` and, in that order, whether each value differs from the
    one before (the first is True).

    Two least-significant-digit passes of numpy's vectorised sort of plain integers, each on a key
    that packs part of the value's bits above the position, several times faster than an argsort
    of 5·10⁷ float64 values; the second pass is stable because the first one's position breaks its
    ties. Beyond 2³² values, a plain stable argsort.

    >>> order, first = stable_order(np.array([0.5, 0.1, 0.5, -0.0, 0.0]))
    >>> order.tolist(), first.tolist()
    ([3, 4, 1, 0, 2], [True, False, True, True, False])
    """
    n = len(values)
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 32:
        order = np.argsort(values + 0.0, kind="stable")
        ordered = values[order] + 0.0
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        return order, first
    shift, mask = np.uint64(index_bits), np.uint64((1 << index_bits) - 1)
    high_shift = np.uint64(64 - index_bits)
    keys = _monotone_keys(values)
    positions = np.arange(n, dtype=np.uint64)
    packed = keys << shift  # the low 64 − b bits of the value, then the position
    packed |= positions
    packed.sort()
    first_pass = (packed & mask).astype(np.uint32)
    low = packed >> shift
    high = keys >> high_shift
    del keys
    packed = high[first_pass]  # the high b bits, then the first pass's place
    packed <<= shift
    packed |= positions
    del high, positions
    packed.sort()
    second_pass = (packed & mask).astype(np.uint32)
    high = packed >> shift
    del packed
    low = low[second_pass]
    order = first_pass[second_pass]
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(high[1:], high[:-1], out=first[1:])
    first[1:] |= low[1:] != low[:-1]
    return order, first


def doubled_average_ranks(holder: list[np.ndarray]) -> np.ndarray:
    """Twice the average ranks (1-based, ties averaged) of the vector in ``holder``, as integers.

    The vector is taken out of the one-element list ``holder`` so that it can be freed once
    sorted. Twice the average rank of a tie group spanning sorted positions s…e is s + e + 2, an
    integer: stored as uint32 (as int64 beyond 2³¹ values), half the memory of float64 ranks.
    Peak memory: the values and the sort's keys and positions, about 40 bytes per value.

    >>> doubled_average_ranks([np.array([0.5, 0.1, 0.5, 0.2])]).tolist()
    [7, 2, 7, 4]
    """
    values = holder.pop()
    n = len(values)
    order, first = stable_order(values)
    del values
    dtype = np.uint32 if 2 * n + 2 < 2**32 else np.int64
    doubled = np.empty(n, dtype=dtype)
    carry = 0
    for start in range(0, n, RANK_CHUNK):  # where each tie group starts
        stop = min(start + RANK_CHUNK, n)
        local = np.where(first[start:stop], np.arange(start, stop, dtype=dtype), dtype(0))
        np.maximum.accumulate(local, out=local)
        np.maximum(local, dtype(carry), out=local)
        doubled[start:stop] = local
        carry = local[-1]
    carry = n - 1
    for start in reversed(range(0, n, RANK_CHUNK)):  # where each tie group ends, added
        stop = min(start + RANK_CHUNK, n)
        last = np.empty(stop - start, dtype=bool)
        last[:-1] = first[start + 1 : stop]
        last[-1] = True if stop == n else first[stop]
        local = np.where(last, np.arange(start, stop, dtype=dtype), dtype(n))
        local = np.minimum.accumulate(local[::-1])[::-1]
        np.minimum(local, dtype(carry), out=local)
        carry = local[0]
        local += dtype(2)
        doubled[start:stop] += local
    ranks = np.empty(n, dtype=dtype)
    ranks[order] = doubled
    return ranks


def _rank_correlation(ranks_a: np.ndarray, ranks_b: np.ndarray) -> float:
    """Pearson correlation of two doubled-rank vectors (mean n + 1), summed in float64 chunks."""
    mean = float(len(ranks_a) + 1)
    sums = np.zeros(3)
    for start in range(0, len(ranks_a), RANK_CHUNK):
        a = ranks_a[start : start + RANK_CHUNK] - mean
        b = ranks_b[start : start + RANK_CHUNK] - mean
        sums += (a @ b, a @ a, b @ b)
    return float(np.clip(sums[0] / math.sqrt(sums[1] * sums[2]), -1.0, 1.0))


def _all_equal(values: np.ndarray) -> bool:
    return bool(values.min() == values.max())


def _sampled_rows(n: int, max_pairs: int, seed: int) -> np.ndarray | None:
    """``None`` when all pairs fit in ``max_pairs``, else the rows of a seeded random subset of
    the largest size m with m(m − 1)/2 ≤ ``max_pairs`` (ascending)."""
    if n * (n - 1) // 2 <= max_pairs:
        return None
    size = max(3, int((1 + math.isqrt(1 + 8 * max_pairs)) // 2))
    while size * (size - 1) // 2 > max_pairs and size > 3:
        size -= 1
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


class _SpearmanOfPairs:
    """Spearman correlation between the values of the same pairs computed from x and from y."""

    name = ""
    undefined = ""

    def __init__(self, max_pairs: int = 50_000_000, seed: int = 0, memory_budget_mib: float = 512.0) -> None:
        self.max_pairs = _integer(self.name, "max_pairs", max_pairs, 3)
        self.seed = _integer(self.name, "seed", seed, 0)
        self.memory_budget_mib = _budget(self.name, memory_budget_mib)

    @property
    def options(self) -> dict[str, Any]:
        return {"max_pairs": self.max_pairs, "seed": self.seed, "memory_budget_mib": self.memory_budget_mib}

    def _prepare(self, name: str, features: np.ndarray) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    def _ranks(self, name: str, features: np.ndarray) -> np.ndarray:
        prepared, kind = self._prepare(name, features)
        rows_per_block = _rows_per_block(self.memory_budget_mib, len(prepared))
        holder = [_pair_values(prepared, kind, rows_per_block)]
        del prepared
        if _all_equal(holder[0]):
            raise DataError(
                f"{self.name}: every pairwise {self.undefined} in `{name}` is the same, so their rank "
                "correlation is undefined (zero variance); pass features whose rows differ"
            )
        return doubled_average_ranks(holder)

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = _inputs(x, y)
        rows = _sampled_rows(len(x), self.max_pairs, self.seed)
        if rows is not None:
            x, y = x[rows], y[rows]
        ranks_x = self._ranks("x", x)
        ranks_y = self._ranks("y", y)
        value = _rank_correlation(ranks_x, ranks_y)
        details = {"sampled": rows is not None, "pairs": len(ranks_x), "rows": len(x), "seed": self.seed}
        return MetricResult(value, details)


class Geometry(_SpearmanOfPairs):
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
    undefined = "distance"

    def _prepare(self, name: str, features: np.ndarray) -> tuple[np.ndarray, str]:
        return features, "squared"


def geometry(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`Geometry`: ``geometry(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(100, 8))
    >>> geometry(x, x + 0.1 * generator.normal(size=x.shape)) > geometry(x, generator.normal(size=x.shape))
    True
    """
    return Geometry(**options)(x, y).value


def centred_unit_rows(metric: str, name: str, features: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its L2 norm: dot products are Pearson correlations."""
    centred = features - features.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    constant = np.flatnonzero(norms == 0)
    if len(constant):
        raise DataError(
            f"{metric}: row {constant[0]} of `{name}` is constant, so its Pearson correlation with other rows "
            "is undefined; drop constant rows or add features that vary"
        )
    centred /= norms[:, None]
    return centred


class RSA(_SpearmanOfPairs):
    """Representational similarity analysis (Kriegeskorte et al. 2008) of x against y.

    Each input's representational dissimilarity matrix is RDMᵢⱼ = 1 − r(rowᵢ, rowⱼ), r the
    Pearson correlation of two samples across features (rows centred and L2-normalised, then
    1 − dot products over blocks of rows); the value is the Spearman correlation of the two
    RDMs' upper triangles, with average ranks for ties. Identical rows have dissimilarity exactly
    0. Invariant to a positive affine change of each row. A constant row has no correlation and
    is refused, naming its index. Memory and sampling (``max_pairs``, ``seed``,
    ``memory_budget_mib``, ``details``) as :class:`Geometry`.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> RSA()(x, 2.0 * x - 5.0).value
    1.0
    """

    name = "rsa"
    undefined = "dissimilarity"

    def _prepare(self, name: str, features: np.ndarray) -> tuple[np.ndarray, str]:
        return centred_unit_rows(self.name, name, features), "dissimilarity"


def rsa(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`RSA`: ``rsa(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(100, 8))
    >>> rsa(x, x + 0.1 * generator.normal(size=x.shape)) > rsa(x, generator.normal(size=x.shape))
    True
    """
    return RSA(**options)(x, y).value


class Relational:
    """RKD distance relation (Park et al. 2019): Pearson correlation of normalised pair distances.

    ψ(i, j) = ‖xᵢ − xⱼ‖ / μ, μ the mean distance over the pairs i ≠ j, for x and for y; the
    value is the Pearson correlation of ψₓ and ψᵧ over the pairs i < j (the normalisation does
    not change it). ``details["huber"]`` is RKD's distance loss between the two normalised
    distance sets: the mean over pairs i < j of the Huber (smooth L1, δ = 1) function
    h(e) = e²/2 if |e| < 1 else |e| − 1/2 of ψₓ − ψᵧ. (The authors' code averages over the
    whole N×N matrix, diagonal zeros included, which is (N − 1)/N times this.)

    Exact, in float64, with no pair stored: a first pass over blocks of rows sums the distances
    (the means), a second sums the centred products, squares and Huber terms. Both passes compute
    every distance, so this costs twice the N²·d/2 multiply-adds of one pass.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> result = Relational()(x, 2.0 * x)
    >>> round(result.value, 12), round(result.details["huber"], 12)
    (1.0, 0.0)
    """

    name = "relational"

    def __init__(self, memory_budget_mib: float = 512.0) -> None:
        self.memory_budget_mib = _budget(self.name, memory_budget_mib)

    @property
    def options(self) -> dict[str, Any]:
        return {"memory_budget_mib": self.memory_budget_mib}

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = _inputs(x, y)
        n = len(x)
        pairs = n * (n - 1) // 2
        rows_per_block = _rows_per_block(self.memory_budget_mib, 2 * n)
        # Σ over pairs of a, b, a², b², a·b for the distances a, b shifted by their first block's mean
        sums, shift, lowest, highest = np.zeros(5), None, np.full(2, np.inf), np.full(2, -np.inf)
        for block_x, block_y in self._distances(x, y, rows_per_block):
            for side, block in enumerate((block_x, block_y)):
                low, high = torch.aminmax(block)
                lowest[side], highest[side] = min(lowest[side], float(low)), max(highest[side], float(high))
            if shift is None:
                shift = (float(block_x.mean()), float(block_y.mean()))
            block_x.sub_(shift[0])
            block_y.sub_(shift[1])
            sums += (
                float(block_x.sum()),
                float(block_y.sum()),
                float(torch.dot(block_x, block_x)),
                float(torch.dot(block_y, block_y)),
                float(torch.dot(block_x, block_y)),
            )
        for side, name in enumerate("xy"):
            if lowest[side] == highest[side]:
                raise DataError(
                    f"relational: every pairwise distance in `{name}` is the same ({lowest[side]:g}), so they "
                    "cannot be normalised by their mean (all 0) or correlated (zero variance); "
                    "pass features whose rows and distances differ"
                )
        sum_x, sum_y, squares_x, squares_y, products = sums
        covariance = products - sum_x * sum_y / pairs
        variances = (squares_x - sum_x * sum_x / pairs) * (squares_y - sum_y * sum_y / pairs)
        value = float(np.clip(covariance / math.sqrt(variances), -1.0, 1.0))
        mean_x, mean_y = shift[0] + sum_x / pairs, shift[1] + sum_y / pairs
        huber = 0.0
        for block_x, block_y in self._distances(x, y, rows_per_block):
            error = block_x.div_(mean_x).sub_(block_y.div_(mean_y)).abs_()
            inside = torch.clamp(error, max=1.0, out=block_y)  # h(e) = min(e, 1)²/2 + max(e − 1, 0)
            huber += 0.5 * float(torch.dot(inside, inside)) + float(error.sub_(1.0).clamp_(min=0.0).sum())
        details = {"huber": huber / pairs, "mean_distance_x": mean_x, "mean_distance_y": mean_y}
        return MetricResult(value, details)

    @staticmethod
    def _distances(x: np.ndarray, y: np.ndarray, rows_per_block: int):
        for block_x, block_y in zip(
            pair_blocks(x, "distance", rows_per_block), pair_blocks(y, "distance", rows_per_block), strict=True
        ):
            yield block_x.view(-1), block_y.view(-1)


def relational(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`Relational`: ``relational(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(100, 8))
    >>> relational(x, x + 0.1 * generator.normal(size=x.shape)) > relational(x, generator.normal(size=x.shape))
    True
    """
    return Relational(**options)(x, y).value


def top_by_score_then_index(scores: np.ndarray, indices: np.ndarray, count: int) -> np.ndarray:
    """For each row of ``scores`` (columns named by distinct ``indices``), the ``count`` column
    names with the highest scores, ties broken by smaller name, in that order.

    ``argpartition`` finds the threshold score; only rows where it is tied beyond the count are
    resolved again, by name. Exact: no tie is left to the partition's arbitrary order.

    >>> top_by_score_then_index(np.array([[0.5, 0.9, 0.5, 0.5]]), np.array([3, 0, 2, 1]), 3).tolist()
    [[0, 1, 2]]
    """
    chosen = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    threshold = np.take_along_axis(scores, chosen, axis=1).min(axis=1, keepdims=True)
    tied = np.flatnonzero((scores >= threshold).sum(axis=1) > count)
    if len(tied):
        by_name = np.argsort(indices, kind="stable")
        sub = scores[tied][:, by_name]
        above = sub > threshold[tied]
        equal = sub == threshold[tied]
        needed = count - above.sum(axis=1, keepdims=True)
        keep = above | (equal & (np.cumsum(equal, axis=1) <= needed))
        chosen[tied] = by_name[np.nonzero(keep)[1].reshape(len(tied), count)]
    values = np.take_along_axis(scores, chosen, axis=1)
    names = indices[chosen]
    order = np.lexsort((names, -values), axis=1)
    return np.take_along_axis(names, order, axis=1)


def float32_product_error(columns: int) -> float:
    """A bound on |float32 product − float64 product| for two float64 rows of norm at most 1:
    rounding each to float32 (2u + u²), the float32 sum of ``columns`` products in any order
    (γ = n·u / (1 − n·u), Higham's bound), the float64 products' own error and subnormals; 1%
    more covers the second-order terms. u = 2⁻²⁴."""
    unit = 2.0**-24
    gamma = columns * unit / (1.0 - columns * unit)
    return 1.01 * (gamma + 2.0 * unit + unit * unit + 2.0 * columns * 2.0**-53) + columns * 2.0**-125


def _exact_top(
    tensor: torch.Tensor, rows: np.ndarray, column_rows: np.ndarray, column_names: np.ndarray, count: int, block: int
) -> np.ndarray:
    """The ``count`` best named columns of ``rows`` against every row of ``tensor``, in float64."""
    best = np.empty((len(rows), count), dtype=np.int64)
    for start in range(0, len(rows), block):
        chosen = torch.from_numpy(rows[start : start + block])
        similarities = (tensor[chosen] @ tensor.T).numpy()
        best[start : start + block] = top_by_score_then_index(similarities[:, column_rows], column_names, count)
    return best


def nearest_neighbours(metric: str, name: str, features: np.ndarray, k: int, memory_budget_mib: float) -> np.ndarray:
    """N×k: each row's k most cosine-similar other rows, by similarity then smaller index.

    Similarities are computed once per distinct (L2-normalised) row, so copies of a row tie
    exactly; each distinct row keeps its k + 1 best (itself possibly among them), and each original
    row drops itself from that list, or else the last entry.

    The float64 similarities of all pairs are not needed: a float32 product (2.5× faster) screens
    each row's ``k + 1 + SCREEN_MARGIN`` best distinct rows, which are then scored in float64. A
    row's result is certain when its (k + 1)-th best float64 score among them beats the best
    float32 score left out by more than :func:`float32_product_error` (which bounds how far the
    float64 score of a row left out can lie above its float32 score); the other rows are computed
    again against all rows in float64.
    """
    norms = np.linalg.norm(features, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise DataError(
            f"{metric}: row {zero[0]} of `{name}` is all zeros, so its cosine similarity is undefined; "
            "drop all-zero embeddings"
        )
    unit = features / norms[:, None]
    labels = identical_rows(unit)
    counts = np.bincount(labels)
    representatives = unit[np.unique(labels, return_index=True)[1]]
    # each distinct row's copies, smallest indices first, at most k + 1 of them: enough for a top k + 1
    grouped = np.argsort(labels, kind="stable")
    starts = np.cumsum(counts) - counts
    place = np.arange(len(grouped)) - starts[labels[grouped]]
    kept = place < k + 1
    column_names, column_rows = grouped[kept], labels[grouped[kept]]
    copies = np.full((len(representatives), min(k + 1, int(counts.max()))), -1, dtype=np.int64)
    copies[column_rows, place[kept]] = column_names
    tensor = torch.from_numpy(np.ascontiguousarray(representatives))
    exact_block = _rows_per_block(memory_budget_mib, 2 * len(column_names))
    count = k + 1 + SCREEN_MARGIN
    if count >= len(representatives):
        best = _exact_top(tensor, np.arange(len(representatives)), column_rows, column_names, k + 1, exact_block)
    else:
        best = _screened_top(tensor, copies, count, k + 1, memory_budget_mib)
        redo = np.flatnonzero(best[:, 0] < 0)
        if len(redo):
            best[redo] = _exact_top(tensor, redo, column_rows, column_names, k + 1, exact_block)
    lists = best[labels]
    own = lists == np.arange(len(features))[:, None]
    dropped = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(lists, dtype=bool)
    keep[np.arange(len(lists)), dropped] = False
    return lists[keep].reshape(len(features), k)


def _screened_top(
    tensor: torch.Tensor, copies: np.ndarray, candidates: int, count: int, memory_budget_mib: float
) -> np.ndarray:
    """The ``count`` best named columns of each distinct row, or −1 in its first entry where the
    float32 screen of ``candidates`` distinct rows cannot certify them (see nearest_neighbours)."""
    rows = len(tensor)
    error = float32_product_error(tensor.shape[1])
    screen = tensor.float()
    names = torch.from_numpy(copies)
    best = np.full((rows, count), -1, dtype=np.int64)
    block = max(1, int(memory_budget_mib * 2**20) // (4 * 2 * rows))
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        coarse, chosen = torch.topk(screen[start:stop] @ screen.T, candidates, dim=1, sorted=False)
        left_out = coarse.min(dim=1).values.double()
        scores = torch.einsum("bd,bcd->bc", tensor[start:stop], tensor[chosen])
        named = names[chosen].reshape(stop - start, -1)
        scores = scores[:, :, None].expand(-1, -1, copies.shape[1]).reshape(stop - start, -1)
        scores = torch.where(named >= 0, scores, -math.inf).numpy()
        order = np.lexsort((named.numpy(), -scores), axis=1)[:, :count]
        threshold = np.take_along_axis(scores, order[:, -1:], axis=1)[:, 0]
        certain = threshold > left_out.numpy() + error
        best[start:stop][certain] = np.take_along_axis(named.numpy(), order, axis=1)[certain]
    return best


class JaccardKNN:
    """Mean Jaccard index of the k-nearest-neighbour sets of each sample in x and in y.

    For sample i, A and B are its k nearest other samples (itself excluded) by cosine similarity
    in x and in y; the value is the mean over i of |A ∩ B| / |A ∪ B|. Ties in similarity go to the
    smaller index, so the sets are deterministic; similarities are float64 products of
    L2-normalised rows over blocks of rows against all, and copies of a row tie exactly. An
    all-zero row (no direction) is refused. ``k`` must be less than N.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> JaccardKNN(k=5)(x, 4.0 * x).value
    1.0
    """

    name = "jaccard_knn"

    def __init__(self, k: int = 10, memory_budget_mib: float = 512.0) -> None:
        self.k = _integer(self.name, "k", k, 1)
        self.memory_budget_mib = _budget(self.name, memory_budget_mib)

    @property
    def options(self) -> dict[str, Any]:
        return {"k": self.k, "memory_budget_mib": self.memory_budget_mib}

    def __call__(self, x: Any, y: Any) -> MetricResult:
        x, y = _inputs(x, y)
        if self.k >= len(x):
            raise ConfigError(
                f"jaccard_knn: k={self.k} needs more than {self.k} samples, got {len(x)}; lower k or pass more rows"
            )
        neighbours_x = nearest_neighbours(self.name, "x", x, self.k, self.memory_budget_mib)
        neighbours_y = nearest_neighbours(self.name, "y", y, self.k, self.memory_budget_mib)
        both = np.sort(np.concatenate([neighbours_x, neighbours_y], axis=1), axis=1)
        shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
        jaccard = shared / (2 * self.k - shared)
        return MetricResult(float(jaccard.mean()), {"k": self.k, "min": float(jaccard.min())})


def jaccard_knn(x: Any, y: Any, **options: Any) -> float:
    """The plain-function form of :class:`JaccardKNN`: ``jaccard_knn(x, y)`` returns the float.

    >>> import numpy as np
    >>> generator = np.random.default_rng(0)
    >>> x = generator.normal(size=(100, 8))
    >>> jaccard_knn(x, x + 0.1 * generator.normal(size=x.shape)) > jaccard_knn(x, generator.normal(size=x.shape))
    True
    """
    return JaccardKNN(**options)(x, y).value

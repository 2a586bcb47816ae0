"""Exact top-k inner-product search: ``exact_top_k`` and ``TopKIndex``, the one engine behind
esq's exact retrievers and k-nearest-neighbour metrics.

For each query: the ``k`` keys with the largest inner products, scores in descending order,
equal scores in ascending key id. The result depends only on the data, never on the block size,
the screening precision, the number of threads or the BLAS library.

The search takes two steps.

1. **Screening** scores every key approximately, with a proven bound ``E`` on the error: blocks
   of queries times all keys (``torch.mm`` into a reused buffer, then ``torch.topk`` over each
   row), in bfloat16 with float32 accumulation on CPUs with AMX tiles (about seven times the
   float32 throughput), in float32 elsewhere; or a caller's screen (faiss's ``IndexFlatIP``).
2. **Rescoring.** A key can be in the top k only if its approximate score is within ``2E`` (and
   the rounding of the final scores) of the k-th best approximate score; the first ``m`` keys of
   a row hold all such keys when the ``m``-th is below that window (else ``m`` doubles and the
   row is screened again). These candidates are scored again in float64 (where products of
   float32 values are exact and the sum is the inner product to about 1e-16 in any order),
   rounded to the data's precision (float32, or float64 for float64 data) and sorted by
   (−score, id).

The bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1): with
``γ = n·2⁻²⁴ / (1 − n·2⁻²⁴)`` for ``n = d + 2``, a float32 product errs by at most
``γ·‖q‖·‖k‖``. Screening rounded vectors ``q̃``, ``k̃`` (bfloat16, or float32 of float64 data),
with ``Δq = q − q̃`` and ``Δk = k − k̃`` known exactly, adds
``‖q̃‖‖Δk‖ + ‖Δq‖‖k̃‖ + ‖Δq‖‖Δk‖``; a bfloat16 result a relative ``2⁻⁸``. Keys enter the bounds
through their largest norms, so the window is tight for L2-normalised features.

>>> import torch
>>> keys = torch.eye(4)
>>> scores, ids = exact_top_k(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), keys, k=2)
>>> ids.tolist(), scores.tolist()  # a tie: the smaller id first
([[1, 2]], [[1.0, 1.0]])
>>> index = TopKIndex(keys, screen="float32")
>>> index.search(torch.tensor([[0.5, 0.0, 0.0, 2.0]]), k=1)[1].tolist()
[[3]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from esq.errors import DataError
from esq.validation import check_choice, check_int

if TYPE_CHECKING:
    import torch

SCREENS = ("auto", "bfloat16", "float32")
PRECISIONS = ("float32", "float64")
BFLOAT16_UNIT_ROUNDOFF = 2.0**-8
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
# Rounding of the final scores and float64's summation error, relative to ‖q‖·max‖k‖: a key
# whose final score ties the k-th one may score up to this much less.
TIE_WINDOW = 2.0**-22
# Covers the float64 arithmetic that evaluates the bounds themselves.
SLACK = 1.0 + 2.0**-20
# Denormals flushed to zero in the matrix product: an absolute error far below this per unit.
FLUSHED = 2.0**-100
LARGEST_NORM = 2.0**60  # above this, float32 inner products may overflow
EXTRA_CANDIDATES = 24  # screened beyond k at first; adapts to the data from block to block
BLOCK_ROWS = 1024  # queries per block by default: fewer make the products and top-k slower
RESCORE_BYTES = 16 * 2**20
NORM_CHUNK_ROWS = 2048

Screen = Callable[["torch.Tensor", int], tuple["torch.Tensor", "torch.Tensor"]]


def exact_top_k(
    queries: Any,
    keys: Any,
    k: int,
    *,
    screen: str | Screen = "auto",
    block_rows: int | None = None,
    memory_budget_mib: float = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` keys with the largest inner product with each query: ``(scores, ids)``, both
    ``Q k`` (scores in the data's precision, ids int64), scores descending, ties by smaller id.

    ``queries`` (``Q d``) and ``keys`` (``N d``) are numpy arrays or torch tensors; float64 data
    is searched in float64, any other real type in float32. ``screen``, ``block_rows`` and
    ``memory_budget_mib`` change the time, never the result (see :class:`TopKIndex`).

    >>> import numpy as np
    >>> keys = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> scores, ids = exact_top_k(np.array([[0.0, 1.0]]), keys, k=2)
    >>> ids.tolist(), scores.dtype
    ([[1, 2]], torch.float64)
    """
    index = TopKIndex(keys, screen=screen)
    return index.search(queries, k, block_rows=block_rows, memory_budget_mib=memory_budget_mib)


def as_float_matrix(array: Any, role: str, owner: str, precision: str | None = None) -> torch.Tensor:
    """``array`` as a contiguous float tensor (float64 if it is float64 or ``precision`` says so,
    else float32), after checking it is a non-empty 2-D matrix of real numbers.

    >>> as_float_matrix([[1, 2]], "keys", "demo").dtype
    torch.float32
    >>> as_float_matrix([1.0, 2.0], "keys", "demo")
    Traceback (most recent call last):
    ...
    esq.errors.DataError: demo: keys must be a non-empty 2-D (rows, dim) array; got shape (2,)
    """
    import torch

    if precision is not None:
        check_choice(owner, "precision", precision, PRECISIONS)
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
        real = tensor.is_floating_point() or not (tensor.is_complex() or tensor.dtype == torch.bool)
    else:
        array = np.asarray(array)
        real = array.dtype.kind in "fiu"
        tensor = torch.from_numpy(array) if real else None
    if not real:
        raise DataError(f"{owner}: {role} must hold real numbers; got dtype {array.dtype}")
    if tensor.ndim != 2 or 0 in tensor.shape:
        raise DataError(f"{owner}: {role} must be a non-empty 2-D (rows, dim) array; got shape {tuple(tensor.shape)}")
    wanted = precision or ("float64" if tensor.dtype == torch.float64 else "float32")
    return tensor.to(getattr(torch, wanted)).contiguous()


def _norms(
    matrix: torch.Tensor, role: str, owner: str, rounded_to: torch.dtype | None, first_row: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's norm in float64, the norm of its rounding to ``rounded_to`` and of what the
    rounding lost (exact in the data's precision; the norms and zeros when nothing is rounded).

    Checks on the way that the rows are finite (a float64 sum of squares overflows only on NaN
    or infinite values) and small enough for float32 inner products.
    """
    import torch

    norms, rounded, lost = [], [], []
    for start in range(0, matrix.shape[0], NORM_CHUNK_ROWS):
        block = matrix[start : start + NORM_CHUNK_ROWS]
        norms.append(torch.linalg.vector_norm(block, dim=1, dtype=torch.float64))
        bad = ~torch.isfinite(norms[-1]) | (norms[-1] > LARGEST_NORM)
        if bool(bad.any()):
            row = int(bad.nonzero()[0])
            problem = (
                "holds NaN or infinite values; drop or repair that row"
                if not torch.isfinite(norms[-1][row])
                else f"has norm {float(norms[-1][row]):.3g}, too large for float32 inner products; rescale it"
            )
            raise DataError(f"{owner}: {role} row {first_row + start + row} {problem}")
        if rounded_to is not None:
            low = block.to(rounded_to)
            rounded.append(torch.linalg.vector_norm(low, dim=1, dtype=torch.float64))
            lost.append(torch.linalg.vector_norm(block - low.to(block.dtype), dim=1, dtype=torch.float64))
    norms = torch.cat(norms)
    if rounded_to is None:
        return norms, norms, torch.zeros_like(norms)
    return norms, torch.cat(rounded), torch.cat(lost)


def _accumulation(dim: int) -> float:
    """``γ``: the relative error bound of a float32 inner product of ``dim`` terms."""
    terms = (dim + 2) * FLOAT32_UNIT_ROUNDOFF
    return terms / (1 - terms)


def _float32_products_are_ieee() -> bool:
    """False where torch may run float32 matrix products in TF32 or bfloat16."""
    import torch

    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    mkldnn_precision = getattr(mkldnn_matmul, "fp32_precision", "none")
    return torch.get_float32_matmul_precision() == "highest" and mkldnn_precision in ("none", "ieee")


def _bfloat16_is_fast() -> bool:
    import torch

    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx is not None and is_amx()) and torch.backends.mkldnn.is_available()


def _threshold(kth: torch.Tensor, error: torch.Tensor, rounding: float, tie_window: torch.Tensor) -> torch.Tensor:
    """The least approximate score a key of the top k can have (float64, per row).

    Each approximate score ``s̃`` errs by at most ``error + rounding·|s̃|``; ``kth`` is the k-th
    best approximate score of the row.
    """
    import torch

    bound = kth - rounding * kth.abs() - 2 * error - tie_window
    return torch.where(bound >= 0, bound / (1 + rounding), bound / (1 - rounding))


def _rescore(
    queries: torch.Tensor, keys: torch.Tensor, candidates: torch.Tensor, widths: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of each row's first ``widths`` candidates by (−score in the keys' precision, id)."""
    import torch

    rows, dim = queries.shape
    scores = torch.empty(rows, k, dtype=keys.dtype, device=keys.device)
    ids = torch.empty(rows, k, dtype=torch.int64, device=keys.device)
    # Rows in decreasing width, rescored in chunks of equal width: little padding to compute.
    widths, by_width = widths.sort(descending=True)
    chunk = max(1, RESCORE_BYTES // (int(widths[0]) * dim * 12))
    gathered = torch.empty(chunk * int(widths[0]), dim, dtype=keys.dtype, device=keys.device)
    gathered64 = torch.empty(gathered.shape, dtype=torch.float64, device=keys.device)
    start = 0
    while start < rows:
        width = int(widths[start])
        stop = min(rows, start + max(1, gathered.shape[0] // width))
        chosen = by_width[start:stop]
        count = (stop - start) * width
        chosen_candidates = candidates[chosen, :width]
        torch.index_select(keys, 0, chosen_candidates.reshape(-1), out=gathered[:count])
        products = gathered64[:count].copy_(gathered[:count]).view(stop - start, width, dim)
        products.mul_(queries[chosen, None, :].double())
        # A sum along contiguous rows adds in the same order for every row: equal keys, equal scores.
        exact = products.sum(dim=2).to(keys.dtype)
        sorted_ids, by_id = chosen_candidates.sort(dim=1)
        ordered, by_score = exact.gather(1, by_id).sort(dim=1, descending=True, stable=True)
        scores[chosen], ids[chosen] = ordered[:, :k], sorted_ids.gather(1, by_score[:, :k])
        start = stop
    return scores, ids


BlockScreen = Callable[["torch.Tensor | None", int], tuple["torch.Tensor", "torch.Tensor"]]


def _search_rows(
    screen: BlockScreen,
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    width: int,
    error: torch.Tensor,
    rounding: float,
    tie_window: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Top ``k`` of a block of queries; returns scores, ids and a screening width for the next block.

    ``screen(rows, m)`` returns the ``m`` best approximate scores (descending) and their ids for
    the block's ``rows`` (``None``: all of them).
    """
    import torch

    count, key_count = queries.shape[0], keys.shape[0]
    scores = torch.empty(count, k, dtype=keys.dtype, device=keys.device)
    ids = torch.empty(count, k, dtype=torch.int64, device=keys.device)
    pending: torch.Tensor | None = None
    needed = []
    while pending is None or pending.numel():
        values, candidates = screen(pending, width)
        rows = torch.arange(count, device=keys.device) if pending is None else pending
        values = values.double()
        threshold = _threshold(values[:, k - 1], error[rows], rounding, tie_window[rows])
        if width == key_count:
            covered = torch.ones(rows.numel(), dtype=torch.bool, device=keys.device)
        else:
            covered = values[:, -1] < threshold
        done = covered.nonzero().squeeze(1)
        if done.numel():
            within = (values[done] >= threshold[done, None]).sum(dim=1)
            needed.append(within)
            found = _rescore(queries[rows[done]], keys, candidates[done], within, k)
            scores[rows[done]], ids[rows[done]] = found
        pending = rows[~covered]
        width = min(key_count, 2 * width)
    within = torch.cat(needed).double()
    return scores, ids, min(key_count, int(torch.quantile(within, 0.99)) + k)


class TopKIndex:
    """Keys held for exact top-k inner-product search (the engine of :func:`exact_top_k`).

    ``screen`` is the precision of the screening products: ``"auto"`` (bfloat16 on CPUs with AMX
    tiles, float32 elsewhere), ``"bfloat16"`` or ``"float32"``; or a callable ``screen(queries,
    m) -> (scores, ids)`` giving the ``m`` best float32 inner products of each row of
    ``queries`` (float32, ``b d``) with the keys, descending, each within float32's bound
    ``γ‖q‖‖k‖`` (faiss's ``IndexFlatIP.search``, say). The results are the same with each, only
    the time differs. ``precision`` (``"float32"``, ``"float64"``; default: float64 for float64
    keys, float32 otherwise) is that of the data, the rescoring and the scores returned. Keys
    already contiguous in that precision are kept without a copy: build a new index after
    changing them. ``owner`` names the caller in error messages.

    >>> import torch
    >>> index = TopKIndex(torch.eye(3), owner="demo")
    >>> index.search(torch.ones(1, 3), k=3)[1].tolist()
    [[0, 1, 2]]
    >>> index.search(torch.ones(1, 2), k=1)
    Traceback (most recent call last):
    ...
    esq.errors.DataError: demo: queries have dimension 2 but the keys 3; embed both with the same model
    """

    def __init__(
        self, keys: Any, *, screen: str | Screen = "auto", precision: str | None = None, owner: str = "exact_top_k"
    ) -> None:
        import torch

        if not callable(screen):
            check_choice(owner, "screen", screen, SCREENS)
        self.owner = owner
        with torch.inference_mode():
            keys = as_float_matrix(keys, "keys", owner, precision)
            if callable(screen):
                screen_dtype = torch.float32
            elif screen == "bfloat16" or (screen == "auto" and keys.device.type == "cpu" and _bfloat16_is_fast()):
                screen_dtype = torch.bfloat16
            else:
                screen_dtype = torch.float32
            rounded_to = None if screen_dtype == keys.dtype else screen_dtype
            norms, rounded, lost = _norms(keys, "keys", owner, rounded_to)
            self.key_norm_, self.rounded_key_norm_, self.lost_key_norm_ = (
                float(norms.max()),
                float(rounded.max()),
                float(lost.max()),
            )
            self.screen_dtype_ = screen_dtype
            self.screen_ = "callable" if callable(screen) else str(screen_dtype).removeprefix("torch.")
            self._screen = screen if callable(screen) else None
            if callable(screen):
                self.screen_keys_ = None
            elif screen_dtype == torch.bfloat16:
                # (d, N) in memory: the fastest layout for oneDNN's bfloat16 product.
                self.screen_keys_ = keys.to(torch.bfloat16).T.contiguous()
            else:
                self.screen_keys_ = keys.to(torch.float32).T
            self.keys_ = keys

    def search(
        self, queries: Any, k: int, *, block_rows: int | None = None, memory_budget_mib: float = 512
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` keys per query: ``(scores, ids)``, both ``Q k``, in the keys' precision and int64.

        Scores descend along each row; equal scores come in ascending id. ``block_rows`` caps
        the queries per block (default 1024); a block's query × key scores always fit
        ``memory_budget_mib`` (one row at least), which may make blocks smaller.
        """
        import torch

        keys = self.keys_
        key_count = keys.shape[0]
        queries = as_float_matrix(queries, "queries", self.owner, str(keys.dtype).removeprefix("torch."))
        k = check_int(self.owner, "k", k, minimum=1, maximum=key_count)
        if queries.shape[1] != keys.shape[1]:
            raise DataError(
                f"{self.owner}: queries have dimension {queries.shape[1]} but the keys {keys.shape[1]}; "
                "embed both with the same model"
            )
        queries = queries.to(keys.device)
        bfloat16 = self.screen_dtype_ == torch.bfloat16
        rounding = BFLOAT16_UNIT_ROUNDOFF / (1 - BFLOAT16_UNIT_ROUNDOFF) if bfloat16 else 0.0
        rows = block_rows or BLOCK_ROWS
        if self.screen_keys_ is not None:
            row_bytes = key_count * self.screen_dtype_.itemsize
            rows = min(rows, max(1, int(memory_budget_mib * 2**20) // row_bytes))
        rows = min(rows, queries.shape[0])
        scores = torch.empty(queries.shape[0], k, dtype=keys.dtype, device=keys.device)
        ids = torch.empty(queries.shape[0], k, dtype=torch.int64, device=keys.device)
        width = min(key_count, k + EXTRA_CANDIDATES)
        with torch.inference_mode():
            buffer = None
            if self.screen_keys_ is not None:
                buffer = torch.empty(rows, key_count, dtype=self.screen_dtype_, device=keys.device)
            for start in range(0, queries.shape[0], rows):
                block = queries[start : start + rows]
                approximate = None if buffer is None else buffer[: block.shape[0]]
                error, tie_window, screen = self._screen_block(block, approximate, start)
                found = _search_rows(screen, block, keys, k, width, error, rounding, tie_window)
                scores[start : start + rows], ids[start : start + rows], width = found
        return scores, ids

    def bounds(self, queries: torch.Tensor, out: torch.Tensor, first_row: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Screen ``queries`` (a block, in the keys' precision) into ``out`` (``b N``, the
        screening precision) and return each row's proven error bound and its tie window: the
        approximate score ``s̃`` of each key errs by at most ``error + 2⁻⁸·|s̃|`` (bfloat16) or
        ``error`` (float32). Not available with a callable screen."""
        if self.screen_keys_ is None:
            raise TypeError(f"{self.owner}: bounds() needs a built-in screen, not a callable one")
        error, tie_window, _ = self._screen_block(queries, out, first_row)
        return error, tie_window

    def _screen_block(
        self, block: torch.Tensor, out: torch.Tensor | None, first_row: int
    ) -> tuple[torch.Tensor, torch.Tensor, BlockScreen]:
        """Screen ``block`` (into ``out`` for the built-in screens); its rows' error bounds and tie
        windows, and the block's ``screen(rows, m)``."""
        import torch

        rounded_to = None if self.screen_dtype_ == block.dtype else self.screen_dtype_
        norms, rounded, lost = _norms(block, "queries", self.owner, rounded_to, first_row)
        dim = block.shape[1]
        accumulation = _accumulation(dim)
        low = block.to(self.screen_dtype_)
        if out is None:
            relative = accumulation
            user_screen = self._screen

            def screen(subset: torch.Tensor | None, m: int) -> tuple[torch.Tensor, torch.Tensor]:
                return user_screen(low if subset is None else low[subset], m)

        else:
            torch.mm(low, self.screen_keys_, out=out)
            if self.screen_dtype_ == torch.bfloat16 or _float32_products_are_ieee():
                relative = accumulation
            else:
                relative = (1 + BFLOAT16_UNIT_ROUNDOFF) ** 2 * (1 + accumulation) - 1

            def screen(subset: torch.Tensor | None, m: int) -> tuple[torch.Tensor, torch.Tensor]:
                chosen = out if subset is None else out.index_select(0, subset)
                return torch.topk(chosen, m, dim=1)

        rounded_keys, lost_keys = self.rounded_key_norm_, self.lost_key_norm_
        error = rounded * lost_keys + lost * rounded_keys + lost * lost_keys + relative * rounded * rounded_keys
        error = error * SLACK + FLUSHED * (dim + 2) * (1 + norms + self.key_norm_)
        return error, TIE_WINDOW * norms * self.key_norm_, screen

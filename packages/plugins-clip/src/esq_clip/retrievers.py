"""Exact top-k inner-product search: ``ExactRetriever`` (torch) and ``FaissRetriever`` (faiss).

For each query both return the ``k`` keys with the largest inner products: float32 scores in
descending order, equal scores in ascending key id. On the same data both return the same
scores and ids, whatever the block size, the number of threads or the BLAS library.

Both search in two steps.

1. **Screening** scores every key approximately, with a proven bound ``E`` on the error.
   ``ExactRetriever`` multiplies blocks of queries with all keys (``torch.mm`` into a reused
   buffer, then ``torch.topk`` over each row): in bfloat16 with float32 accumulation on CPUs
   with AMX tiles, about seven times the float32 throughput, in float32 elsewhere.
   ``FaissRetriever`` asks faiss's ``IndexFlatIP`` (float32) for its best ``m`` per query.
2. **Rescoring.** A key can be in the top k only if its approximate score is within
   ``2E`` (and float32's rounding of the final scores) of the k-th best approximate score; the
   first ``m`` keys of a row hold all such keys when the ``m``-th is below that window (else
   ``m`` doubles and the row is screened again). These candidates are scored again in float64,
   where the products of float32 values are exact and the sum is the inner product to about
   1e-16 in any order, rounded to float32 and sorted by (−score, id). The result depends only
   on the data, never on how the screening rounded, so ties (duplicated keys, identical queries)
   resolve identically in both retrievers.

The bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1): with
``γ = n·2⁻²⁴ / (1 − n·2⁻²⁴)`` for ``n = d + 2``, a float32 product errs by at most
``γ·‖q‖·‖k‖``. In bfloat16, with ``q̃``, ``k̃`` the rounded vectors and ``Δq = q − q̃``,
``Δk = k − k̃`` (known exactly), ``|q·k − q̃·k̃| ≤ ‖q̃‖‖Δk‖ + ‖Δq‖‖k̃‖ + ‖Δq‖‖Δk‖``; float32
accumulation adds ``γ·‖q̃‖‖k̃‖`` and the bfloat16 result a relative ``2⁻⁸``. Keys enter the
bounds through their largest norms, so the window is tight for L2-normalised features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from esq import ConfigError, DataError

SCREENS = ("auto", "bfloat16", "float32")
BFLOAT16_UNIT_ROUNDOFF = 2.0**-8
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
# Float32 rounding of the final scores and float64's summation error, relative to ‖q‖·max‖k‖:
# a key whose float32 score ties the k-th one may score up to this much less.
TIE_WINDOW = 2.0**-22
# Covers the float64 arithmetic that evaluates the bounds themselves.
SLACK = 1.0 + 2.0**-20
# Denormals flushed to zero in the matrix product: an absolute error far below this per unit.
FLUSHED = 2.0**-100
LARGEST_NORM = 2.0**60  # above this, float32 inner products may overflow
EXTRA_CANDIDATES = 24  # screened beyond k at first; adapts to the data from block to block
BLOCK_ROWS = 1024  # queries per block by default: fewer make the products and top-k slower here
RESCORE_BYTES = 16 * 2**20
FAISS_QUERY_BLOCK = 16384
NORM_CHUNK_ROWS = 2048


def _matrix(array: Any, role: str, owner: str) -> torch.Tensor:
    """``array`` as a contiguous float32 tensor, after checking it is a 2-D matrix of real numbers."""
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
    return tensor.to(torch.float32).contiguous()


def _norms(
    matrix: torch.Tensor, role: str, owner: str, bfloat16: bool = False, first_row: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's norm in float64 and, with ``bfloat16``, the norms of its bfloat16 rounding and
    of what the rounding lost (exact in float32; zeros without ``bfloat16``).

    Checks on the way that the rows are finite (a float64 sum of float32 squares overflows only
    on NaN or infinite values) and small enough for float32 inner products.
    """
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
        if bfloat16:
            low = block.to(torch.bfloat16)
            rounded.append(torch.linalg.vector_norm(low, dim=1, dtype=torch.float64))
            lost.append(torch.linalg.vector_norm(block - low.float(), dim=1, dtype=torch.float64))
    norms = torch.cat(norms)
    if not bfloat16:
        return norms, torch.zeros_like(norms), torch.zeros_like(norms)
    return norms, torch.cat(rounded), torch.cat(lost)


def _accumulation(dim: int) -> float:
    """``γ``: the relative error bound of a float32 inner product of ``dim`` terms."""
    terms = (dim + 2) * FLOAT32_UNIT_ROUNDOFF
    return terms / (1 - terms)


def _float32_products_are_ieee() -> bool:
    """False where torch may run float32 matrix products in TF32 or bfloat16."""
    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    mkldnn_precision = getattr(mkldnn_matmul, "fp32_precision", "none")
    return torch.get_float32_matmul_precision() == "highest" and mkldnn_precision in ("none", "ieee")


def _bfloat16_is_fast() -> bool:
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx is not None and is_amx()) and torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_options(owner: str, threads: int | None, **positive: int | None) -> None:
    for name, value in {"threads": threads, **positive}.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{owner}: {name}={value!r}; use a positive integer")


def _check_search(owner: str, keys: torch.Tensor | None, queries: torch.Tensor, k: Any) -> None:
    if keys is None:
        raise DataError(f"{owner}: search before index; call index(keys) first")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= keys.shape[0]:
        raise ConfigError(f"{owner}: k={k!r} with {keys.shape[0]} keys indexed; choose 1 ≤ k ≤ {keys.shape[0]}")
    if queries.shape[1] != keys.shape[1]:
        raise DataError(
            f"{owner}: queries have dimension {queries.shape[1]} but the keys {keys.shape[1]}; "
            "embed both with the same model"
        )


def _threshold(kth: torch.Tensor, error: torch.Tensor, rounding: float, tie_window: torch.Tensor) -> torch.Tensor:
    """The least approximate score a key of the top k can have (float64, per row).

    Each approximate score ``s̃`` errs by at most ``error + rounding·|s̃|``; ``kth`` is the k-th
    best approximate score of the row.
    """
    bound = kth - rounding * kth.abs() - 2 * error - tie_window
    return torch.where(bound >= 0, bound / (1 + rounding), bound / (1 - rounding))


def _rescore(
    queries: torch.Tensor, keys: torch.Tensor, candidates: torch.Tensor, widths: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of each row's first ``widths`` candidates by (−float32(float64 score), id)."""
    rows, dim = queries.shape
    scores = torch.empty(rows, k, dtype=torch.float32, device=keys.device)
    ids = torch.empty(rows, k, dtype=torch.int64, device=keys.device)
    # Rows in decreasing width, rescored in chunks of equal width: little padding to compute.
    widths, by_width = widths.sort(descending=True)
    chunk = max(1, RESCORE_BYTES // (int(widths[0]) * dim * 12))
    gathered = torch.empty(chunk * int(widths[0]), dim, dtype=torch.float32, device=keys.device)
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
        exact = products.sum(dim=2).float()
        sorted_ids, by_id = chosen_candidates.sort(dim=1)
        ordered, by_score = exact.gather(1, by_id).sort(dim=1, descending=True, stable=True)
        scores[chosen], ids[chosen] = ordered[:, :k], sorted_ids.gather(1, by_score[:, :k])
        start = stop
    return scores, ids


Screen = Callable[[torch.Tensor | None, int], tuple[torch.Tensor, torch.Tensor]]


def _search_rows(
    screen: Screen,
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
    count, key_count = queries.shape[0], keys.shape[0]
    scores = torch.empty(count, k, dtype=torch.float32, device=keys.device)
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


class ExactRetriever:
    """Exact inner-product top-k over keys held in memory, by blocked matrix products.

    ``block_size`` caps the queries per block (default 1024); the block's query × key scores
    always fit ``memory_budget_mib`` (one row at least), which may make blocks smaller.
    ``threads`` sets torch's threads during ``index`` and ``search`` (default: torch's
    setting). ``screen`` is the precision of the screening products: ``"auto"``
    (bfloat16 on CPUs with AMX tiles, float32 elsewhere), ``"bfloat16"`` or ``"float32"``;
    the results are the same with each (see the module's docstring), only the time differs.
    Keys already a contiguous float32 array are kept without a copy: index them again after
    changing them.

    >>> import torch
    >>> retriever = ExactRetriever().index(torch.eye(4))
    >>> scores, ids = retriever.search(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()  # a tie: the smaller id first
    ([[1, 2]], [[1.0, 1.0]])
    >>> type(retriever)(**retriever.options).options == retriever.options
    True
    """

    def __init__(
        self,
        block_size: int | None = None,
        memory_budget_mib: int = 512,
        threads: int | None = None,
        screen: str = "auto",
    ) -> None:
        _check_options("ExactRetriever", threads, block_size=block_size, memory_budget_mib=memory_budget_mib)
        if screen not in SCREENS:
            raise ConfigError(f"ExactRetriever: screen={screen!r}; use one of {', '.join(SCREENS)}")
        self.block_size = block_size
        self.memory_budget_mib = memory_budget_mib
        self.threads = threads
        self.screen = screen
        self.keys_: torch.Tensor | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The constructor's options: ``ExactRetriever(**options)`` rebuilds this retriever."""
        return {
            "block_size": self.block_size,
            "memory_budget_mib": self.memory_budget_mib,
            "threads": self.threads,
            "screen": self.screen,
        }

    def index(self, keys: Any) -> ExactRetriever:
        """Hold ``keys`` (``N d``, numpy or torch) for search; returns ``self``."""
        with _torch_threads(self.threads), torch.inference_mode():
            keys = _matrix(keys, "keys", "ExactRetriever.index")
            use_bfloat16 = self.screen == "bfloat16" or (
                self.screen == "auto" and keys.device.type == "cpu" and _bfloat16_is_fast()
            )
            norms, rounded, lost = _norms(keys, "keys", "ExactRetriever.index", use_bfloat16)
            self.key_norm_, self.rounded_key_norm_, self.lost_key_norm_ = (
                float(norms.max()),
                float(rounded.max()),
                float(lost.max()),
            )
            self.screen_ = "bfloat16" if use_bfloat16 else "float32"
            if use_bfloat16:
                # (d, N) in memory: the fastest layout for oneDNN's bfloat16 product here.
                self.screen_keys_ = keys.to(torch.bfloat16).T.contiguous()
            else:
                self.screen_keys_ = keys.T
            self.keys_ = keys
        return self

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` keys per query: ``(scores, ids)``, both ``Q k``, float32 and int64.

        Scores descend along each row; equal scores come in ascending id.
        """
        queries = _matrix(queries, "queries", "ExactRetriever.search")
        _check_search("ExactRetriever.search", self.keys_, queries, k)
        keys = self.keys_
        queries = queries.to(keys.device)
        k = int(k)
        key_count = keys.shape[0]
        rounding = BFLOAT16_UNIT_ROUNDOFF / (1 - BFLOAT16_UNIT_ROUNDOFF) if self.screen_ == "bfloat16" else 0.0
        score_dtype = torch.bfloat16 if self.screen_ == "bfloat16" else torch.float32
        row_bytes = key_count * score_dtype.itemsize
        rows = self.block_size or BLOCK_ROWS
        rows = min(rows, max(1, self.memory_budget_mib * 2**20 // row_bytes), queries.shape[0])
        scores = torch.empty(queries.shape[0], k, dtype=torch.float32, device=keys.device)
        ids = torch.empty(queries.shape[0], k, dtype=torch.int64, device=keys.device)
        width = min(key_count, k + EXTRA_CANDIDATES)
        with _torch_threads(self.threads), torch.inference_mode():
            buffer = torch.empty(rows, key_count, dtype=score_dtype, device=keys.device)
            for start in range(0, queries.shape[0], rows):
                block = queries[start : start + rows]
                approximate = buffer[: block.shape[0]]
                error, tie_window = self._bounds(block, approximate, start)

                def screen(subset: torch.Tensor | None, m: int, approximate: torch.Tensor = approximate) -> Any:
                    chosen = approximate if subset is None else approximate.index_select(0, subset)
                    return torch.topk(chosen, m, dim=1)

                found = _search_rows(screen, block, keys, k, width, error, rounding, tie_window)
                scores[start : start + rows], ids[start : start + rows], width = found
        return scores, ids

    def _bounds(self, block: torch.Tensor, out: torch.Tensor, first_row: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Screen the queries ``block`` into ``out``; return each row's error bound and tie window."""
        bfloat16 = self.screen_ == "bfloat16"
        norms, rounded, lost = _norms(block, "queries", "ExactRetriever.search", bfloat16, first_row)
        dim = block.shape[1]
        accumulation = _accumulation(dim)
        if bfloat16:
            torch.mm(block.to(torch.bfloat16), self.screen_keys_, out=out)
            rounded_keys, lost_keys = self.rounded_key_norm_, self.lost_key_norm_
            error = rounded * lost_keys + lost * rounded_keys + lost * lost_keys + accumulation * rounded * rounded_keys
        else:
            torch.mm(block, self.screen_keys_, out=out)
            relative = (
                accumulation
                if _float32_products_are_ieee()
                else (1 + BFLOAT16_UNIT_ROUNDOFF) ** 2 * (1 + accumulation) - 1
            )
            error = relative * norms * self.key_norm_
        error = error * SLACK + FLUSHED * (dim + 2) * (1 + norms + self.key_norm_)
        return error, TIE_WINDOW * norms * self.key_norm_


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise ConfigError(
            "FaissRetriever needs faiss, which is not installed: pip install 'esq-clip[faiss]' "
            "(or use the retriever 'exact')"
        ) from error
    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss: Any, threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissRetriever:
    """Exact inner-product top-k through faiss's ``IndexFlatIP``, with ``ExactRetriever``'s results.

    faiss's float32 search screens (it does not promise an order among equal scores); its
    candidates are rescored in float64 and sorted by (−score, id) as in ``ExactRetriever``, so
    both return the same scores and ids (see the module's docstring). ``threads`` sets faiss's
    OpenMP threads and torch's during ``index`` and ``search``. Needs ``pip install
    'esq-clip[faiss]'``; the keys are held once, in faiss's index.

    >>> import torch
    >>> retriever = FaissRetriever().index(torch.eye(4))
    >>> scores, ids = retriever.search(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[1, 2]], [[1.0, 1.0]])
    """

    def __init__(self, threads: int | None = None) -> None:
        _check_options("FaissRetriever", threads)
        self.threads = threads
        self.keys_: torch.Tensor | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The constructor's options: ``FaissRetriever(**options)`` rebuilds this retriever."""
        return {"threads": self.threads}

    def index(self, keys: Any) -> FaissRetriever:
        """Hold ``keys`` (``N d``, numpy or torch) in a faiss ``IndexFlatIP``; returns ``self``."""
        faiss = _import_faiss()
        with _faiss_threads(faiss, self.threads), _torch_threads(self.threads), torch.inference_mode():
            keys = _matrix(keys, "keys", "FaissRetriever.index").cpu()
            self.key_norm_ = float(_norms(keys, "keys", "FaissRetriever.index")[0].max())
            index = faiss.IndexFlatIP(keys.shape[1])
            index.add(keys.numpy())
            self.index_ = index
            # A view of faiss's own copy, for the rescoring: the keys are not held twice.
            stored = faiss.rev_swig_ptr(index.get_xb(), keys.numel()).reshape(keys.shape)
            self.keys_ = torch.from_numpy(stored)
        return self

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` keys per query: ``(scores, ids)``, both ``Q k``, float32 and int64.

        Scores descend along each row; equal scores come in ascending id.
        """
        queries = _matrix(queries, "queries", "FaissRetriever.search").cpu()
        _check_search("FaissRetriever.search", self.keys_, queries, k)
        faiss = _import_faiss()
        k = int(k)
        key_count, dim = self.keys_.shape
        norms = _norms(queries, "queries", "FaissRetriever.search")[0]
        error = _accumulation(dim) * norms * self.key_norm_ * SLACK + FLUSHED * (dim + 2) * (1 + norms + self.key_norm_)
        tie_window = TIE_WINDOW * norms * self.key_norm_
        scores = torch.empty(queries.shape[0], k, dtype=torch.float32)
        ids = torch.empty(queries.shape[0], k, dtype=torch.int64)
        width = min(key_count, k + EXTRA_CANDIDATES)
        with _faiss_threads(faiss, self.threads), _torch_threads(self.threads), torch.inference_mode():
            for start in range(0, queries.shape[0], FAISS_QUERY_BLOCK):
                block = queries[start : start + FAISS_QUERY_BLOCK]
                array = block.numpy()

                def screen(subset: torch.Tensor | None, m: int, array: np.ndarray = array) -> Any:
                    chosen = array if subset is None else np.ascontiguousarray(array[subset.numpy()])
                    values, found = self.index_.search(chosen, m)
                    return torch.from_numpy(values), torch.from_numpy(found)

                stop = start + block.shape[0]
                found = _search_rows(
                    screen, block, self.keys_, k, width, error[start:stop], 0.0, tie_window[start:stop]
                )
                scores[start:stop], ids[start:stop], width = found
        return scores, ids

"""Exact top-k inner-product search: ``ExactRetriever`` (torch) and ``FaissRetriever`` (faiss).

For each query both return the ``k`` keys with the largest inner products: float32 scores in
descending order, equal scores in ascending key id. On the same data both return the same
scores and ids, whatever the block size, the number of threads or the BLAS library.

Both are esq's exact top-k engine (:class:`esq.TopKIndex`, whose docstring proves the bounds):
a screen with a proven error bound, then float64 rescoring of the candidates it certifies.
``ExactRetriever`` screens with blocked matrix products (bfloat16 on CPUs with AMX tiles,
float32 elsewhere); ``FaissRetriever`` with faiss's ``IndexFlatIP`` (float32). Ties (duplicated
keys, identical queries) resolve identically in both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from esq import ConfigError, DataError, TopKIndex, WithOptions, check_choice, check_int

SCREENS = ("auto", "bfloat16", "float32")
FAISS_QUERY_BLOCK = 16384


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


def _positive(owner: str, name: str, value: int | None) -> int | None:
    return None if value is None else check_int(owner, name, value, minimum=1)


def _indexed(owner: str, engine: TopKIndex | None) -> TopKIndex:
    if engine is None:
        raise DataError(f"{owner}: search before index; call index(keys) first")
    return engine


class ExactRetriever(WithOptions):
    """Exact inner-product top-k over keys held in memory, by blocked matrix products.

    ``block_size`` caps the queries per block (default 1024); the block's query × key scores
    always fit ``memory_budget_mib`` (one row at least), which may make blocks smaller.
    ``threads`` sets torch's threads during ``index`` and ``search`` (default: torch's
    setting). ``screen`` is the precision of the screening products: ``"auto"``
    (bfloat16 on CPUs with AMX tiles, float32 elsewhere), ``"bfloat16"`` or ``"float32"``;
    the results are the same with each (see :class:`esq.TopKIndex`), only the time differs.
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
        self.block_size = _positive("ExactRetriever", "block_size", block_size)
        self.memory_budget_mib = check_int("ExactRetriever", "memory_budget_mib", memory_budget_mib, minimum=1)
        self.threads = _positive("ExactRetriever", "threads", threads)
        self.screen = check_choice("ExactRetriever", "screen", screen, SCREENS)
        self.engine_: TopKIndex | None = None

    def index(self, keys: Any) -> ExactRetriever:
        """Hold ``keys`` (``N d``, numpy or torch) for search; returns ``self``."""
        with _torch_threads(self.threads):
            self.engine_ = TopKIndex(keys, screen=self.screen, precision="float32", owner="ExactRetriever")
        return self

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` keys per query: ``(scores, ids)``, both ``Q k``, float32 and int64.

        Scores descend along each row; equal scores come in ascending id.
        """
        engine = _indexed("ExactRetriever.search", self.engine_)
        with _torch_threads(self.threads):
            return engine.search(queries, k, block_rows=self.block_size, memory_budget_mib=self.memory_budget_mib)


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


class FaissRetriever(WithOptions):
    """Exact inner-product top-k through faiss's ``IndexFlatIP``, with ``ExactRetriever``'s results.

    faiss's float32 search screens (it does not promise an order among equal scores); its
    candidates are rescored in float64 and sorted by (−score, id) as in ``ExactRetriever``, so
    both return the same scores and ids (see :class:`esq.TopKIndex`). ``threads`` sets faiss's
    OpenMP threads and torch's during ``index`` and ``search``. Needs ``pip install
    'esq-clip[faiss]'``; the keys are held once, in faiss's index.

    >>> import torch
    >>> retriever = FaissRetriever().index(torch.eye(4))
    >>> scores, ids = retriever.search(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[1, 2]], [[1.0, 1.0]])
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = _positive("FaissRetriever", "threads", threads)
        self.engine_: TopKIndex | None = None

    def index(self, keys: Any) -> FaissRetriever:
        """Hold ``keys`` (``N d``, numpy or torch) in a faiss ``IndexFlatIP``; returns ``self``."""
        faiss = _import_faiss()
        with _faiss_threads(faiss, self.threads), _torch_threads(self.threads):
            checked = TopKIndex(keys, screen=self._screen, precision="float32", owner="FaissRetriever").keys_.cpu()
            index = faiss.IndexFlatIP(checked.shape[1])
            index.add(checked.numpy())
            self.index_ = index
            # A view of faiss's own copy, for the rescoring: the keys are not held twice.
            stored = faiss.rev_swig_ptr(index.get_xb(), checked.numel()).reshape(checked.shape)
            self.engine_ = TopKIndex(torch.from_numpy(stored), screen=self._screen, owner="FaissRetriever")
        return self

    def _screen(self, queries: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, found = self.index_.search(queries.numpy(), m)
        return torch.from_numpy(values), torch.from_numpy(found)

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` keys per query: ``(scores, ids)``, both ``Q k``, float32 and int64.

        Scores descend along each row; equal scores come in ascending id.
        """
        engine = _indexed("FaissRetriever.search", self.engine_)
        faiss = _import_faiss()
        with _faiss_threads(faiss, self.threads), _torch_threads(self.threads):
            return engine.search(queries, k, block_rows=FAISS_QUERY_BLOCK)

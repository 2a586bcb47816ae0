"""``check_retriever``: the protocol of retrievers."""

from __future__ import annotations

from typing import Any

import numpy as np

from esq.components import Retriever
from esq.errors import EsqError
from esq.specs import RetrieverSpec
from esq.testing.common import build, ensure, expect_rejected, rebuild


def _numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)


def check_retriever(spec: RetrieverSpec, **options: Any) -> None:
    """Check a retriever built as ``spec.factory(**options)``.

    ``search`` before ``index`` and ``k`` above the number of keys are rejected; results have
    shape ``(queries, k)`` with scores in descending order, each key finds itself first, an
    exact retriever returns the brute-force inner-product top-k, and a rebuild from
    ``options`` returns the same ids.
    """
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 8)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = keys[:5]
    retriever = build(spec, options, Retriever)
    expect_rejected(spec.name, "search before index", lambda: retriever.search(queries, 3), (EsqError, ValueError))
    ensure(retriever.index(keys) is retriever, f"{spec.name}: index(keys) must return the retriever")
    scores, ids = (_numpy(a) for a in retriever.search(queries, 3))
    ensure(
        scores.shape == (5, 3) and ids.shape == (5, 3),
        f"{spec.name}: search(5 queries, k=3) gave {scores.shape}, {ids.shape}",
    )
    ensure(bool((np.diff(scores, axis=1) <= 1e-6).all()), f"{spec.name}: scores are not in descending order")
    ensure(np.array_equal(ids[:, 0], np.arange(5)), f"{spec.name}: a key searched for does not find itself first")
    if spec.exact:
        expected = np.argsort(-(queries @ keys.T), axis=1, kind="stable")[:, :3]
        ensure(
            np.array_equal(ids, expected), f"{spec.name}: exact search differs from the brute-force inner-product top-k"
        )
    expect_rejected(
        spec.name, "k above the number of keys", lambda: retriever.search(queries, 51), (EsqError, ValueError)
    )
    again = _numpy(rebuild(spec, retriever, Retriever).index(keys).search(queries, 3)[1])
    ensure(np.array_equal(again, ids), f"{spec.name}: a retriever rebuilt from its `options` returns other ids")

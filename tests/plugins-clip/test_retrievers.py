"""The exact and faiss retrievers: the protocol, brute-force equality, ties by id, bad input."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

import esq.testing
from esq.errors import ConfigError, DataError
from esq.specs import RetrieverSpec
from esq_clip.retrievers import ExactRetriever, FaissRetriever

EXACT = RetrieverSpec(name="exact", factory=ExactRetriever, summary="exact top-k by blocked products", exact=True)
FAISS = RetrieverSpec(name="faiss", factory=FaissRetriever, summary="faiss IndexFlatIP, ties by id", exact=True)
needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")


def features(rows: int, dim: int, seed: int, normalise: bool = True) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if normalise else x


def brute_force(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k by (−float32 score, id), the scores from float64 products."""
    scores = (queries.astype(np.float64) @ keys.astype(np.float64).T).astype(np.float32)
    ids = np.broadcast_to(np.arange(keys.shape[0]), scores.shape)
    order = np.lexsort((ids, -scores))[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def search(retriever, keys, queries, k):
    scores, ids = retriever.index(keys).search(queries, k)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    return scores.numpy(), ids.numpy()


def tied_data() -> tuple[np.ndarray, np.ndarray]:
    """Keys with 100 copies of key 7 spread over the ids, and queries equal to it (also repeated)."""
    keys = features(3000, 16, seed=1)
    copies = np.sort(np.random.default_rng(2).choice(np.arange(8, 3000), size=99, replace=False))
    keys[copies] = keys[7]
    keys[2990:] = keys[5]  # ten more copies of another key
    queries = np.concatenate([keys[[7, 7, 5, 5]], features(20, 16, seed=3), keys[[7]]])
    return keys, queries


@pytest.mark.parametrize(
    "spec, options",
    [
        pytest.param(EXACT, {}, id="exact"),
        pytest.param(EXACT, {"screen": "float32", "block_size": 2}, id="exact-float32"),
        pytest.param(EXACT, {"screen": "bfloat16", "threads": 1}, id="exact-bfloat16"),
        pytest.param(FAISS, {}, id="faiss", marks=needs_faiss),
    ],
)
def test_retrievers_pass_the_conformance_check(spec, options):
    esq.testing.check_retriever(spec, **options)


@pytest.mark.parametrize("screen", ["bfloat16", "float32"])
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default blocks"),
        pytest.param({"block_size": 1}, id="one query per block"),
        pytest.param({"block_size": 7}, id="blocks smaller than the queries"),
        pytest.param({"block_size": 1000}, id="one block"),
        pytest.param({"memory_budget_mib": 1}, id="budget forcing many blocks"),
    ],
)
def test_exact_equals_the_brute_force_top_k(screen, options):
    keys, queries = features(20000, 24, seed=0), features(300, 24, seed=1)
    retriever = ExactRetriever(screen=screen, **options)
    scores, ids = search(retriever, keys, queries, 10)
    expected_scores, expected_ids = brute_force(queries, keys, 10)
    assert np.array_equal(ids, expected_ids)
    assert np.array_equal(scores, expected_scores)


@pytest.mark.parametrize("screen, score_bytes", [("bfloat16", 2), ("float32", 4)])
def test_a_small_memory_budget_makes_the_score_blocks_fit_it(monkeypatch, screen, score_bytes):
    retriever = ExactRetriever(memory_budget_mib=1, screen=screen).index(features(20000, 8, seed=0))
    blocks = []
    original = torch.mm

    def spy(*args, **kwargs):
        blocks.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "mm", spy)
    retriever.search(features(300, 8, seed=1), 5)
    assert max(blocks) * 20000 * score_bytes <= 2**20 and sum(blocks) == 300 and len(blocks) >= 5


def test_exact_equals_the_brute_force_top_k_on_unnormalised_keys_of_unequal_norms():
    generator = np.random.default_rng(4)
    keys = features(5000, 32, seed=4, normalise=False) * np.exp(generator.normal(0, 2, (5000, 1))).astype(np.float32)
    queries = features(200, 32, seed=5, normalise=False) + 0.5
    for retriever in (ExactRetriever(), ExactRetriever(screen="float32")):
        _, ids = search(retriever, keys, queries, 10)
        assert np.array_equal(ids, brute_force(queries, keys, 10)[1])


def test_results_do_not_depend_on_the_screening_precision_or_threads():
    keys, queries = features(4000, 64, seed=6), features(500, 64, seed=7)
    first = search(ExactRetriever(screen="bfloat16", threads=2), keys, queries, 15)
    second = search(ExactRetriever(screen="float32", threads=1, block_size=33), keys, queries, 15)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_ties_go_to_the_smaller_ids_even_across_the_k_th_place():
    keys, queries = tied_data()
    copies = np.flatnonzero((keys == keys[7]).all(axis=1))
    assert len(copies) == 100
    for retriever in (ExactRetriever(), ExactRetriever(screen="float32", block_size=3)):
        scores, ids = search(retriever, keys, queries, 10)
        assert np.array_equal(ids[0], copies[:10]) and np.array_equal(ids[1], copies[:10])
        assert np.array_equal(ids[2], np.r_[5, 2990:2999])
        assert np.array_equal(ids[-1], copies[:10])
        assert np.array_equal(ids, brute_force(queries, keys, 10)[1])
        assert (scores[0] == scores[0, 0]).all()


def test_identical_queries_get_identical_results():
    keys = features(2000, 16, seed=8)
    queries = np.repeat(features(3, 16, seed=9), 40, axis=0)
    scores, ids = search(ExactRetriever(block_size=17), keys, queries, 10)
    assert (ids == ids[[0, 40, 80]].repeat(40, axis=0)).all() and (
        scores == scores[[0, 40, 80]].repeat(40, axis=0)
    ).all()


@needs_faiss
def test_exact_and_faiss_return_the_same_top_k_with_ties():
    keys, queries = tied_data()
    exact = search(ExactRetriever(), keys, queries, 10)
    faiss = search(FaissRetriever(), keys, queries, 10)
    assert np.array_equal(exact[1], faiss[1]) and np.array_equal(exact[0], faiss[0])
    assert np.array_equal(faiss[1], brute_force(queries, keys, 10)[1])


@needs_faiss
def test_exact_and_faiss_return_the_same_top_k_without_ties():
    keys, queries = features(30000, 64, seed=10), features(2000, 64, seed=11)
    exact = search(ExactRetriever(), keys, queries, 10)
    faiss = search(FaissRetriever(threads=1), keys, queries, 10)
    assert np.array_equal(exact[1], faiss[1]) and np.array_equal(exact[0], faiss[0])
    assert np.array_equal(faiss[1], brute_force(queries, keys, 10)[1])


@pytest.mark.parametrize("retriever", [ExactRetriever, pytest.param(FaissRetriever, marks=needs_faiss)])
def test_k_equal_to_the_number_of_keys_returns_every_key_in_order(retriever):
    keys, queries = tied_data()
    keys, queries = keys[2900:], queries
    scores, ids = search(retriever(), keys, queries, keys.shape[0])
    expected_scores, expected_ids = brute_force(queries, keys, keys.shape[0])
    assert np.array_equal(ids, expected_ids) and np.array_equal(scores, expected_scores)
    assert (np.sort(ids, axis=1) == np.arange(keys.shape[0])).all()


def test_numpy_and_torch_inputs_of_any_float_type_give_the_same_results():
    keys, queries = features(500, 16, seed=12), features(30, 16, seed=13)
    from_numpy = search(ExactRetriever(), keys.astype(np.float64), queries, 5)
    from_torch = search(ExactRetriever(), torch.from_numpy(keys), torch.from_numpy(queries), 5)
    assert np.array_equal(from_numpy[1], from_torch[1])


def test_a_bad_query_beyond_the_first_block_is_reported_by_its_row():
    queries = features(10, 8, seed=1)
    queries[7, 2] = np.nan
    with pytest.raises(DataError, match="queries row 7 holds NaN"):
        ExactRetriever(block_size=3).index(features(20, 8, seed=0)).search(queries, 2)


def test_threads_are_restored_after_a_search():
    before = torch.get_num_threads()
    ExactRetriever(threads=1).index(features(100, 8, seed=0)).search(features(3, 8, seed=1), 2)
    assert torch.get_num_threads() == before


def test_the_screening_error_stays_within_the_bound_the_candidates_rely_on():
    keys = features(3000, 256, seed=14, normalise=False) * 3
    queries = features(200, 256, seed=15, normalise=False) - 0.2
    exact = torch.from_numpy(queries.astype(np.float64) @ keys.astype(np.float64).T)
    for screen, dtype, rounding in (("bfloat16", torch.bfloat16, 2**-8 / (1 - 2**-8)), ("float32", torch.float32, 0)):
        retriever = ExactRetriever(screen=screen).index(keys)
        approximate = torch.empty(200, 3000, dtype=dtype)
        error, _ = retriever.engine_.bounds(torch.from_numpy(queries), approximate)
        observed = (approximate.double() - exact).abs()
        assert (observed <= error[:, None] + rounding * approximate.double().abs()).all()
        assert float((observed / error[:, None]).max()) > 1e-3  # the bound is not absurdly loose


@pytest.mark.parametrize("retriever", [ExactRetriever, pytest.param(FaissRetriever, marks=needs_faiss)])
@pytest.mark.parametrize(
    "keys, queries, k, error, words",
    [
        pytest.param(None, features(2, 8, 0), 1, DataError, "index(keys) first", id="search before index"),
        pytest.param(features(5, 8, 0), features(2, 8, 1), 0, ConfigError, "at most 5, got 0", id="k zero"),
        pytest.param(features(5, 8, 0), features(2, 8, 1), 6, ConfigError, "at most 5, got 6", id="k above keys"),
        pytest.param(features(5, 8, 0), features(2, 8, 1), 2.0, ConfigError, "got 2.0", id="k not an integer"),
        pytest.param(features(5, 8, 0), features(2, 8, 1), True, ConfigError, "got True", id="k a bool"),
        pytest.param(features(5, 8, 0), features(2, 4, 1), 1, DataError, "dimension 4", id="dimension mismatch"),
        pytest.param(features(5, 8, 0)[0], features(2, 8, 1), 1, DataError, "2-D", id="keys 1-D"),
        pytest.param(np.zeros((0, 8)), features(2, 8, 1), 1, DataError, "non-empty", id="no keys"),
        pytest.param(np.array([["a"]]), features(2, 8, 1), 1, DataError, "real numbers", id="keys of strings"),
        pytest.param(
            np.where(np.arange(8) == 3, np.nan, features(5, 8, 0)),
            features(2, 8, 1),
            1,
            DataError,
            "row 0",
            id="NaN in keys",
        ),
        pytest.param(
            features(5, 8, 0),
            np.r_[features(1, 8, 1), np.full((1, 8), np.inf)],
            1,
            DataError,
            "row 1",
            id="inf in queries",
        ),
        pytest.param(
            np.r_[features(2, 8, 0), features(1, 8, 0) * 1e30],
            features(2, 8, 1),
            1,
            DataError,
            "row 2 has norm 1e+30",
            id="huge keys",
        ),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(retriever, keys, queries, k, error, words):
    built = retriever()
    with pytest.raises(error) as raised:
        (built if keys is None else built.index(keys)).search(queries, k)
    assert words in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"block_size": 0}, r"block_size must be an integer (of )?at least 1, got 0"),
        ({"memory_budget_mib": -1}, r"memory_budget_mib must be an integer (of )?at least 1, got -1"),
        ({"threads": 1.5}, r"threads must be an integer (of )?at least 1, got 1\.5"),
        ({"screen": "float16"}, "screen must be one of 'auto', 'bfloat16', 'float32'"),
    ],
)
def test_bad_options_are_rejected(options, words):
    with pytest.raises(ConfigError, match=words):
        ExactRetriever(**options)


def test_a_missing_faiss_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError, match=r"pip install 'esq-clip\[faiss\]'"):
        FaissRetriever().index(features(5, 8, 0))
